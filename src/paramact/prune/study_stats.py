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


AVERAGE = "average"  # the unweighted mean of a study's accuracy tasks, the column pruning papers report


def average_accuracy(ev: dict, tasks: Sequence[str]) -> dict | None:
    """The unweighted mean accuracy over `tasks` in one model's evaluation (each task weighs 1/k
    whatever its item count), its standard error sqrt(Σ se_t²)/k (the tasks' items are independent),
    and the per-item correctness per task for paired comparisons. None unless all k >= 2 tasks have
    an accuracy."""
    res = [ev.get(t) for t in tasks]
    if len(res) < 2 or any(r is None or "acc" not in r for r in res):
        return None
    k = len(res)
    out = {
        "acc": sum(float(r["acc"]) for r in res) / k,
        "stderr": math.sqrt(sum(float(r.get("stderr", math.nan)) ** 2 for r in res)) / k,
        "tasks": list(tasks),
    }
    if all(r.get("correct_items") is not None for r in res):
        out["correct_items_by_task"] = [list(r["correct_items"]) for r in res]
    return out


def summarize(rows: Sequence[dict], average_over: Sequence[str] = ()) -> dict[str, dict]:
    """group -> {method, schedule, sparsity, calibration, seeds, measured, tasks: {task: stats}}.

    With `average_over` (accuracy tasks), a model evaluated on all of them also gets AVERAGE, their
    unweighted mean accuracy, as one more task."""
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
        avg = average_accuracy(r["eval"], average_over)
        g["by_seed"][r["seed"]] = r["eval"] if avg is None else {**r["eval"], AVERAGE: avg}
        if r.get("sparsity_measured"):
            g["measured"].append(r["sparsity_measured"]["overall"])
    for g in groups.values():
        g["tasks"] = _task_stats(g["by_seed"])
        g["measured"] = sum(g["measured"]) / len(g["measured"]) if g["measured"] else 0.0
    return groups


def _task_stats(by_seed: dict) -> dict[str, dict]:
    """Per task: mean ± s.d. over the seeds' evaluations, their count and the mean evaluation s.e."""
    tasks: dict[str, dict] = {}
    for t in dict.fromkeys(t for ev in by_seed.values() for t in ev):
        vals = [main_value(ev[t]) for ev in by_seed.values() if t in ev]
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
    return tasks


def on_shared_seeds(cells: Sequence[dict]) -> list[dict]:
    """Groups of seeded models restricted to the seeds all of them finished (stats recomputed), so
    that a ranking compares like with like while a study is still running; [] when they share none."""
    shared = set.intersection(*(set(g["by_seed"]) for g in cells)) if cells else set()
    out = []
    for g in cells if shared else []:
        by_seed = {s: ev for s, ev in g["by_seed"].items() if s in shared}
        out.append(
            g
            if len(by_seed) == len(g["by_seed"])
            else {**g, "seeds": list(by_seed), "by_seed": by_seed, "tasks": _task_stats(by_seed)}
        )
    return out


def _paired_se(xa: Sequence[float], xb: Sequence[float]) -> float:
    """The s.e. of the mean of the differences xa − xb (same windows or items)."""
    _, sd = _mean_sd([x - y for x, y in zip(xa, xb)])
    return sd / math.sqrt(len(xa))


def paired_eval_se(ra: dict, rb: dict) -> float:
    """The evaluation's standard error of a − b when both models were scored on the same windows or
    items: the s.e. of the per-window NLL differences (as perplexity, by the delta method) or of the
    per-item correctness differences; for an average over k tasks sqrt(Σ se_t²)/k of the per-task
    paired s.e. Without per-window or per-item data: the unpaired hypot."""
    ta, tb = ra.get("correct_items_by_task"), rb.get("correct_items_by_task")
    if ta is not None and tb is not None and ra.get("tasks") == rb.get("tasks"):
        if all(len(x) == len(y) > 1 for x, y in zip(ta, tb)):
            return math.sqrt(sum(_paired_se(x, y) ** 2 for x, y in zip(ta, tb))) / len(ta)
    for key, scale in (("per_window_nll", None), ("correct_items", 1.0)):
        xa, xb = ra.get(key), rb.get(key)
        if xa is not None and xb is not None and len(xa) == len(xb) and len(xa) > 1:
            return _paired_se(xa, xb) * (scale if scale is not None else (ra["ppl"] + rb["ppl"]) / 2)
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
        if sd == 0:  # the same difference on every seed: certain, unless it is no difference at all
            p = 0.0 if mean != 0 else 1.0
        else:
            p = float(2 * sstats.t.sf(abs(mean) / (sd / math.sqrt(len(d))), len(d) - 1))
    beyond = len(d) > 1 and p < ALPHA and not (abs(mean) <= 2 * se_eval)
    return {"diff": mean, "sd": sd, "n": len(d), "p": p, "eval_se": se_eval, "beyond_noise": bool(beyond)}


