"""`paramact study prune`: the paper's pruning validations as one resumable run.

Each finished cell (one pruned-and-evaluated model) is appended to OUT/partial.json, atomically;
--resume reloads those cells, checks the configuration is the same, and runs only the rest.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from ..errors import UserError
from ..options import floats
from . import options as o


def add_parser(sub) -> None:
    from .study import StudyConfig

    d = StudyConfig()
    st = sub.add_parser("study", help="the paper's pruning validations on one model")
    ssub = st.add_subparsers(dest="study_command", required=True)
    sp = ssub.add_parser("prune", help="Validation 1 (dense/uniform/activation/OWL × Wanda/SparseGPT × sparsities) "
                                       "and Validation 2 (calibration C4 vs MMLU vs SIQA)")
    o.model_args(sp)
    sp.add_argument("--methods", type=o.names, default=d.methods)
    sp.add_argument("--schedules", type=o.names, default=d.schedules)
    sp.add_argument("--sparsities", type=floats, default=d.sparsities)
    sp.add_argument("--calibrations", type=o.names, default=d.calibrations, help="Validation 2 calibration sets")
    sp.add_argument("--v1-tasks", type=o.names, default=d.v1_tasks, help=f"Validation 1 tasks (default {','.join(d.v1_tasks)})")
    sp.add_argument("--v2-tasks", type=o.names, default=d.v2_tasks, help=f"Validation 2 tasks (default {','.join(d.v2_tasks)})")
    sp.add_argument("--nsamples", type=int, default=d.calibration.nsamples, help="calibration sequences")
    sp.add_argument("--seqlen", type=int, default=d.calibration.seqlen, help="calibration tokens per sequence")
    sp.add_argument("--density", default=d.schedule.density, help="activation schedule N_i measure")
    sp.add_argument("--schedule-samples", type=int, default=d.schedule.samples, help="activation schedule: samples")
    sp.add_argument("--schedule-seqlen", type=int, default=d.schedule.seqlen, help="activation schedule: window tokens")
    o.eval_args(sp, items=d.eval.items, windows=d.eval.ppl_windows)
    sp.add_argument("--resume", action="store_true", help="continue a killed study in --out: finished cells are kept")
    sp.add_argument("--out", type=Path, default=None, help="run directory (required)")


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


def run(args) -> int:
    from ..runs import environment, prepare_out, write_json
    from .outputs import write_study_run
    from .config import CalibrationConfig
    from .study import StudyConfig, label, run_study

    if args.out is None:
        raise UserError("study prune needs --out (on the command line or in --config)")
    o.single_process("study prune")
    base = StudyConfig()
    cfg = StudyConfig(methods=args.methods, schedules=args.schedules, sparsities=args.sparsities,
                      calibrations=args.calibrations, v1_tasks=args.v1_tasks, v2_tasks=args.v2_tasks,
                      calibration=CalibrationConfig(nsamples=args.nsamples, seqlen=args.seqlen, data_dir=args.data_dir),
                      schedule=replace(base.schedule, density=args.density, samples=args.schedule_samples,
                                       seqlen=args.schedule_seqlen),
                      eval=o.eval_config(args))
    config = {"model": args.model, "study": asdict(cfg)}
    out = Path(args.out)
    if args.resume:
        finished = _finished_cells(out, config)
        out.mkdir(parents=True, exist_ok=True)
    else:
        finished = {}
        prepare_out(out)
    model, tok = o.load_for(args)
    write_json(out / "config.json", config)
    write_json(out / "env.json", environment(model, cfg.calibration.seed))
    done: list[dict] = []

    def on_row(r: dict) -> None:
        done.append(r)
        write_json(out / "partial.json", done)
        ev = " ".join(f"{t}={v.get('ppl', v.get('acc')):.4g}" for t, v in r["eval"].items())
        kept = " (kept from the interrupted run)" if r["key"] in finished else f" ({r['seconds']:.0f} s)"
        print(f"[{len(done)}] {label(r)}{kept}: {ev}", flush=True)

    res = run_study(model, tok, cfg, o.progress(args), on_row, finished=finished)
    tables, notes, sizes = write_study_run(out, args.model, res, cfg)
    for text in tables.values():
        print("\n" + text)
    print("\n" + sizes)
    for c in notes:
        print("- " + c)
    print(f"run directory: {out}")
    return 0
