"""`paramact findings | sts | report`: arguments -> typed run configs -> library -> a short summary.

add_parsers(sub) adds the three subcommands; run(args) executes one of them and returns its exit
code, or None when args.command is not one of them. Bad input raises UserError.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..options import (add_config_option, add_coverage_option, add_device_map_option, add_model_options,
                       add_resume_options, add_stats_device_option, floats)


def _model_args(p) -> None:
    from ..targets import TARGETS

    add_model_options(p)
    p.add_argument("--target", default="max_logit", choices=sorted(TARGETS))
    p.add_argument("--batch-size", type=int, default=8)
    add_device_map_option(p)
    add_coverage_option(p)
    p.add_argument("--out", type=Path, default=None, help="run directory (required; must not hold a finished run)")
    add_config_option(p)


def add_parsers(sub) -> None:
    from ..api import DEFAULT_SKETCH_DIM
    from ..density import DEFAULT_GAMMAS
    from .findings import DEFAULT_DATASETS
    from .layers import RANGES

    f = sub.add_parser("findings", help="the paper's Findings 1-3: density, pair LLMDcos, dataset matrix, plots")
    _model_args(f)
    f.add_argument("--datasets", default=",".join(DEFAULT_DATASETS),
                   help=f"comma-separated registry datasets, embedded domains or files (default {','.join(DEFAULT_DATASETS)})")
    f.add_argument("--samples", type=int, default=64, help="samples per dataset (default 64, as the paper)")
    f.add_argument("--data-seed", type=int, default=1)
    f.add_argument("--pairs", default=None,
                   help="Finding 2 boxplot pairs, e.g. boolq-boolq,mmlu-boolq (default: every dataset with itself "
                        "and the cross pairs of the first three tasks)")
    f.add_argument("--check-samples", type=int, default=16,
                   help="items (all datasets together, one batch) whose exact LLMDcos checks the matrix; 0 = no check")
    f.add_argument("--save-maps", action="store_true", help="also save each dataset's mean map (4 bytes per weight)")
    f.add_argument("--save-fingerprints", action="store_true",
                   help="keep each dataset's per-sample fingerprints (int8: layers x sketch-dim bytes per sample)")
    f.add_argument("--max-length", type=int, default=None, help="truncate samples to this many tokens")
    f.add_argument("--gammas", type=floats, default=DEFAULT_GAMMAS, help="thresholds γ, comma-separated")
    f.add_argument("--sketch-dim", type=int, default=DEFAULT_SKETCH_DIM, help="fingerprint buckets per layer")
    f.add_argument("--seed", type=int, default=0, help="fingerprint hash seed")
    add_resume_options(f)
    add_stats_device_option(f)
    f.add_argument("--keep-order", action="store_true",
                   help="batch samples in their drawn order (default: texts of similar length together, less padding; "
                        "the numbers are the same)")

    s = sub.add_parser("sts", help="Validation 3: Spearman ρ of summed LLMDcos with STS-B / SICK gold; ted_zh_en: "
                                   "cross-lingual pairs")
    _model_args(s)
    s.add_argument("--dataset", default="stsb", choices=["stsb", "sick", "ted_zh_en"])
    s.add_argument("--split", default=None, help="default: STS-B dev, SICK validation, TED tst2016")
    s.add_argument("--pairs", type=int, default=256, help="number of pairs (default 256, as the paper)")
    s.add_argument("--seed", type=int, default=1, help="pair sampling seed (SICK, TED)")
    s.add_argument("--order", default=None, choices=["first", "random"], help="default: the paper's")
    s.add_argument("--layer-range", default="sts",
                   help=f"summed range: one of {', '.join(RANGES)}, fractions 'start:stop', or 0-based indices '19:28' (default sts = the "
                        "paper's [20, L-2) at 32 layers)")
    s.add_argument("--no-baselines", action="store_true", help="skip the hidden-state and MiniLM baselines")
    add_resume_options(s)

    r = sub.add_parser("report", help="render DIR/report.html (figures, tables, config, the paper's numbers)")
    r.add_argument("dir", type=Path)
    r.add_argument("--no-screenshot", action="store_true",
                   help="skip report_first_screen.png (a headless-Chromium picture of the page's first screen)")


def parse_pairs(spec: str | None, names: list[str]) -> tuple[tuple[str, str], ...] | None:
    """'a-b,c-d' -> ((a, b), (c, d)); a name may itself contain '-', so every split point is tried."""
    if spec is None:
        return None
    out = []
    for item in (x.strip() for x in spec.split(",") if x.strip()):
        cuts = [(item[:i], item[i + 1:]) for i, ch in enumerate(item) if ch == "-"]
        found = [c for c in cuts if c[0] in names and c[1] in names]
        if len(found) != 1:
            raise UserError(f"pair {item!r}: write it as A-B with A and B among --datasets ({', '.join(names)})")
        out.append(found[0])
    return tuple(out)


def _need_out(args) -> None:
    if args.out is None:
        raise UserError(f"{args.command} needs --out (on the command line or in --config)")


def _findings(args) -> int:
    from ..api import ActivationConfig
    from .findings import FINDINGS_REDUCERS, FindingsRun, run_findings

    _need_out(args)
    names = [d.strip() for d in args.datasets.split(",") if d.strip()]
    cfg = ActivationConfig(target=args.target, batch_size=args.batch_size, max_length=args.max_length,
                           gammas=args.gammas, sketch_dim=args.sketch_dim, seed=args.seed,
                           sort_by_length=not args.keep_order, stats_device=args.stats_device,
                           allow_uncovered=args.allow_uncovered, reducers=FINDINGS_REDUCERS)
    if args.check_samples < 0:
        raise UserError(f"--check-samples must be >= 0, got {args.check_samples}")
    run = FindingsRun(model=args.model, datasets=tuple(names), samples=args.samples, data_seed=args.data_seed,
                      data_dir=args.data_dir, pairs=parse_pairs(args.pairs, names), check_samples=args.check_samples,
                      save_maps=args.save_maps, save_fingerprints=args.save_fingerprints, dtype=args.dtype, device=args.device, device_map=args.device_map,
                      trust_remote_code=args.trust_remote_code, checkpoint_every=args.checkpoint_every,
                      activation=cfg)
    res = run_findings(run, args.out, progress=not getattr(args, "quiet", False), resume=args.resume)
    if not res:  # a torchrun process other than rank 0: rank 0 reports
        return 0
    deep = res["ranges"]["deep"]["label"]
    print(f"shallow {res['ranges']['shallow']['label']} vs deep {deep}: mean LLMDcos over item pairs")
    for k, v in res["finding2"]["summary"].items():
        print(f"  {k.replace('|', ' - '):32s} shallow {v['shallow']:.3f}  deep {v['deep']:.3f}")
    print(f"\ndeep-layer matrix (layers {deep}):")
    w = max(len(n) for n in res["datasets"])
    for n, row in zip(res["datasets"], res["finding3"]["matrix"]):
        print(f"  {n:>{w}s} " + " ".join(f"{x:.3f}" for x in row))
    ck = res["finding3"]["check"]
    if ck:
        print(f"check vs exact ({ck['n_pairs']} pairs): matrix max |error| {ck['matrix_error_max']:.4f}, "
              f"pair |error| p99 {ck['pair_error_p99']:.4f}")
    return _report(args.out)


def _sts(args) -> int:
    from .sts import StsRun, run_sts

    _need_out(args)
    run = StsRun(model=args.model, dataset=args.dataset, split=args.split, pairs=args.pairs, seed=args.seed,
                 order=args.order, data_dir=args.data_dir, layer_range=args.layer_range, target=args.target,
                 batch_size=args.batch_size, baselines=not args.no_baselines, dtype=args.dtype, device=args.device,
                 device_map=args.device_map, trust_remote_code=args.trust_remote_code,
                 checkpoint_every=args.checkpoint_every, allow_uncovered=args.allow_uncovered)
    res = run_sts(run, args.out, progress=not getattr(args, "quiet", False), resume=args.resume)
    if not res:  # a torchrun process other than rank 0: rank 0 reports
        return 0
    if res["kind"] == "crosslingual":
        d = res["deep"]
        print(f"{res['n_pairs']} zh-en pairs, deep layers {res['layer_range']['label']}: translations "
              f"{d['matched']:.3f}, mismatched {d['mismatched']:.3f}")
    else:
        sp = res["spearman"]
        fmt = lambda x: "undefined" if x is None else f"{x:.3f}"  # noqa: E731
        print(f"{res['dataset']} {res['split']}, {sp['n_pairs']} pairs: Spearman ρ {fmt(sp['rho'])} "
              f"(p {sp['p'] if sp['p'] is None else format(sp['p'], '.2e')}), layers {sp['layer_range']['label']}")
        for row in res["ranges"][1:]:
            print(f"  range {row['name']:8s} {row['layer_range']['label']:36s} ρ {fmt(row['rho'])}")
        for name, b in res["baselines"].items():
            print(f"  baseline {name}: ρ {fmt(b['rho'])}" + ("" if b.get("available", True) else f" ({b['note']})"))
    return _report(args.out)


def _report(run_dir: Path, screenshot: bool = False) -> int:
    from ..report import render_report
    from ..report.screenshot import first_screen

    page = render_report(run_dir)
    print(f"report: {page}")
    if screenshot:
        shot = first_screen(page)
        if shot is not None:
            print(f"first screen: {shot}")
    return 0


def run(args) -> int | None:
    cmd = getattr(args, "command", None)
    if cmd == "findings":
        return _findings(args)
    if cmd == "sts":
        return _sts(args)
    if cmd == "report":
        return _report(args.dir, screenshot=not args.no_screenshot)
    return None
