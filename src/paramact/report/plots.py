"""Figures of a run directory (matplotlib, Agg), written atomically as PNG files.

Each function takes the run's results.json (a dict) and a folder, and returns the figures it
wrote as (file name, title, caption). Layer axes are labelled with their index base.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..runs import atomic_path
from . import paper

LAYER_AXIS = "layer (0-based)"


@dataclass(frozen=True)
class Figure:
    file: str
    title: str
    caption: str


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, folder: Path, name: str) -> str:
    plt = _plt()
    with atomic_path(folder / name) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return name


def _layer_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(LAYER_AXIS)


def _shade(ax, ranges: dict) -> None:
    for name, color in (("shallow", "tab:green"), ("deep", "tab:purple"), ("sts", "tab:purple")):
        r = ranges.get(name)
        if r:
            ax.axvspan(r["start"] - 0.5, r["stop"] - 0.5, color=color, alpha=0.08, label=f"{name} {r['label']}")


def findings_figures(res: dict, folder: Path) -> list[Figure]:
    plt = _plt()
    out = []
    names, corpora = res["datasets"], set(res["corpora"])
    groups = [("tasks", [n for n in names if n not in corpora]), ("corpora", [n for n in names if n in corpora])]
    measures = [(f"activated parameters (Ā > γ={g})", lambda r, g=g: r["count_above"][g]) for g in res["gammas"]]
    measures.append(("mass_share_50 (threshold-free)", lambda r: r["mass_share_50"]))
    for group, members in groups:
        if not members:
            continue
        fig, axes = plt.subplots(1, len(measures), figsize=(4.2 * len(measures), 3.4), squeeze=False)
        for ax, (label, fn) in zip(axes[0], measures):
            for n in members:
                layers = res["finding1"][n]["layers"]
                ax.plot([r["index"] for r in layers], [fn(r) for r in layers], marker=".", label=n)
            _layer_axis(ax)
            ax.set_ylabel(label)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        name = _save(fig, folder, f"finding1_{group}.png")
        out.append(
            Figure(
                name,
                f"Finding 1: activation density per layer ({group})",
                "Number of each layer's weights whose mean |A| over the samples exceeds γ (the paper's "
                "measure), and the threshold-free share of weights carrying 50% of the layer's "
                "activation mass (paper Fig. 1/2/4).",
            )
        )
    pairs = res["finding2"]["pairs"]
    if pairs:
        keys = list(pairs)
        cols = min(3, len(keys))
        rows = -(-len(keys) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.0 * rows), squeeze=False)
        for ax, k in zip(axes.flat, keys):
            vals = pairs[k]["per_layer"]
            ax.boxplot(vals, positions=list(range(len(vals))), whis=1.5, showfliers=True, flierprops={"markersize": 2})
            ax.set_xticks(list(range(0, len(vals), max(1, len(vals) // 8))))
            ax.set_xticklabels([str(i) for i in range(0, len(vals), max(1, len(vals) // 8))])
            ax.set_title(f"{k.replace('|', ' – ')} ({pairs[k]['n_pairs']} pairs)", fontsize=9)
            ax.set_xlabel(LAYER_AXIS, fontsize=8)
            ax.set_ylabel("LLMDcos", fontsize=8)
            ax.set_ylim(0, 1)
        for ax in list(axes.flat)[len(keys) :]:
            ax.axis("off")
        fig.tight_layout()
        out.append(
            Figure(
                _save(fig, folder, "finding2_boxplots.png"),
                "Finding 2: per-layer LLMDcos distributions",
                "Fingerprint LLMDcos of paired items (k-th with k-th; a dataset with itself: different "
                "items), per layer, boxes with 1.5 IQR whiskers (paper Fig. 3/5).",
            )
        )
    fig, ax = plt.subplots(figsize=(8, 4))
    groups = {
        "a dataset with itself": [v for k, v in res["mean_llmdcos"].items() if k.split("|")[0] == k.split("|")[1]],
        "two different datasets": [v for k, v in res["mean_llmdcos"].items() if k.split("|")[0] != k.split("|")[1]],
    }
    for (label, curves), color in zip(groups.items(), ("tab:blue", "tab:orange")):
        if not curves:
            continue
        x = list(range(len(curves[0])))
        cols = list(zip(*curves))
        ax.plot(x, [sum(c) / len(c) for c in cols], marker=".", color=color, label=f"{label}: mean of {len(curves)}")
        ax.fill_between(
            x, [min(c) for c in cols], [max(c) for c in cols], color=color, alpha=0.18, label=f"{label}: min–max"
        )
    _shade(ax, res["ranges"])
    _layer_axis(ax)
    ax.set_ylabel("mean LLMDcos over all pairs")
    ax.legend(fontsize=7)
    out.append(
        Figure(
            _save(fig, folder, "finding2_means.png"),
            "Finding 2: within- and cross-dataset similarity per layer",
            "Per layer, the mean LLMDcos over all item pairs (fingerprints) of each dataset with itself "
            "(distinct items) and of each pair of datasets: the line is the mean over those curves, the band "
            "their range. Shaded: the shallow and deep ranges. Every pair's numbers are in the tables.",
        )
    )
    f3 = res["finding3"]
    out.append(
        Figure(
            _heatmap(
                f3["datasets"],
                f3["matrix"],
                folder,
                "finding3_matrix.png",
                f"mean LLMDcos, layers {f3['layer_range']['label']}",
            ),
            "Finding 3: dataset × dataset deep-layer LLMDcos (this run)",
            "Mean fingerprint LLMDcos over all cross pairs, averaged over the deep layers (paper Fig. 6).",
        )
    )
    shared = [n for n in f3["datasets"] if paper.base(n) in paper.FIG6_DATASETS]
    if len(shared) >= 2:
        mat = [[paper.fig6(a, b) for b in shared] for a in shared]
        out.append(
            Figure(
                _heatmap(shared, mat, folder, "finding3_paper.png", paper.FIG6_NOTE),
                "Finding 3: the paper's Fig. 6 on the same datasets",
                paper.FIG6_NOTE,
            )
        )
    return out


def experts_figures(res: dict, folder: Path) -> list[Figure]:
    """Mixture-of-experts models: one layer x expert heatmap of activation-mass shares per dataset,
    and the datasets' mean expert-usage similarity."""
    plt = _plt()
    ex = res["experts"]
    names = list(ex["usage"])
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.2 * cols, 0.5 + 0.25 * len(ex["layers"]) * rows + 1.2 * rows), squeeze=False
    )
    top = max(max(max(r) for r in ex["usage"][n]["mass_share"]) for n in names) or 1.0
    for k, ax in enumerate(axes.flat):
        if k >= len(names):
            ax.axis("off")
            continue
        im = ax.imshow(ex["usage"][names[k]]["mass_share"], cmap="magma", vmin=0, vmax=top, aspect="auto")
        ax.set_title(names[k], fontsize=8)
        ax.set_yticks(range(len(ex["layers"])), [str(i) for i in ex["layers"]], fontsize=6)
        ax.set_xlabel("expert", fontsize=7)
        ax.set_ylabel(LAYER_AXIS, fontsize=7)
    fig.colorbar(im, ax=axes, fraction=0.02)
    out = [
        Figure(
            _save(fig, folder, "experts_mass.png"),
            "Experts: share of each MoE layer's activation mass",
            "Per dataset, each row (an MoE layer) is the share of that layer's expert activation mass (Σ A "
            "over an expert's matrices, summed over samples) carried by each expert.",
        )
    ]
    if len(names) > 1:
        mat = [
            [
                1.0 if a == b else sum(v) / len(v)
                for b in names
                for v in [
                    ex["similarity"].get(f"{a}|{b}", ex["similarity"].get(f"{b}|{a}", {})).get("token_cosine", [0])
                ]
            ]
            for a in names
        ]
        out.append(
            Figure(
                _heatmap(names, mat, folder, "experts_similarity.png", "expert usage: token-share cosine"),
                "Experts: how far two datasets route to the same experts",
                "Cosine of the datasets' token-share vectors per MoE layer, averaged over MoE layers.",
            )
        )
    return out


