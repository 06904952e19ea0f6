"""`paramact activations`: mean activation map, density, LLMDcos and fingerprints of datasets."""

from __future__ import annotations

from ..experiments.activations import ActivationsRun, run_activations
from .command import Command


def _table(results: dict, gammas) -> str:
    from ..density import gamma_key

    names = [n for n in results if n != "summary"]
    g = gamma_key(gammas[0])
    head = f"{'layer':>5} {'params':>9} " + " ".join(f"{n[:10] + ' >' + g:>18} {'m50':>6} {'m90':>6}" for n in names)
    lines = [head, "-" * len(head)]
    for i, row in enumerate(results[names[0]]["layers"]):
        cells = []
        for n in names:
            r = results[n]["layers"][i]
            cells.append(f"{r['count_above'][g]:>18,d} {r['mass_share_50']:6.3f} {r['mass_share_90']:6.3f}")
        lines.append(f"{i:>5} {row['params']:>9,d} " + " ".join(cells))
    lines.append(
        f"(layers 0-based; '>{g}': parameters with mean |A| above γ; m50/m90: share of parameters carrying "
        "50%/90% of the layer's activation mass)"
    )
    return "\n".join(lines)


def run(run: ActivationsRun, ctx, args) -> int:
    results = run_activations(run, ctx)
    if not results:  # a non-zero rank of a torchrun job: rank 0 reports
        return 0
    print(_table(results, run.activation.gammas))
    if "summary" in results:
        cross = results["summary"]["mean_llmdcos_fingerprint"]
        if cross:
            L = len(next(iter(cross.values())))
            shallow, deep = slice(0, L // 2), slice(L // 2, L - 2)
            print("\nmean LLMDcos over sample pairs (fingerprints), shallow [0, L/2) vs deep [L/2, L-2):")
            for k, v in cross.items():
                sh = sum(v[shallow]) / len(v[shallow])
                dp = sum(v[deep]) / max(len(v[deep]), 1)
                print(f"  {k:24s} shallow {sh:.3f}  deep {dp:.3f}")
    print(f"run directory: {ctx.out}")
    return 0


COMMAND = Command(
    "activations", "mean activation map, density, LLMDcos and fingerprints of a dataset", run, ActivationsRun
)