def _fmt(metric: str, v: float) -> str:
    return f"{v:.2f}" if metric == "ppl" else f"{100 * v:.1f}"


def fmt_diff(metric: str, d: float) -> str:
    """A paired difference as a reader takes it: perplexity as is, accuracy in points."""
    return f"{d:+.3g}" if metric == "ppl" else f"{100 * d:+.1f} points"


def improves(metric: str, d: float) -> bool:
    """Whether a − b = d means a is better: lower perplexity, higher accuracy (a tie is not)."""
    return d < 0 if metric == "ppl" else d > 0


def noise_words(c: dict, metric: str = "ppl") -> str:
    if c["n"] < 2:
        return "one seed: noise not measured"
    verdict = "beyond noise" if c["beyond_noise"] else "within noise"
    se = f"{c['eval_se']:.3g}" if metric == "ppl" else f"{100 * c['eval_se']:.2g} points"
    return f"{verdict} (paired t over {c['n']} seeds p={c['p']:.2g}; eval s.e. {se})"


def allocation_comparisons(groups: dict[str, dict], methods, sparsities, tasks: Sequence[str]) -> list[dict]:
    """Per method, sparsity and task (C4 calibration): the best allocation on the task, and every
    allocation's paired difference from it and from uniform."""
    out = []
    for m, s, task in ((m, s, t) for m in methods for s in sparsities for t in tasks):
        cells = [g for g in groups.values() if g["method"] == m and g["sparsity"] == s and g["calibration"] == "c4"]
        # on the seeds all of them finished; a task a shared seed lacks drops its group
        cells = [g for g in on_shared_seeds([g for g in cells if task in g["tasks"]]) if task in g["tasks"]]
        if len(cells) < 2:
            continue
        metric = cells[0]["tasks"][task]["metric"]
        sign = 1 if metric == "ppl" else -1  # lower perplexity, higher accuracy wins
        cells.sort(key=lambda g: sign * g["tasks"][task]["mean"])
        uniform = next((g for g in cells if g["schedule"] == "uniform"), None)
        ranking = [
            {
                "schedule": g["schedule"],
                "mean": g["tasks"][task]["mean"],
                "sd": g["tasks"][task]["sd"],
                "vs_best": compare(g, cells[0], task) if g is not cells[0] else None,
                "vs_uniform": compare(g, uniform, task) if uniform and g is not uniform else None,
            }
            for g in cells
        ]
        out.append({"method": m, "sparsity": s, "task": task, "metric": metric, "ranking": ranking})
    return out


def winners(c: dict) -> list[str]:
    """The allocations of a ranking with the best mean (several where they tie exactly)."""
    return [r["schedule"] for r in c["ranking"] if r["mean"] == c["ranking"][0]["mean"]]


def allocation_verdicts(comparisons: list[dict]) -> list[str]:
    """One line per method, sparsity and task: the winner, and each other allocation's gap to it."""
    out = []
    for c in comparisons:
        best, metric, top = c["ranking"][0], c["metric"], winners(c)
        parts = [
            f"{r['schedule']} {fmt_diff(metric, r['vs_best']['diff'])} ({noise_words(r['vs_best'], metric)})"
            for r in c["ranking"][len(top) :]
        ]
        sd = _fmt(metric, best["sd"]) if math.isfinite(best["sd"]) else "?"
        out.append(
            f"{c['method']} {100 * c['sparsity']:g}%, {c['task']}: best {' = '.join(top)} "
            f"{_fmt(metric, best['mean'])} ± {sd}" + "".join(f"; {p}" for p in parts)
        )
    return out


