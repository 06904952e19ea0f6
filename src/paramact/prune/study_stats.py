"""A study's cells summarised over seeds, and which differences are beyond noise.

Each group (a cell without its seed) reports, per task, the mean and sample s.d. over seeds of its
main metric (perplexity, or accuracy), with the mean of the evaluation's own standard error
(perplexity: over windows; accuracy: over items). Two groups are compared seed by seed: the same
seed means the same calibration draw, and both are evaluated on the same windows and items, so the
paired differences d_s carry the calibration noise. A difference is *beyond noise* when a paired
two-sided t-test over seeds gives p < 0.05 and |mean d| exceeds twice the evaluation's standard
error of the difference (paired too: per window or per item on the same windows and items); with
one seed no test is possible and the verdict says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scipy import stats as sstats

ALPHA = 0.05


def main_value(res: dict) -> tuple[str, float, float] | None:
    """(metric, value, the evaluation's standard error) of one task result."""
    if "ppl" in res:
        return "ppl", float(res["ppl"]), float(res.get("ppl_stderr", math.nan))
    if "acc" in res:
        return "acc", float(res["acc"]), float(res.get("stderr", math.nan))
    return None


def _mean_sd(xs: Sequence[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else math.nan
    return m, sd


def summarize(rows: Sequence[dict]) -> dict[str, dict]:
    """group -> {method, schedule, sparsity, calibration, seeds, measured, tasks: {task: stats}}."""
    groups: dict[str, dict] = {}
    for r in rows:
        if "eval" not in r:
            continue
        g = groups.setdefault(
            r["group"],
            {k: r[k] for k in ("group", "method", "schedule", "sparsity", "calibration")}
            | {"pattern": r.get("pattern", "row"), "seeds": [], "tables": list(r["tables"]), "by_seed": {}}
            | {"measured": []},
        )
        g["seeds"].append(r["seed"])
        g["by_seed"][r["seed"]] = r["eval"]
        if r.get("sparsity_measured"):
            g["measured"].append(r["sparsity_measured"]["overall"])
    for g in groups.values():
        tasks: dict[str, dict] = {}
        for t in dict.fromkeys(t for ev in g["by_seed"].values() for t in ev):
            vals = [main_value(ev[t]) for ev in g["by_seed"].values() if t in ev]
            vals = [v for v in vals if v is not None]
            if not vals:
                continue
            mean, sd = _mean_sd([v[1] for v in vals])
            ses = [v[2] for v in vals if math.isfinite(v[2])]
            tasks[t] = {
                "metric": vals[0][0],
                "mean": mean,
                "sd": sd,
                "n": len(vals),
                "eval_se": sum(ses) / len(ses) if ses else math.nan,
                "values": [v[1] for v in vals],
            }
        g["tasks"] = tasks
        g["measured"] = sum(g["measured"]) / len(g["measured"]) if g["measured"] else 0.0
    return groups


def paired_eval_se(ra: dict, rb: dict) -> float:
    """The evaluation's standard error of a − b when both models were scored on the same windows or
    items: the s.e. of the per-window NLL differences (as perplexity, by the delta method) or of the
    per-item correctness differences. Without per-window or per-item data: the unpaired hypot."""
    for key, scale in (("per_window_nll", None), ("correct_items", 1.0)):
        xa, xb = ra.get(key), rb.get(key)
        if xa is not None and xb is not None and len(xa) == len(xb) and len(xa) > 1:
            _, sd = _mean_sd([x - y for x, y in zip(xa, xb)])
            se = sd / math.sqrt(len(xa))
            return se * (scale if scale is not None else (ra["ppl"] + rb["ppl"]) / 2)
    va, vb = main_value(ra), main_value(rb)
    return math.hypot(va[2], vb[2]) if va and vb else math.nan


def compare(a: dict, b: dict, task: str) -> dict | None:
    """a − b on `task`, paired by seed: mean, s.d., seeds, p, and whether it is beyond noise."""
    pairs = []
    for seed, ev in a["by_seed"].items():
        other = b["by_seed"].get(seed, b["by_seed"].get(None))  # the dense model has no seed
        if other is None or task not in ev or task not in other:
            continue
        va, vb = main_value(ev[task]), main_value(other[task])
        if va and vb:
            pairs.append((va[1] - vb[1], paired_eval_se(ev[task], other[task])))
    if not pairs:
        return None
    d = [x for x, _ in pairs]
    mean, sd = _mean_sd(d)
    se_eval = sum(s for _, s in pairs) / len(pairs)
    p = math.nan
    if len(d) > 1:
        p = 0.0 if sd == 0 else float(2 * sstats.t.sf(abs(mean) / (sd / math.sqrt(len(d))), len(d) - 1))
    beyond = len(d) > 1 and p < ALPHA and not (abs(mean) <= 2 * se_eval)
    return {"diff": mean, "sd": sd, "n": len(d), "p": p, "eval_se": se_eval, "beyond_noise": bool(beyond)}


def _fmt(metric: str, v: float) -> str:
    return f"{v:.2f}" if metric == "ppl" else f"{100 * v:.1f}"


def noise_words(c: dict) -> str:
    if c["n"] < 2:
        return "one seed: noise not measured"
    verdict = "beyond noise" if c["beyond_noise"] else "within noise"
    return f"{verdict} (paired t over {c['n']} seeds p={c['p']:.2g}; eval s.e. {c['eval_se']:.3g})"


def allocation_comparisons(groups: dict[str, dict], methods, sparsities, task: str) -> list[dict]:
    """Per method and sparsity (C4 calibration): the best allocation on `task`, and every
    allocation's paired difference from it and from uniform."""
    out = []
    for m in methods:
        for s in sparsities:
            cells = [g for g in groups.values() if g["method"] == m and g["sparsity"] == s and g["calibration"] == "c4"]
            cells = [g for g in cells if task in g["tasks"]]
            if len(cells) < 2:
                continue
            metric = cells[0]["tasks"][task]["metric"]
            sign = 1 if metric == "ppl" else -1  # lower perplexity, higher accuracy wins
            cells.sort(key=lambda g: sign * g["tasks"][task]["mean"])
            uniform = next((g for g in cells if g["schedule"] == "uniform"), None)
            out.append(
                {
                    "method": m,
                    "sparsity": s,
                    "task": task,
                    "metric": metric,
                    "ranking": [
                        {
                            "schedule": g["schedule"],
                            "mean": g["tasks"][task]["mean"],
                            "sd": g["tasks"][task]["sd"],
                            "vs_best": compare(g, cells[0], task) if g is not cells[0] else None,
                            "vs_uniform": compare(g, uniform, task) if uniform and g is not uniform else None,
                        }
                        for g in cells
                    ],
                }
            )
    return out


def allocation_verdicts(comparisons: list[dict]) -> list[str]:
    """One line per method and sparsity: the winner, and each other allocation's gap to it."""
    out = []
    for c in comparisons:
        best, metric = c["ranking"][0], c["metric"]
        parts = [f"{r['schedule']} {r['vs_best']['diff']:+.3g} ({noise_words(r['vs_best'])})" for r in c["ranking"][1:]]
        sd = _fmt(metric, best["sd"]) if math.isfinite(best["sd"]) else "?"
        out.append(
            f"{c['method']} {100 * c['sparsity']:g}%, {c['task']}: best {best['schedule']} "
            f"{_fmt(metric, best['mean'])} ± {sd}; " + "; ".join(parts)
        )
    return out


def calibration_comparisons(groups: dict[str, dict], calibrations, tasks) -> list[dict]:
    """Validation 2: for each calibration set that is also a task, that task's score when calibrated
    on it against C4 calibration, paired by seed."""
    v2 = {g["calibration"]: g for g in groups.values() if "validation2" in g["tables"] and g["method"]}
    out = []
    base = v2.get("c4")
    for c in calibrations:
        if c == "c4" or c not in v2 or base is None:
            continue
        for task in tasks:
            if task.split(":")[0] != c or task not in v2[c]["tasks"]:
                continue
            cmp = compare(v2[c], base, task)
            if cmp is None:
                continue
            metric = v2[c]["tasks"][task]["metric"]
            out.append(
                {
                    "calibration": c,
                    "task": task,
                    "metric": metric,
                    "mean": v2[c]["tasks"][task]["mean"],
                    "c4_mean": base["tasks"][task]["mean"],
                    "helped": (cmp["diff"] > 0) == (metric != "ppl"),
                    "vs_c4": cmp,
                }
            )
    return out


def calibration_verdicts(comparisons: list[dict]) -> list[str]:
    return [
        f"{c['task']}: calibrated on {c['calibration']} {_fmt(c['metric'], c['mean'])} vs C4 "
        f"{_fmt(c['metric'], c['c4_mean'])} ({'better' if c['helped'] else 'not better'}, {noise_words(c['vs_c4'])})"
        for c in comparisons
    ]
