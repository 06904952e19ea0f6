"""`paramact study prune`: the paper's pruning validations as one resumable run.

Each finished cell (one pruned-and-evaluated model) is appended to OUT/partial.json, atomically;
--resume reloads those cells, checks the configuration is the same, and runs only the rest.
--cells-from DIR,... takes the cells other studies finished under the same cell settings (the
library's prune.study_cells says which), so an extended study runs only its new cells.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from ..errors import UserError
from ..prune.study import StudyRun
from .command import Command

log = logging.getLogger(__name__)


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


def _cell_sources(dirs: tuple[str, ...]) -> list:
    """--cells-from: each directory's config, finished rows (results.json, else the partial.json of a
    study still running) and environment."""
    from ..prune.study_cells import CellSource
    from ..runs import read_json

    out = []
    for d in dirs:
        path = Path(d)
        if not (path / "config.json").is_file():
            raise UserError(f"--cells-from {d}: not a study's run directory (no config.json)")
        if (path / "results.json").is_file():
            res = read_json(path / "results.json")
            rows = res.get("rows") if isinstance(res, dict) else None
        elif (path / "partial.json").is_file():
            rows = read_json(path / "partial.json")
        else:
            raise UserError(f"--cells-from {d}: no finished cell (neither results.json nor partial.json)")
        if not isinstance(rows, list):
            raise UserError(f"--cells-from {d}: its results hold no list of cells")
        config = read_json(path / "config.json")
        if not isinstance(config, dict) or not isinstance(config.get("study"), dict):
            raise UserError(f"--cells-from {d}: not a study's run directory (its config.json holds no study)")
        env = read_json(path / "env.json") if (path / "env.json").is_file() else {}
        if not isinstance(env, dict):
            raise UserError(f"--cells-from {d}: its env.json holds no environment record")
        out.append(CellSource(str(path), config, rows, env))
    return out


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"


def run(run: StudyRun, ctx, args) -> int:
    from ..evaluation import parse_tasks
    from ..models import load
    from ..prune.outputs import write_text
    from ..prune.study import label, plan, run_study
    from ..prune.study_cells import check_dtype, reusable_cells
    from ..prune.study_outputs import provisional_document, write_study_run
    from ..runs import environment, prepare_out, resumed_environment, write_json

    cfg, out = run.study, ctx.out
    parse_tasks(cfg.evaluated_tasks)  # lm-eval installed where the tasks need it: before the model loads
    config = {"model": run.model.name, "study": asdict(cfg)}
    sources = _cell_sources(run.cells_from)
    planned = plan(cfg)
    reused, notes = reusable_cells(planned, config, sources)  # other settings refused before the model loads
    if ctx.resume:
        finished = _finished_cells(out, config)
        out.mkdir(parents=True, exist_ok=True)
    else:
        finished = {}
        prepare_out(out)
    model, tok = load(run.model, ctx.device)
    env = environment(model, cfg.calibration.seed)
    for src in sources:
        check_dtype(src, env["dtype"])
    write_json(out / "config.json", config)
    for line in notes:
        log.info("--cells-from %s", line)
    finished = {**reused, **finished}  # a cell this run already kept stays as it was kept
    if sources:
        env["cells_from"] = {s.label: s.env for s in sources}
    write_json(out / "env.json", resumed_environment(out, env) if ctx.resume else env)
    done: list[dict] = []
    to_run = sum(r["key"] not in finished for r in planned)
    ran: list[float] = []

    def on_row(r: dict) -> None:
        done.append(r)
        write_json(out / "partial.json", done)
        if r["key"] not in finished and len(done) < len(planned):  # the tables so far, after a cell run here
            write_text(out / "provisional.md", provisional_document(done, cfg, len(planned)))
        ev = " ".join(f"{t}={v.get('ppl', v.get('acc')):.4g}" for t, v in r["eval"].items())
        if r["key"] not in finished:
            ran.append(r["seconds"])
            left = to_run - len(ran)
            kept = f" ({r['seconds']:.0f} s; {left} more to run, ~{_hours(left * sum(ran) / len(ran))} at this pace)"
            kept = kept if left else f" ({r['seconds']:.0f} s; the last to run)"
        elif "reused_from" in r:
            kept = f" (reused from {r['reused_from']})"
        else:
            kept = " (kept from the interrupted run)"
        print(f"[{len(done)}/{len(planned)}] {label(r)}{kept}: {ev}", flush=True)

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
