"""`paramact sts`: Validation 3, Spearman ρ of summed LLMDcos with STS-B / SICK gold; TED zh-en pairs."""

from __future__ import annotations

from ..experiments.sts import StsRun, run_sts
from .command import Command
from .report_cmd import render


def _fmt(x) -> str:
    return "undefined" if x is None else f"{x:.3f}"


def run(run: StsRun, ctx, args) -> int:
    res = run_sts(run, ctx)
    if not res:  # a torchrun process other than rank 0: rank 0 reports
        return 0
    if res["kind"] == "crosslingual":
        d = res["deep"]
        print(
            f"{res['n_pairs']} zh-en pairs, deep layers {res['layer_range']['label']}: translations "
            f"{d['matched']:.3f}, mismatched {d['mismatched']:.3f}"
        )
    else:
        sp = res["spearman"]
        p = sp["p"] if sp["p"] is None else format(sp["p"], ".2e")
        print(
            f"{res['dataset']} {res['split']}, {sp['n_pairs']} pairs: Spearman ρ {_fmt(sp['rho'])} (p {p}), "
            f"layers {sp['layer_range']['label']}"
        )
        for row in res["ranges"][1:]:
            print(f"  range {row['name']:8s} {row['layer_range']['label']:36s} ρ {_fmt(row['rho'])}")
        for name, b in res["baselines"].items():
            print(f"  baseline {name}: ρ {_fmt(b['rho'])}" + ("" if b.get("available", True) else f" ({b['note']})"))
    return render(ctx.out)


COMMAND = Command(
    "sts",
    "Validation 3: Spearman ρ of summed LLMDcos with STS-B / SICK gold; ted_zh_en: cross-lingual pairs",
    run,
    StsRun,
    only={"activation": ("target", "batch_size", "allow_uncovered")},
)
