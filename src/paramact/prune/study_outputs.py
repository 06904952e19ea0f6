"""The run directory of `paramact study prune`: tables of mean ± s.d. over seeds, the verdicts, results.json.

Files are written atomically; results.json comes last (kind "study", which `paramact report` renders).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from ..evaluation import harness
from ..evaluation.tasks import TASKS
from ..runs import write_json
from .outputs import write_text
from .study import StudyConfig, label
from .study_stats import (
    AVERAGE,
    allocation_comparisons,
    allocation_scoreboard,
    allocation_verdicts,
    calibration_comparisons,
    calibration_verdicts,
    summarize,
    winners,
)


def _cell(t: dict | None) -> str:
    if t is None:
        return "–"
    scale, nd = (1, 2) if t["metric"] == "ppl" else (100, 1)
    mean = f"{scale * t['mean']:.{nd}f}"
    return mean if t["n"] < 2 or not math.isfinite(t["sd"]) else f"{mean} ± {scale * t['sd']:.{nd}f}"


def group_table(groups: dict[str, dict], table: str, tasks: list[str], best: set | None = None) -> str:
    """Markdown: one row per group in `table`, mean ± s.d. over its seeds per task; the cells named
    in `best` ((method, schedule, sparsity, task): a ranking's winner) in bold."""
    heads = [f"{t} {'ppl ↓' if t.split(':')[0] in ('wikitext2', 'c4', 'pydoc') else 'acc %'}" for t in tasks]
    lines = ["| run | seeds | sparsity | " + " | ".join(heads) + " |", "|---" * (3 + len(tasks)) + "|"]
    for g in groups.values():
        if table not in g["tables"]:
            continue
        name = label(g) + (f" [{g['calibration']}]" if table == "validation2" and g["calibration"] else "")
        seeds = "–" if g["method"] is None else str(len(g["seeds"]))
        win = {t for t in tasks if (g["method"], g["schedule"], g["sparsity"], t) in (best or ())}
        cells = [f"**{_cell(g['tasks'].get(t))}**" if t in win else _cell(g["tasks"].get(t)) for t in tasks]
        lines.append(f"| {name} | {seeds} | {g['measured']:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def eval_noise(groups: dict[str, dict], tasks: list[str]) -> str:
    """The evaluation's own standard error per task over the cells (one run): perplexity as a
    share of the perplexity, accuracy in points; the median and the range over cells."""
    parts = []
    for t in tasks:
        cells = [g["tasks"][t] for g in groups.values() if t in g["tasks"]]
        if not cells:
            continue
        ppl = cells[0]["metric"] == "ppl"
        vals = sorted(c["eval_se"] / c["mean"] if ppl else c["eval_se"] for c in cells if math.isfinite(c["eval_se"]))
        if vals:
            unit, k = ("% of ppl", 100) if ppl else (" points", 100)
            med = vals[len(vals) // 2]
            parts.append(f"{t} ±{k * med:.1f}{unit} (median; {k * vals[0]:.1f}-{k * vals[-1]:.1f})")
    return "evaluation standard error of one run: " + ", ".join(parts) if parts else ""


ACCURACY_KINDS = ("letter", "loglik", "lmeval")  # the task kinds (evaluation.TASKS) that score an accuracy


def _accuracy_protocols(cfg: StudyConfig) -> str:
    """Which protocol scored which accuracy task, e.g. "boolq, mmlu: lm-eval through HFLM; MMLU 5-shot"."""
    names = {
        "letter": "the paper's letter scoring",
        "loglik": "paramact's log-likelihood scorer",
        "lmeval": f"lm-eval through {harness.SCORERS[cfg.eval.lmeval_scorer]}",
    }
    by_kind: dict[str, list[str]] = {}
    for t in cfg.evaluated_tasks:
        if TASKS[t] in ACCURACY_KINDS:
            by_kind.setdefault(TASKS[t], []).append(t.split(":")[0])
    parts = [f"{', '.join(ts)}: {names[k]}" for k, ts in by_kind.items()]
    if any("mmlu" in ts for ts in by_kind.values()):
        parts.append(f"MMLU {cfg.eval.mmlu_shots}-shot")
    return "; ".join(parts)


def sizes_line(cfg: StudyConfig) -> str:
    """What the numbers rest on: seeds, calibration, evaluation sizes and the allocations' data."""
    tasks = [t.split(":")[0] for t in cfg.evaluated_tasks]
    parts = [
        f"seeds {', '.join(map(str, cfg.seeds))}",
        f"calibration {cfg.calibration.nsamples} x {cfg.calibration.seqlen} tokens",
    ]
    if any(t in ("wikitext2", "c4", "pydoc") for t in tasks):
        parts.append(f"perplexity {cfg.eval.ppl_windows or 'all'} windows x {cfg.eval.ppl_seqlen}")
    scored = _accuracy_protocols(cfg)
    if scored:
        parts.append(f"accuracy {cfg.eval.items or 'all'} items per task ({scored})")
    used = cfg.allocations_used
    if "activation" in used:
        parts.append(
            f"activation schedule {cfg.schedule.density}, {cfg.schedule.samples} x {cfg.schedule.seqlen}-token "
            f"{cfg.schedule.data} windows"
        )
    if "atp" in used:
        parts.append(
            f"ATP step searched over {cfg.schedule.atp_grid} candidates (+2 refinements) on "
            f"{cfg.schedule.atp_held_out} held-out windows"
        )
    return "; ".join(parts)


def study_texts(res: dict, cfg: StudyConfig) -> dict:
    """The study's summaries and texts from its rows (res["rows"]; a reused row names its source):
    groups, comparisons, tables, verdicts, the sizes, noise and origin lines, and the documents
    (validation1, validation2: each table with its own validation's verdicts)."""
    accuracy = [t for t in cfg.v1_tasks if TASKS[t] in ACCURACY_KINDS]
    groups = summarize(res["rows"], average_over=accuracy)
    v1_tasks = [*cfg.v1_tasks, *([AVERAGE] if len(accuracy) > 1 else [])]
    ppl_task = next((t for t in cfg.v1_tasks if t in ("wikitext2", "c4")), cfg.v1_tasks[0])
    comparisons = {  # every Validation 1 task ranked; ppl_task is the paper's (Table 1: WikiText-2)
        "allocations": allocation_comparisons(groups, cfg.methods, cfg.sparsities, v1_tasks),
        "v1_task": ppl_task,
        "average_task": AVERAGE,
        "average_of": accuracy,
        "calibrations": calibration_comparisons(groups, cfg.calibrations, cfg.v2_tasks),
    }
    allocs = comparisons["allocations"]
    best = {(c["method"], w, c["sparsity"], c["task"]) for c in allocs for w in winners(c)}
    tables = {
        "validation1": "## Validation 1: allocations\n\n"
        + "Best per method, sparsity and task in bold"
        + (f"; {AVERAGE}: the unweighted mean of the {len(accuracy)} accuracies" if AVERAGE in v1_tasks else "")
        + ".\n\n"
        + group_table(groups, "validation1", v1_tasks, best),
    }
    if cfg.calibrations:  # `--calibrations none`: a Validation 1 study, no Validation 2 table
        tables["validation2"] = "## Validation 2: calibration data\n\n" + group_table(
            groups, "validation2", list(cfg.v2_tasks)
        )
    v1 = allocation_scoreboard(allocs) + allocation_verdicts(sorted(allocs, key=lambda c: c["task"] != ppl_task))
    v2 = calibration_verdicts(comparisons["calibrations"])
    sizes = sizes_line(cfg)
    noise = eval_noise(groups, list(dict.fromkeys([*v1_tasks, *cfg.evaluated_tasks])))
    own = {
        "validation1": v1 or ["no verdict: fewer than two allocations to compare"],
        "validation2": v2 or ["no verdict: fewer than two calibration sets to compare"],
    }
    reused, origin = [r["reused_from"] for r in res["rows"] if "reused_from" in r], ""
    if reused:  # where the numbers were computed, when not all here
        sources = ", ".join(f"{d} ({n})" for d, n in Counter(reused).items())
        origin = f"{len(reused)} of {len(res['rows'])} models reused from other studies (--cells-from): {sources}"
    documents = {}
    for name, text in tables.items():
        head = "\n\n".join(x for x in (text, sizes, noise, origin) if x)
        documents[name] = head + "\n\n" + "\n".join(f"- {c}" for c in own[name]) + "\n"
    return {
        "groups": {k: {kk: vv for kk, vv in g.items() if kk != "by_seed"} for k, g in groups.items()},
        "tables": tables,
        "comparisons": comparisons,
        "verdicts": {"validation1": v1, "validation2": v2},
        "sizes": sizes,
        "noise": noise,
        "origin": origin,
        "documents": documents,
    }


def provisional_document(rows: list[dict], cfg: StudyConfig, total: int) -> str:
    """The tables and verdicts of a study still running, over the cells it has finished, said so."""
    texts = study_texts({"rows": rows}, cfg)
    head = (
        f"# Provisional: {len(rows)} of {total} models finished\n\n"
        "The study is still running. Means, standard deviations and verdicts cover the seeds finished "
        "so far and change as cells finish. Where the allocations (or calibrations) compared have "
        "finished different seeds, the rankings, the bold and the verdicts use the seeds all of them "
        "finished. results.json and validation1.md / validation2.md are written when the study ends.\n\n"
    )
    return head + "\n".join(texts["documents"].values())


def write_study_run(out: Path, model: str, res: dict, cfg: StudyConfig) -> tuple[dict[str, str], list[str], str]:
    """validation1.md, validation2.md, then results.json; returns (tables, verdicts, sizes line)."""
    texts = study_texts(res, cfg)
    for name, body in texts.pop("documents").items():
        write_text(out / f"{name}.md", body)
    write_json(
        out / "results.json",
        {
            "kind": "study",
            "model": model,
            **res,
            **texts,
            "config": {"methods": list(cfg.methods), "sparsities": list(cfg.sparsities), "seeds": list(cfg.seeds)},
        },
    )
    for name in ("partial.json", "provisional.md"):
        (out / name).unlink(missing_ok=True)
    v = texts["verdicts"]
    return texts["tables"], v["validation1"] + v["validation2"], texts["sizes"]
