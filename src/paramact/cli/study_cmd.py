"""`paramact study prune`: the paper's pruning validations as one resumable run.

Each finished cell (one pruned-and-evaluated model) is appended to OUT/partial.json, atomically;
--resume reloads those cells, checks the configuration is the same, and runs only the rest.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ..errors import UserError
from ..prune.study import StudyRun
from .command import Command


def _finished_cells(out: Path, config: dict) -> dict[str, dict]:
    """--resume: the cells partial.json holds, after checking `out` ran this configuration."""
    from ..runs import check_resumable

    check_resumable(out, config)
    path = out / "partial.json"
    if not path.is_file():
        return {}
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        return {r["key"]: r for r in rows}
    except (ValueError, TypeError, KeyError) as e:
        raise UserError(f"{path} is not a study's list of finished cells: {e.__class__.__name__}") from e


def run(run: StudyRun, ctx, args) -> int:
    from ..evaluation import parse_tasks
    from ..models import load
    from ..prune.study import label, run_study
    from ..prune.study_outputs import write_study_run
    from ..runs import environment, prepare_out, resumed_environment, write_json

    cfg, out = run.study, ctx.out
    parse_tasks(cfg.v1_tasks + cfg.v2_tasks)  # lm-eval installed where the tasks need it: before the model loads
    config = {"model": run.model.name, "study": asdict(cfg)}
    if ctx.resume:
        finished = _finished_cells(out, config)
        out.mkdir(parents=True, exist_ok=True)
    else:
        finished = {}
        prepare_out(out)
    model, tok = load(run.model, ctx.device)
    write_json(out / "config.json", config)
    env = environment(model, cfg.calibration.seed)
    write_json(out / "env.json", resumed_environment(out, env) if ctx.resume else env)
    done: list[dict] = []

    def on_row(r: dict) -> None:
        done.append(r)
        write_json(out / "partial.json", done)
        ev = " ".join(f"{t}={v.get('ppl', v.get('acc')):.4g}" for t, v in r["eval"].items())
        kept = " (kept from the interrupted run)" if r["key"] in finished else f" ({r['seconds']:.0f} s)"
        print(f"[{len(done)}] {label(r)}{kept}: {ev}", flush=True)

    res = run_study(model, tok, cfg, ctx.progress, on_row, finished=finished)
    tables, notes, sizes = write_study_run(out, run.model.name, res, cfg)
    for text in tables.values():
        print("\n" + text)
    print("\n" + sizes)
    for c in notes:
        print("- " + c)
    print(f"run directory: {out}")
    return 0


COMMAND = Command(
    "study",
    "the paper's pruning validations on one model, over seeds: Validation 1 (dense, then uniform / "
    "activation / OWL / AlphaPruning / ATP × Wanda / SparseGPT × sparsities) and Validation 2 "
    "(calibration C4 vs MMLU vs SIQA vs BoolQ)",
    run,
    StudyRun,
    path=("prune",),
    run_options=("out", "resume", "device", "threads"),
    distributed=False,
    only={
        "calibration": ("nsamples", "seqlen", "data_dir"),
        "schedule": ("density", "samples", "seqlen", "atp_grid", "atp_held_out"),
    },
)
