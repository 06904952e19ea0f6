"""`paramact prune | schedule | eval | study prune`: arguments -> typed configs -> library -> files.

add_parsers(sub) adds the commands; run(args) executes one and returns its exit code, or None
when args.command is not one of them. Bad input raises UserError (one line, exit code 2).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from . import options as o

log = logging.getLogger(__name__)


def add_parsers(sub) -> None:
    from ..evaluation import TASKS
    from .scores import METHODS

    tasks_help = f"comma-separated: {', '.join(TASKS)}"
    p = sub.add_parser("prune", help="prune a model layer by layer (wanda, sparsegpt, magnitude, activation) and evaluate it")
    o.model_args(p)
    p.add_argument("--method", default="wanda", choices=list(METHODS))
    p.add_argument("--pattern", default="row", help="row (per output row), matrix, or N:M such as 2:4, 4:8 (N zeros per M)")
    o.schedule_args(p)
    o.calibration_args(p)
    p.add_argument("--blocksize", type=int, default=128, help="sparsegpt column block (default 128)")
    p.add_argument("--damp", type=float, default=0.01, help="sparsegpt damping, fraction of mean diag(H) (default 0.01)")
    p.add_argument("--eval", default="", help=f"tasks to evaluate after pruning ({tasks_help})")
    o.eval_args(p)
    p.add_argument("--save-model", action="store_true", help="also save the pruned model to OUT/model (save_pretrained)")
    p.add_argument("--out", type=Path, default=None, help="run directory (required; must not hold a finished run)")
    p.add_argument("--resume", action="store_true",
                   help="continue a killed run in --out: the blocks it pruned are restored from OUT/checkpoint")
    p.add_argument("--no-checkpoint", action="store_true",
                   help="do not save each pruned block to OUT/checkpoint (masks, and SparseGPT's rewritten weights); "
                        "a killed run then starts over")

    s = sub.add_parser("schedule", help="print (and save) a layer-wise sparsity schedule without pruning")
    o.model_args(s)
    o.schedule_args(s, "activation")
    o.calibration_args(s)
    s.add_argument("--out", type=Path, default=None, help="run directory for schedule.json (optional)")

    e = sub.add_parser("eval", help="evaluate a model: perplexity, paper letter scoring, lm-eval log-likelihood, HumanEval NLL")
    o.model_args(e)
    e.add_argument("--tasks", required=True, help=tasks_help)
    o.eval_args(e)
    e.add_argument("--out", type=Path, default=None, help="run directory (optional)")

    from .study_command import add_parser

    add_parser(sub)


def _prune(args) -> int:
    """Under torchrun every process holds a replica and its share of the calibration batches; the
    statistics are summed over processes, every replica is pruned alike, and rank 0 evaluates and writes."""
    from .. import distributed
    from ..anatomy import context_length
    from ..errors import UserError
    from ..evaluation import evaluate, parse_tasks, prepare
    from ..runs import check_resumable, environment, prepare_out, write_json
    from .driver import token_batches
    from .outputs import eval_table, protocols, save_model, write_prune_run
    from .config import PruneConfig, Schedule
    from .pipeline import build_schedule, calibration_snippets, calibration_windows, run_prune
    from .resume import BlockCheckpoint

    if args.out is None:
        raise UserError("prune needs --out (on the command line or in --config)")
    sparsity = args.sparsity
    if sparsity is None and args.schedule != "file" and ":" not in args.pattern:
        sparsity = 0.5
    cfg = PruneConfig(method=args.method, sparsity=sparsity, pattern=args.pattern, schedule=o.schedule_config(args),
                      calibration=o.calibration_config(args), blocksize=args.blocksize, damp=args.damp)
    tasks = parse_tasks(args.eval) if args.eval.strip() else []
    ecfg = o.eval_config(args)
    shard = distributed.init()
    rank = shard[0]
    config = {"model": args.model, "prune": asdict(cfg), "eval": asdict(ecfg) if tasks else None, "tasks": tasks,
              "processes": shard[1]}
    out = Path(args.out)
    if args.resume:
        check_resumable(out, config, ignore=("processes",))
    elif rank == 0:
        prepare_out(out)
    model, tok = o.load_for(args)
    progress = o.progress(args) and rank == 0

    def build(batches=None):
        return build_schedule(model, tok, cfg.schedule, cfg.target, batches=batches, batch_size=cfg.calibration.batch_size,
                              data_dir=args.data_dir, progress=progress, shard=shard)

    ckpt = None
    if not args.no_checkpoint:
        ckpt = BlockCheckpoint(out / "checkpoint", {"model": args.model, "prune": asdict(cfg)}, args.resume,
                               writer=rank == 0)
    kept = ckpt.load_schedule() if ckpt is not None else None
    # bad schedule input fails before any data is read; a resumed run keeps the schedule it pruned with
    schedule = Schedule.from_dict(kept) if kept else build() if cfg.schedule.name != "owl" else None
    windows, source = calibration_windows(model, tok, cfg.calibration)
    if schedule is None:
        schedule = build(token_batches(windows, cfg.calibration.batch_size))
    prepared = []
    if tasks and rank == 0:
        prepared = prepare(tok, tasks, ecfg, context=context_length(model),
                           exclude_c4=calibration_snippets(tok, windows) if cfg.calibration.dataset == "c4" else ())
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", config)
        write_json(out / "env.json", environment(model, cfg.calibration.seed))
    if ckpt is not None:
        ckpt.save_schedule(schedule.as_dict())
    report = run_prune(model, tok, cfg, schedule=schedule, windows=windows, calibration_source=source,
                       progress=progress, shard=shard, checkpoint=ckpt)
    if rank != 0:
        return 0  # every replica is pruned alike; rank 0 evaluates and writes
    evals = evaluate(model, prepared, o.progress(args)) if prepared else {}
    meta = {"model": args.model, "processes": shard[1]}
    if args.save_model:
        save_model(model, tok, out / "model")
        meta["saved_model"] = str(out / "model")
    write_prune_run(out, report, evals, meta)
    if ckpt is not None:
        ckpt.clear()  # results.json is written: the run is complete
    sp = report.sparsity()
    print(f"{cfg.method} {report.schedule.name} target {report.schedule.target:g}: measured overall "
          f"{sp['overall']:.4f}, max |layer - schedule| {sp['max_abs_error_vs_schedule']:.4f}, "
          f"{report.outcome.seconds:.1f} s")
    if evals:
        print(eval_table([(cfg.method, {"eval": evals})]))
        print(protocols(evals))
    print(f"run directory: {out}")
    return 0


def _schedule(args) -> int:
    from .. import distributed
    from ..runs import environment, prepare_out, write_json
    from .driver import token_batches
    from .outputs import schedule_table
    from .pipeline import build_schedule, calibration_windows

    sc = o.schedule_config(args)
    ccfg = o.calibration_config(args)
    target = args.sparsity if args.sparsity is not None or sc.name == "file" else 0.5
    shard = distributed.init()  # torchrun: the statistics are measured by every process, its share each
    out = prepare_out(args.out) if args.out is not None and shard[0] == 0 else None
    model, tok = o.load_for(args)
    batches = None
    if sc.name == "owl":
        windows, _ = calibration_windows(model, tok, ccfg)
        batches = token_batches(windows, ccfg.batch_size)
    s = build_schedule(model, tok, sc, target, batches=batches, batch_size=ccfg.batch_size, data_dir=args.data_dir,
                       progress=o.progress(args) and shard[0] == 0, shard=shard)
    if shard[0] != 0:
        return 0
    print(schedule_table(s))
    if out is not None:
        write_json(out / "config.json", {"model": args.model, "schedule": asdict(sc), "calibration": asdict(ccfg) if batches else None})
        write_json(out / "env.json", environment(model))
        write_json(out / "schedule.json", s.as_dict())
        write_json(out / "results.json", {"model": args.model, "schedule": s.as_dict()})
        print(f"saved: {out / 'schedule.json'}")
    return 0


def _eval(args) -> int:
    from ..anatomy import context_length
    from ..evaluation import evaluate, parse_tasks, prepare
    from ..runs import environment, prepare_out, write_json
    from .outputs import eval_table, protocols, write_text

    o.single_process("eval")
    tasks = parse_tasks(args.tasks)
    ecfg = o.eval_config(args)
    out = prepare_out(args.out) if args.out is not None else None
    model, tok = o.load_for(args)
    prepared = prepare(tok, tasks, ecfg, context=context_length(model))
    if out is not None:
        write_json(out / "config.json", {"model": args.model, "eval": asdict(ecfg), "tasks": tasks})
        write_json(out / "env.json", environment(model))
    evals = evaluate(model, prepared, o.progress(args))
    table = eval_table([(args.model, {"eval": evals})])
    print(table)
    print(protocols(evals))
    if out is not None:
        write_text(out / "table.md", table + "\n\n" + protocols(evals) + "\n")
        write_json(out / "results.json", {"model": args.model, "eval": evals})
        print(f"run directory: {out}")
    return 0


def run(args) -> int | None:
    cmd = getattr(args, "command", None)
    from .study_command import run as _study

    handlers = {"prune": _prune, "schedule": _schedule, "eval": _eval, "study": _study}
    if cmd not in handlers:
        return None
    return handlers[cmd](args)