def _heatmap(names, matrix, folder, file, title) -> str:
    plt = _plt()
    n = len(names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * n, 0.8 + 0.65 * n))
    im = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=max(1e-9, max(max(r) for r in matrix)))
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{matrix[i][j]:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if matrix[i][j] < 0.6 * max(max(r) for r in matrix) else "black",
            )
    ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), names, fontsize=8)
    ax.set_title(title, fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, folder, file)


def sts_figures(res: dict, folder: Path) -> list[Figure]:
    plt = _plt()
    out = []
    fig, ax = plt.subplots(figsize=(8, 3.6))
    nan = float("nan")
    rho = [nan if r is None else r for r in res["per_layer_rho"]]  # None: ρ undefined (constant values)
    ax.plot(range(len(rho)), rho, marker="o", label="LLMDcos")
    hid = res.get("baselines", {}).get("hidden_cosine", {}).get("per_layer_rho")
    if hid:
        hid = [nan if r is None else r for r in hid]
        ax.plot(range(len(hid)), hid, marker=".", linestyle="--", label="hidden-state cosine")
    _shade(ax, {"sts": res["spearman"]["layer_range"]})
    ax.axhline(0, color="grey", linewidth=0.5)
    _layer_axis(ax)
    ax.set_ylabel("Spearman ρ with gold")
    ax.set_ylim(-1, 1)
    ax.legend(fontsize=7)
    out.append(
        Figure(
            _save(fig, folder, "sts_per_layer_rho.png"),
            "Spearman ρ per layer",
            f"{res['dataset']} {res['split']}, {res['spearman']['n_pairs']} pairs; shaded: the summed range.",
        )
    )
    if res.get("scores"):
        fig, ax = plt.subplots(figsize=(4.5, 3.6))
        ax.scatter(res["scores"]["gold"], res["scores"]["llmdcos_sum"], s=8)
        ax.set_xlabel("gold score")
        ax.set_ylabel(f"LLMDcos summed over {res['spearman']['layer_range']['label']}")
        out.append(Figure(_save(fig, folder, "sts_scatter.png"), "Gold score against summed LLMDcos", ""))
    return out


def crosslingual_figures(res: dict, folder: Path) -> list[Figure]:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for key, label in (("matched", "translation pairs"), ("mismatched", "mismatched pairs")):
        m, s = res[key]["mean"], res[key]["std"]
        x = list(range(len(m)))
        ax.plot(x, m, marker=".", label=label)
        ax.fill_between(x, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], alpha=0.15)
    _shade(ax, {"deep": res["layer_range"]})
    _layer_axis(ax)
    ax.set_ylabel("LLMDcos (mean ± sd)")
    ax.legend(fontsize=7)
    return [
        Figure(
            _save(fig, folder, "crosslingual.png"),
            "Cross-lingual: zh–en translations vs mismatched pairs",
            f"{res['n_pairs']} TED zh–en pairs; mismatched pairs join zh item k with en item k + n/2.",
        )
    ]


def figures(res: dict, folder: Path) -> list[Figure]:
    folder.mkdir(parents=True, exist_ok=True)
    kind = res.get("kind")
    if kind == "findings":
        return findings_figures(res, folder) + (experts_figures(res, folder) if res.get("experts") else [])
    if kind == "sts":
        return sts_figures(res, folder)
    if kind == "crosslingual":
        return crosslingual_figures(res, folder)
    return []
