"""`paramact eval`: perplexity, the paper's letter scoring, lm-eval log-likelihood, HumanEval NLL."""

from __future__ import annotations

from dataclasses import asdict

from ..errors import UserError
from ..evaluation.tasks import EvalRun
from .command import Command


def run(run: EvalRun, ctx, args) -> int:
    from ..anatomy import context_length, window_bos
    from ..evaluation import evaluate, parse_tasks, prepare
    from ..models import load
    from ..prune.outputs import eval_table, protocols, write_text
    from ..runs import environment, prepare_out, write_json

    if not run.tasks:
        raise UserError("eval needs --tasks (on the command line or in --config)")
    tasks = parse_tasks(list(run.tasks))
    out = prepare_out(ctx.out) if ctx.out is not None else None
    model, tok = load(run.model, ctx.device)
    prepared = prepare(tok, tasks, run.eval, context=context_length(model), bos=window_bos(model, tok))
    if out is not None:
        write_json(out / "config.json", {"model": run.model.name, "eval": asdict(run.eval), "tasks": tasks})
        write_json(out / "env.json", environment(model))
    evals = evaluate(model, prepared, ctx.progress)
    table = eval_table([(run.model.name, {"eval": evals})])
    print(table)
    print(protocols(evals))
    if out is not None:
        write_text(out / "table.md", table + "\n\n" + protocols(evals) + "\n")
        write_json(out / "results.json", {"model": run.model.name, "eval": evals})
        print(f"run directory: {out}")
    return 0


COMMAND = Command(
    "eval",
    "evaluate a model: perplexity, paper letter scoring, lm-eval log-likelihood, HumanEval NLL",
    run,
    EvalRun,
    run_options=("out", "device", "threads"),
    needs_out=False,
    distributed=False,
)
