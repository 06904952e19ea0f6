"""`paramact prune`: prune a model layer by layer (wanda, sparsegpt, magnitude, activation) and evaluate it.

Under torchrun every process holds a replica and its share of the calibration batches; the
statistics are summed over processes, every replica is pruned alike, and rank 0 evaluates and writes.
"""

from __future__ import annotations

from dataclasses import asdict

from ..prune.config import PruneRun
from .command import Command


def run(run: PruneRun, ctx, args) -> int:
    from ..anatomy import context_length, window_bos
    from ..evaluation import evaluate, parse_tasks, prepare
    from ..models import load
    from ..prune.allocation import build_schedule
    from ..prune.config import Schedule
    from ..prune.driver import token_batches
    from ..prune.outputs import eval_table, protocols, save_model, write_prune_run
    from ..prune.pipeline import calibration_snippets, calibration_windows, run_prune
    from ..prune.resume import BlockCheckpoint
    from ..runs import check_resumable, environment, prepare_out, write_json

    cfg, ecfg, out = run.prune, run.eval, ctx.out
    tasks = parse_tasks(list(run.eval_tasks)) if run.eval_tasks else []
    config = {
        "model": run.model.name,
        "prune": asdict(cfg),
        "eval": asdict(ecfg) if tasks else None,
        "tasks": tasks,
        "processes": ctx.world,
    }
    if ctx.resume:
        check_resumable(out, config, ignore=("processes",))
    elif ctx.writer:
        prepare_out(out)
    model, tok = load(run.model, ctx.device)

    def build(batches=None):
        return build_schedule(
            model,
            tok,
            cfg.schedule,
            cfg.target,
            batches=batches,
            batch_size=cfg.calibration.batch_size,
            data_dir=cfg.calibration.data_dir,
            progress=ctx.bars,
            shard=ctx.shard,
        )

    ckpt = None
    if run.checkpoint:
        ckpt = BlockCheckpoint(
            out / "checkpoint", {"model": run.model.name, "prune": asdict(cfg)}, ctx.resume, writer=ctx.writer
        )
    kept = ckpt.load_schedule() if ckpt is not None else None
    # ATP without a step: run_prune searches it (and saves it to the checkpoint) before pruning
    search = cfg.schedule.name == "atp" and cfg.schedule.atp_step is None
    # bad schedule input fails before any data is read; a resumed run keeps the schedule it pruned with
    schedule = Schedule.from_dict(kept) if kept else build() if cfg.schedule.name != "owl" and not search else None
    windows, source = calibration_windows(model, tok, cfg.calibration)
    if schedule is None and not search:
        schedule = build(token_batches(windows, cfg.calibration.batch_size))
    prepared = []
    if tasks and ctx.writer:
        prepared = prepare(
            tok,
            tasks,
            ecfg,
            context=context_length(model),
            bos=window_bos(model, tok),
            exclude_c4=calibration_snippets(tok, windows) if cfg.calibration.dataset == "c4" else (),
        )
    if ctx.writer:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", config)
        write_json(out / "env.json", environment(model, cfg.calibration.seed))
    if ckpt is not None and schedule is not None:
        ckpt.save_schedule(schedule.as_dict())
    report = run_prune(
        model,
        tok,
        cfg,
        schedule=schedule,
        windows=windows,
        calibration_source=source,
        progress=ctx.bars,
        shard=ctx.shard,
        checkpoint=ckpt,
    )
    if not ctx.writer:
        return 0  # every replica is pruned alike; rank 0 evaluates and writes
    evals = evaluate(model, prepared, ctx.progress) if prepared else {}
    meta = {"model": run.model.name, "processes": ctx.world}
    if run.save_model:
        save_model(model, tok, out / "model")
        meta["saved_model"] = str(out / "model")
    write_prune_run(out, report, evals, meta)
    if ckpt is not None:
        ckpt.clear()  # results.json is written: the run is complete
    sp = report.sparsity()
    print(
        f"{cfg.method} {report.schedule.name} target {report.schedule.target:g}: measured overall "
        f"{sp['overall']:.4f}, max |layer - schedule| {sp['max_abs_error_vs_schedule']:.4f}, "
        f"{report.outcome.seconds:.1f} s"
    )
    if evals:
        print(eval_table([(cfg.method, {"eval": evals})]))
        print(protocols(evals))
    print(f"run directory: {out}")
    return 0


COMMAND = Command(
    "prune",
    "prune a model layer by layer (wanda, sparsegpt, magnitude, activation) and evaluate it",
    run,
    PruneRun,
    run_options=("out", "resume", "device", "threads"),
)
