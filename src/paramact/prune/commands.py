"""`paramact prune | schedule | eval | study prune`: arguments -> typed configs -> library -> files.

add_parsers(sub) adds the commands; run(args) executes one and returns its exit code, or None
when args.command is not one of them. Bad input raises UserError (one line, exit code 2).
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict
from pathlib import Path

from ..errors import UserError
from ..options import add_model_options, floats

log = logging.getLogger(__name__)


def _opt_int(s: str) -> int | None:
    """An integer; 0 means 'no limit' (None)."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {v}")
    return v or None


def _names(s: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in s.split(",") if x.strip())


def _model_args(p) -> None:
    add_model_options(p)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")


def _calibration_args(p, nsamples: int = 32) -> None:
    p.add_argument("--calibration", default="c4", help="calibration dataset: c4, wikitext2, mmlu, siqa, ... (default c4)")
    p.add_argument("--nsamples", type=int, default=nsamples, help=f"calibration sequences (default {nsamples}; the paper: 128)")
    p.add_argument("--seqlen", type=int, default=256, help="tokens per calibration sequence (default 256; the paper: the context)")
    p.add_argument("--calibration-seed", type=int, default=0)
    p.add_argument("--calibration-split", default=None, help="default: the dataset's calibration split")
    p.add_argument("--batch-size", type=int, default=8, help="calibration sequences per forward")


def _schedule_args(p, schedule_default: str = "uniform") -> None:
    from .schedules import SCHEDULES

    p.add_argument("--schedule", default=schedule_default, choices=list(SCHEDULES), help=f"layer-wise sparsity (default {schedule_default})")
    p.add_argument("--sparsity", type=float, default=None,
                   help="target mean sparsity in [0, 1) (default 0.5; N:M: N/M; file: the file's mean)")
    p.add_argument("--alpha", type=float, default=2.0, help="activation schedule: N' = σ(z + α/i) (default 2)")
    p.add_argument("--beta", type=float, default=0.2, help="activation schedule: S_i = S + βS(1 − N'L/ΣN') (default 0.2)")
    p.add_argument("--density", default="gamma:2e-06",
                   help="activation schedule N_i: gamma:<γ> (count above γ), mass50, mass90, above_mean (default gamma:2e-06)")
    p.add_argument("--schedule-data", default="c4", help="activation schedule: data measured by the engine (default c4)")
    p.add_argument("--schedule-samples", type=int, default=64, help="activation schedule: samples (default 64)")
    p.add_argument("--schedule-seqlen", type=int, default=256, help="activation schedule: tokens per corpus window (default 256)")
    p.add_argument("--schedule-seed", type=int, default=1)
    p.add_argument("--owl-lambda", type=float, default=0.08, help="OWL: sparsities span target ± λ (default 0.08)")
    p.add_argument("--owl-m", type=float, default=5.0, help="OWL: outlier = score > M × layer mean (default 5)")
    p.add_argument("--paper-model", default=None, help="paper schedule: llama_7b, llama2_7b, llama2_13b, llama3_8b")
    p.add_argument("--schedule-file", default=None, help="file schedule: JSON list or schedule.json")


def _eval_args(p, items: int = 256, windows: int = 32) -> None:
    p.add_argument("--ppl-seqlen", type=int, default=256, help="perplexity window (default 256; Wanda: the context)")
    p.add_argument("--ppl-windows", type=_opt_int, default=windows, help=f"perplexity windows per corpus (default {windows}; 0 = all)")
    p.add_argument("--items", type=_opt_int, default=items, help=f"items per accuracy task (default {items}, as the paper; 0 = all)")
    p.add_argument("--humaneval-items", type=_opt_int, default=None, help="HumanEval problems (default all 164)")
    p.add_argument("--max-length", type=_opt_int, default=2048, help="prompts keep their last N tokens (default 2048; 0 = context)")
    p.add_argument("--eval-batch-size", type=int, default=8)
    p.add_argument("--eval-seed", type=int, default=0)
    p.add_argument("--mmlu-shots", type=int, default=5)


