"""The report section of a `paramact study prune` run: perplexity against sparsity, the tables of
mean ± s.d. over seeds, and the verdicts on which allocation wins and what is within noise."""

from __future__ import annotations

import html
import math
from pathlib import Path

from .plots import Figure, _plt, _save

PPL_TASKS = ("wikitext2", "c4")
COLORS = {
    "uniform": "black",
    "activation": "tab:red",
    "owl": "tab:blue",
    "alphapruning": "tab:green",
    "atp": "tab:purple",
}


def _scale(metric: str) -> float:
    """Perplexity as is; accuracy (a fraction in the results) in % and its gaps in points."""
    return 1.0 if metric == "ppl" else 100.0


def _against_sparsity(res: dict, folder: Path, tasks: list[str], ppl: bool) -> Figure | None:
    """One panel per method × task: each allocation's mean over seeds against sparsity, its s.d. as
    error bars, the dense model as a dashed line. Perplexity on a log scale, accuracy in %."""
    groups = list(res["groups"].values())
    methods = list(dict.fromkeys(g["method"] for g in groups if g["method"] and g["calibration"] == "c4"))
    if not tasks or not methods:
        return None
    plt = _plt()
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    k = _scale("ppl" if ppl else "acc")
    fig, axes = plt.subplots(
        len(tasks), len(methods), figsize=(4.4 * len(methods), 3.4 * len(tasks)), squeeze=False, layout="constrained"
    )
    dense = next((g for g in groups if g["method"] is None), None)
    for i, t in enumerate(tasks):
        for j, m in enumerate(methods):
            ax = axes[i][j]
            cells = [g for g in groups if g["method"] == m and g["calibration"] == "c4" and t in g["tasks"]]
            schedules = list(dict.fromkeys(g["schedule"] for g in cells))
            # ticks at the study's sparsities only: the dodge below offsets the points, not the axis
            ticks = sorted({100 * g["sparsity"] for g in cells})
            ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
            for n, sch in enumerate(schedules):
                pts = sorted((g["sparsity"], g["tasks"][t]) for g in cells if g["schedule"] == sch)
                dodge = 0.4 * (n - (len(schedules) - 1) / 2)  # side by side, so error bars do not overlap
                xs = [100 * p + dodge for p, _ in pts]
                ys = [k * s["mean"] for _, s in pts]
                err = [k * s["sd"] if math.isfinite(s["sd"]) else 0.0 for _, s in pts]
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=sch, color=COLORS.get(sch))
            if dense is not None and t in dense["tasks"]:
                ax.axhline(k * dense["tasks"][t]["mean"], ls="--", color="gray", lw=1, label="dense")
            if ppl:
                ax.set_yscale("log")
                ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_title(f"{m}: {t}", fontsize=10)
            ax.set_xlabel("target sparsity (%)")
            ax.set_ylabel("perplexity (log scale)" if ppl else "accuracy (%)")
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8)
    seeds = len(res.get("config", {}).get("seeds", []))
    what, better = ("Perplexity", "Lower") if ppl else ("Accuracy", "Higher")
    return Figure(
        _save(fig, folder, f"{'ppl' if ppl else 'acc'}_vs_sparsity.png"),
        f"{what} against sparsity, per allocation",
        f"Mean over {seeds} calibration seeds; error bars: s.d. over seeds. {better} is better.",
    )


def study_figures(res: dict, folder: Path) -> list[Figure]:
    """Perplexity against sparsity (WikiText-2, C4), then accuracy against sparsity (each accuracy
    task that Validation 1 ranked)."""
    folder.mkdir(parents=True, exist_ok=True)
    groups = list(res["groups"].values())
    ppl = [t for t in PPL_TASKS if any(t in g["tasks"] for g in groups)]
    ranked = dict.fromkeys(c["task"] for c in res["comparisons"]["allocations"] if c["metric"] == "acc")
    figs = [_against_sparsity(res, folder, ppl, True), _against_sparsity(res, folder, list(ranked), False)]
    return [f for f in figs if f is not None]


def _cmp(c: dict | None, k: float) -> str:
    """A paired difference (scaled by k: 100 shows accuracy in points) with its seed noise."""
    if not c:
        return "–"
    if c["n"] < 2:
        return f"{k * c['diff']:+.3g} (one seed)"
    beyond = " <b>beyond noise</b>" if c["beyond_noise"] else ""
    return f"{k * c['diff']:+.3g} ± {k * c['sd']:.2g}, p={c['p']:.2g}" + beyond


def study_body(res: dict, prefix: str, table) -> str:
    """HTML: the verdicts, the allocation rankings, then both tables (markdown kept as preformatted)."""
    e = html.escape
    out = [f'<h3 id="{prefix}validation1">Validation 1: allocations</h3>']
    out.append("<ul>" + "".join(f"<li>{e(v)}</li>" for v in res["verdicts"]["validation1"]) + "</ul>")
    out.append(
        f"<p class=note>{e(res['sizes'])}. {e(res.get('noise', ''))}. A difference is beyond noise when a "
        "paired t-test over seeds gives p &lt; 0.05 and it exceeds twice the evaluation's standard error.</p>"
    )
    if res.get("origin"):
        out.append(f"<p class=note>{e(res['origin'])}.</p>")
    main = res["comparisons"].get("v1_task")
    others = []
    for c in res["comparisons"]["allocations"]:
        k = _scale(c["metric"])
        rows = [
            [
                e(r["schedule"]),
                f"{k * r['mean']:.4g}",
                f"{k * r['sd']:.2g}" if math.isfinite(r["sd"]) else "–",
                _cmp(r["vs_best"], k),
                _cmp(r["vs_uniform"], k),
            ]
            for r in c["ranking"]
        ]
        unit = "ppl" if k == 1.0 else "acc %"
        html_c = f"<h4>{e(c['method'])} {100 * c['sparsity']:g}%, {e(c['task'])} {unit}</h4>" + table(
            ["allocation", "mean", "s.d.", "− best", "− uniform"], rows
        )
        (out if main is None or c["task"] == main else others).append(html_c)
    if others:  # the other tasks' rankings, folded
        out.append(
            f"<details><summary>rankings on the other {len(others)} task cells</summary>{''.join(others)}</details>"
        )
    out.append(f'<h3 id="{prefix}validation2">Validation 2: calibration data</h3>')
    lines = res["verdicts"]["validation2"] or [
        "no calibration set that is also an evaluated task"
        if "validation2" in res["tables"]
        else "not in this study (--calibrations none)"
    ]
    out.append("<ul>" + "".join(f"<li>{e(v)}</li>" for v in lines) + "</ul>")
    for name in (n for n in ("validation1", "validation2") if n in res["tables"]):
        out.append(f"<details><summary>{name} table</summary><pre>{e(res['tables'][name])}</pre></details>")
    return "".join(out)
