"""`paramact schedule`: print (and save) a layer-wise sparsity schedule without pruning."""

from __future__ import annotations

from dataclasses import asdict

from ..prune.config import ScheduleRun
from .command import Command


def run(run: ScheduleRun, ctx, args) -> int:
    from ..models import load
    from ..prune.allocation import build_schedule
    from ..prune.driver import token_batches
    from ..prune.outputs import schedule_table, write_text
    from ..prune.pipeline import calibration_windows
    from ..runs import environment, prepare_out, write_json

    sc, ccfg = run.schedule, run.calibration
    out = prepare_out(ctx.out) if ctx.out is not None and ctx.writer else None
    model, tok = load(run.model, ctx.device)
    batches = None
    if sc.name == "owl":
        windows, _ = calibration_windows(model, tok, ccfg)
        batches = token_batches(windows, ccfg.batch_size)
    # torchrun: the statistics are measured by every process, its share each
    s = build_schedule(
        model,
        tok,
        sc,
        run.target,
        batches=batches,
        batch_size=ccfg.batch_size,
        data_dir=ccfg.data_dir,
        progress=ctx.bars,
        shard=ctx.shard,
    )
    if not ctx.writer:
        return 0
    print(schedule_table(s))
    recipe = None
    if run.format == "llmcompressor":
        import yaml

        from ..anatomy import discover
        from ..prune.outputs import llmcompressor_recipe

        head = f"# llm-compressor recipe from `paramact schedule`: {s.name} schedule, target {s.target:g}, "
        body = llmcompressor_recipe(s, run.method, discover(model).blocks_path)
        recipe = head + f"model {run.model.name}\n" + yaml.safe_dump(body, sort_keys=False)
        if out is None:
            print(recipe)
    if out is not None:
        write_json(
            out / "config.json",
            {"model": run.model.name, "schedule": asdict(sc), "calibration": asdict(ccfg) if batches else None},
        )
        write_json(out / "env.json", environment(model))
        write_json(out / "schedule.json", s.as_dict())
        if recipe is not None:
            write_text(out / "recipe.yaml", recipe)
            print(f"saved: {out / 'recipe.yaml'}")
        write_json(out / "results.json", {"model": run.model.name, "schedule": s.as_dict()})
        print(f"saved: {out / 'schedule.json'}")
    return 0


COMMAND = Command(
    "schedule",
    "print (and save) a layer-wise sparsity schedule without pruning",
    run,
    ScheduleRun,
    run_options=("out", "device", "threads"),
    needs_out=False,
)