def add_parsers(sub) -> None:
    from ..evaluation import TASKS
    from .scores import METHODS

    tasks_help = f"comma-separated: {', '.join(TASKS)}"
    p = sub.add_parser("prune", help="prune a model layer by layer (wanda, sparsegpt, magnitude, activation) and evaluate it")
    _model_args(p)
    p.add_argument("--method", default="wanda", choices=list(METHODS))
    p.add_argument("--pattern", default="row", help="row (per output row), matrix, or N:M such as 2:4, 4:8 (N zeros per M)")
    _schedule_args(p)
    _calibration_args(p)
    p.add_argument("--blocksize", type=int, default=128, help="sparsegpt column block (default 128)")
    p.add_argument("--damp", type=float, default=0.01, help="sparsegpt damping, fraction of mean diag(H) (default 0.01)")
    p.add_argument("--eval", default="", help=f"tasks to evaluate after pruning ({tasks_help})")
    _eval_args(p)
    p.add_argument("--save-model", action="store_true", help="also save the pruned model to OUT/model (save_pretrained)")
    p.add_argument("--out", type=Path, required=True, help="run directory (must not hold a finished run)")

    s = sub.add_parser("schedule", help="print (and save) a layer-wise sparsity schedule without pruning")
    _model_args(s)
    _schedule_args(s, "activation")
    _calibration_args(s)
    s.add_argument("--out", type=Path, default=None, help="run directory for schedule.json (optional)")

    e = sub.add_parser("eval", help="evaluate a model: perplexity, paper letter scoring, lm-eval log-likelihood, HumanEval NLL")
    _model_args(e)
    e.add_argument("--tasks", required=True, help=tasks_help)
    _eval_args(e)
    e.add_argument("--out", type=Path, default=None, help="run directory (optional)")

    st = sub.add_parser("study", help="the paper's pruning validations on one model")
    ssub = st.add_subparsers(dest="study_command", required=True)
    from .study import StudyConfig

    d = StudyConfig()
    sp = ssub.add_parser("prune", help="Validation 1 (dense/uniform/activation/OWL × Wanda/SparseGPT × sparsities) "
                                       "and Validation 2 (calibration C4 vs MMLU vs SIQA)")
    _model_args(sp)
    sp.add_argument("--methods", type=_names, default=d.methods)
    sp.add_argument("--schedules", type=_names, default=d.schedules)
    sp.add_argument("--sparsities", type=floats, default=d.sparsities)
    sp.add_argument("--calibrations", type=_names, default=d.calibrations, help="Validation 2 calibration sets")
    sp.add_argument("--v1-tasks", type=_names, default=d.v1_tasks, help=f"Validation 1 tasks (default {','.join(d.v1_tasks)})")
    sp.add_argument("--v2-tasks", type=_names, default=d.v2_tasks, help=f"Validation 2 tasks (default {','.join(d.v2_tasks)})")
    sp.add_argument("--nsamples", type=int, default=d.calibration.nsamples, help="calibration sequences")
    sp.add_argument("--seqlen", type=int, default=d.calibration.seqlen, help="calibration tokens per sequence")
    sp.add_argument("--density", default=d.schedule.density, help="activation schedule N_i measure")
    sp.add_argument("--schedule-samples", type=int, default=d.schedule.samples, help="activation schedule: samples")
    sp.add_argument("--schedule-seqlen", type=int, default=d.schedule.seqlen, help="activation schedule: window tokens")
    _eval_args(sp, items=d.eval.items, windows=d.eval.ppl_windows)
    sp.add_argument("--out", type=Path, required=True)


def _load(args):
    import torch

    from ..models import load_model

    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    return load_model(args.model, dtype=args.dtype, device=args.device, trust_remote_code=args.trust_remote_code)