def allocation_scoreboard(comparisons: list[dict]) -> list[str]:
    """Per method and sparsity evaluated on several tasks, two lines across the tasks: each task's
    best allocation and those within noise of it; then the paper's activation allocation against
    uniform, counted over the tasks (better or worse beyond noise, or within noise), and on the
    average accuracy where the study has one."""
    cells: dict[tuple, list[dict]] = {}
    for c in comparisons:
        cells.setdefault((c["method"], c["sparsity"]), []).append(c)
    out = []
    for (m, s), cs in cells.items():
        tasks = [c for c in cs if c["task"] != AVERAGE]
        if len(cs) < 2:
            continue
        head = f"{m} {100 * s:g}% across {len(tasks)} tasks" + (" and their average" if len(cs) > len(tasks) else "")
        best = []
        for c in cs:
            top = winners(c)
            rest = c["ranking"][len(top) :]
            tied = [r["schedule"] for r in rest if not r["vs_best"]["beyond_noise"]]
            if any(r["vs_best"]["n"] < 2 for r in rest):
                why = "one seed: noise not measured"
            else:
                why = f"within noise: {', '.join(tied)}" if tied else "beyond noise over all"
            best.append(f"{c['task']} {' = '.join(top)}" + (f" ({why})" if rest else ""))
        out.append(f"{head}, best per task: " + "; ".join(best))
        pairs = [(c, r["vs_uniform"]) for c in cs for r in c["ranking"] if r["schedule"] == "activation"]
        pairs = [(c, d) for c, d in pairs if d is not None and d["n"] > 1]
        each = [(c, d) for c, d in pairs if c["task"] != AVERAGE]
        if each:
            up = [c["task"] for c, d in each if d["beyond_noise"] and improves(c["metric"], d["diff"])]
            down = [c["task"] for c, d in each if d["beyond_noise"] and not improves(c["metric"], d["diff"])]
            words = [f"better beyond noise on {len(up)}" + (f" ({', '.join(up)})" if up else "")]
            words.append(f"worse beyond noise on {len(down)}" + (f" ({', '.join(down)})" if down else ""))
            words.append(f"within noise on {len(each) - len(up) - len(down)}")
            words += [
                f"average accuracy {fmt_diff(c['metric'], d['diff'])} ({noise_words(d, c['metric'])})"
                for c, d in pairs
                if c["task"] == AVERAGE
            ]
            out.append(f"{m} {100 * s:g}%, the paper's activation allocation against uniform: " + ", ".join(words))
    return out


def calibration_comparisons(groups: dict[str, dict], calibrations, tasks) -> list[dict]:
    """Validation 2: for each calibration set that is also a task, that task's score when calibrated
    on it against C4 calibration, paired by seed."""
    v2 = {g["calibration"]: g for g in groups.values() if "validation2" in g["tables"] and g["method"]}
    out = []
    for c in calibrations:
        if c == "c4" or c not in v2 or "c4" not in v2:
            continue
        shared = on_shared_seeds([v2[c], v2["c4"]])
        if not shared:
            continue
        cal, base = shared
        for task in tasks:
            if task.split(":")[0] != c or task not in cal["tasks"]:
                continue
            cmp = compare(cal, base, task)
            if cmp is None:
                continue
            metric = cal["tasks"][task]["metric"]
            out.append(
                {
                    "calibration": c,
                    "task": task,
                    "metric": metric,
                    "mean": cal["tasks"][task]["mean"],
                    "c4_mean": base["tasks"][task]["mean"],
                    "helped": improves(metric, cmp["diff"]),
                    "vs_c4": cmp,
                }
            )
    return out


def calibration_verdicts(comparisons: list[dict]) -> list[str]:
    return [
        f"{c['task']}: calibrated on {c['calibration']} {_fmt(c['metric'], c['mean'])} vs C4 "
        f"{_fmt(c['metric'], c['c4_mean'])} ({'better' if c['helped'] else 'not better'}, "
        f"{noise_words(c['vs_c4'], c['metric'])})"
        for c in comparisons
    ]
