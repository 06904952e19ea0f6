"""`paramact findings`: the paper's Findings 1-3 (density, pair LLMDcos, dataset matrix), then the report."""

from __future__ import annotations

from ..experiments.findings import FindingsRun, run_findings
from .command import Command
from .report_cmd import render


def run(run: FindingsRun, ctx, args) -> int:
    res = run_findings(run, ctx)
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
        print(
            f"check vs exact ({ck['n_pairs']} pairs): matrix max |error| {ck['matrix_error_max']:.4f}, "
            f"pair |error| p99 {ck['pair_error_p99']:.4f}"
        )
    return render(ctx.out)


COMMAND = Command(
    "findings", "the paper's Findings 1-3: density, pair LLMDcos, dataset matrix, plots", run, FindingsRun
)