def _schedule_config(args):
    from .pipeline import ScheduleConfig

    return ScheduleConfig(name=args.schedule, alpha=args.alpha, beta=args.beta, density=args.density,
                          data=args.schedule_data, samples=args.schedule_samples, seqlen=args.schedule_seqlen,
                          seed=args.schedule_seed, owl_lambda=args.owl_lambda, owl_m=args.owl_m,
                          paper_model=args.paper_model, file=args.schedule_file)


def _calibration_config(args):
    from .pipeline import CalibrationConfig

    return CalibrationConfig(dataset=args.calibration, nsamples=args.nsamples, seqlen=args.seqlen,
                             seed=args.calibration_seed, split=args.calibration_split, batch_size=args.batch_size,
                             data_dir=args.data_dir)


def _eval_config(args):
    from ..evaluation import EvalConfig

    return EvalConfig(ppl_seqlen=args.ppl_seqlen, ppl_windows=args.ppl_windows, items=args.items,
                      humaneval_items=args.humaneval_items, seed=args.eval_seed, batch_size=args.eval_batch_size,
                      max_length=args.max_length, mmlu_shots=args.mmlu_shots, data_dir=args.data_dir)


def _progress(args) -> bool:
    return not getattr(args, "quiet", False)


def _prune(args) -> int:
    from ..api import context_length
    from ..evaluation import evaluate, parse_tasks, prepare
    from ..runs import environment, prepare_out, write_json
    from .outputs import eval_table, protocols, save_model, write_prune_run
    from .pipeline import PruneConfig, build_schedule, calibration_snippets, calibration_windows, run_prune
    from .driver import token_batches

    sparsity = args.sparsity
    if sparsity is None and args.schedule != "file" and ":" not in args.pattern:
        sparsity = 0.5
    cfg = PruneConfig(method=args.method, sparsity=sparsity, pattern=args.pattern, schedule=_schedule_config(args),
                      calibration=_calibration_config(args), blocksize=args.blocksize, damp=args.damp)
    tasks = parse_tasks(args.eval) if args.eval.strip() else []
    ecfg = _eval_config(args)
    out = prepare_out(args.out)
    model, tok = _load(args)

    def build(batches=None):
        return build_schedule(model, tok, cfg.schedule, cfg.target, batches=batches,
                              batch_size=cfg.calibration.batch_size, data_dir=args.data_dir, progress=_progress(args))

    schedule = build() if cfg.schedule.name != "owl" else None  # bad schedule input fails before any data is read
    windows, source = calibration_windows(model, tok, cfg.calibration)
    if schedule is None:
        schedule = build(token_batches(windows, cfg.calibration.batch_size))
    prepared = prepare(tok, tasks, ecfg, context=context_length(model),
                       exclude_c4=calibration_snippets(tok, windows) if cfg.calibration.dataset == "c4" else ()) if tasks else []
    write_json(out / "config.json", {"model": args.model, "prune": asdict(cfg), "eval": asdict(ecfg) if tasks else None, "tasks": tasks})
    write_json(out / "env.json", environment(model, cfg.calibration.seed))
    report = run_prune(model, tok, cfg, schedule=schedule, windows=windows, calibration_source=source,
                       progress=_progress(args))
    evals = evaluate(model, prepared, _progress(args)) if prepared else {}
    meta = {"model": args.model}
    if args.save_model:
        save_model(model, tok, out / "model", args.model)
        meta["saved_model"] = str(out / "model")
    write_prune_run(out, report, evals, meta)
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
    from ..runs import environment, prepare_out, write_json
    from .driver import token_batches
    from .outputs import schedule_table
    from .pipeline import build_schedule, calibration_windows

    sc = _schedule_config(args)
    ccfg = _calibration_config(args)
    target = args.sparsity if args.sparsity is not None or sc.name == "file" else 0.5
    out = prepare_out(args.out) if args.out is not None else None
    model, tok = _load(args)
    batches = None
    if sc.name == "owl":
        windows, _ = calibration_windows(model, tok, ccfg)
        batches = token_batches(windows, ccfg.batch_size)
    s = build_schedule(model, tok, sc, target, batches=batches, batch_size=ccfg.batch_size, data_dir=args.data_dir,
                       progress=_progress(args))
    print(schedule_table(s))
    if out is not None:
        write_json(out / "config.json", {"model": args.model, "schedule": asdict(sc), "calibration": asdict(ccfg) if batches else None})
        write_json(out / "env.json", environment(model))
        write_json(out / "schedule.json", s.as_dict())
        write_json(out / "results.json", {"model": args.model, "schedule": s.as_dict()})
        print(f"saved: {out / 'schedule.json'}")
    return 0


def _eval(args) -> int:
    from ..api import context_length
    from ..evaluation import evaluate, parse_tasks, prepare
    from ..runs import environment, prepare_out, write_json
    from .outputs import eval_table, protocols, write_text

    tasks = parse_tasks(args.tasks)
    ecfg = _eval_config(args)
    out = prepare_out(args.out) if args.out is not None else None
    model, tok = _load(args)
    prepared = prepare(tok, tasks, ecfg, context=context_length(model))
    if out is not None:
        write_json(out / "config.json", {"model": args.model, "eval": asdict(ecfg), "tasks": tasks})
        write_json(out / "env.json", environment(model))
    evals = evaluate(model, prepared, _progress(args))
    table = eval_table([(args.model, {"eval": evals})])
    print(table)
    print(protocols(evals))
    if out is not None:
        write_text(out / "table.md", table + "\n\n" + protocols(evals) + "\n")
        write_json(out / "results.json", {"model": args.model, "eval": evals})
        print(f"run directory: {out}")
    return 0


def _study(args) -> int:
    from dataclasses import replace

    from ..runs import environment, prepare_out, write_json
    from .outputs import write_study_run
    from .pipeline import CalibrationConfig
    from .study import StudyConfig, label, run_study

    base = StudyConfig()
    cfg = StudyConfig(methods=args.methods, schedules=args.schedules, sparsities=args.sparsities,
                      calibrations=args.calibrations, v1_tasks=args.v1_tasks, v2_tasks=args.v2_tasks,
                      calibration=CalibrationConfig(nsamples=args.nsamples, seqlen=args.seqlen, data_dir=args.data_dir),
                      schedule=replace(base.schedule, density=args.density, samples=args.schedule_samples,
                                       seqlen=args.schedule_seqlen),
                      eval=_eval_config(args))
    out = prepare_out(args.out)
    model, tok = _load(args)
    write_json(out / "config.json", {"model": args.model, "study": asdict(cfg)})
    write_json(out / "env.json", environment(model, cfg.calibration.seed))
    done: list[dict] = []

    def on_row(r: dict) -> None:
        done.append(r)
        write_json(out / "partial.json", done)
        ev = " ".join(f"{t}={v.get('ppl', v.get('acc')):.4g}" for t, v in r["eval"].items())
        print(f"[{len(done)}] {label(r)} ({r['seconds']:.0f} s): {ev}", flush=True)

    res = run_study(model, tok, cfg, _progress(args), on_row)
    tables, notes, sizes = write_study_run(out, args.model, res, cfg)
    for text in tables.values():
        print("\n" + text)
    print("\n" + sizes)
    for c in notes:
        print("- " + c)
    print(f"run directory: {out}")
    return 0


def run(args) -> int | None:
    cmd = getattr(args, "command", None)
    handlers = {"prune": _prune, "schedule": _schedule, "eval": _eval, "study": _study}
    if cmd not in handlers:
        return None
    out = getattr(args, "out", None)
    fresh = out is not None and not Path(out).exists()
    try:
        return handlers[cmd](args)
    except BaseException:
        if fresh and Path(out).is_dir() and not any(Path(out).iterdir()):
            Path(out).rmdir()  # an error before anything was written leaves no empty run directory
        raise
