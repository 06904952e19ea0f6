"""Run directories of `paramact prune | schedule | eval`, and their tables (the study: study_outputs.py).

Files are written atomically; results.json comes last, so a directory holding it is complete.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import UserError
from ..runs import atomic_path, write_json, write_tensors
from .config import Schedule
from .pipeline import PruneReport

METRIC_ORDER = ("ppl", "acc", "acc_norm", "nll")


def main_metric(res: dict) -> tuple[str, float | tuple[float, float]] | None:
    if "acc" in res and "acc_norm" in res:
        return "acc/acc_norm", (res["acc"], res["acc_norm"])
    for m in METRIC_ORDER:
        if m in res:
            return m, res[m]
    return None


def format_value(metric: str, v) -> str:
    if isinstance(v, tuple):
        return "/".join(f"{100 * x:.2f}" for x in v)
    return f"{v:.2f}" if metric in ("ppl",) else f"{v:.3f}" if metric == "nll" else f"{100 * v:.2f}"


def eval_table(rows: list[tuple[str, dict]], tasks: list[str] | None = None, extra: list[str] | None = None) -> str:
    """Markdown table: one row per (label, {task: result} plus extra columns), one column per task."""
    tasks = tasks or list(dict.fromkeys(t for _, ev in rows for t in ev.get("eval", {})))
    extra = extra or []
    heads = []
    for t in tasks:
        sample = next((ev["eval"][t] for _, ev in rows if t in ev.get("eval", {})), None)
        mm = main_metric(sample) if sample else None
        heads.append(f"{t} {mm[0] if mm else ''}{' ↓' if mm and mm[0] in ('ppl', 'nll') else ''}".strip())
    lines = ["| run | " + " | ".join(extra + heads) + " |", "|---" * (1 + len(extra) + len(heads)) + "|"]
    for label, ev in rows:
        cells = [str(ev.get(e, "")) for e in extra]
        for t in tasks:
            res = ev.get("eval", {}).get(t)
            mm = main_metric(res) if res else None
            cells.append(format_value(*mm) if mm else "–")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def protocols(results: dict) -> str:
    seen = {}
    for t, r in results.items():
        n = r.get("n", r.get("windows"))
        seen[t] = f"{r.get('protocol', '')}" + (f", n={n}" if n is not None else "")
    return "\n".join(f"- {t}: {p}" for t, p in seen.items())


def schedule_table(s: Schedule, measured: list[float] | None = None) -> str:
    lines = [
        f"schedule {s.name}: target {s.target:g}, mean {sum(s.values) / len(s.values):.6f}, "
        f"{len(s.values)} layers (0-based)"
    ]
    for i, v in enumerate(s.values):
        line = f"  layer {i:>3d}  {v:.4f}"
        if measured is not None:
            line += f"  measured {measured[i]:.4f}"
        lines.append(line)
    return "\n".join(lines)


# llm-compressor's one-shot pruning modifiers (SparsityModifierBase: `sparsity` a float or one value
# per target layer, in the order the `targets` match; `mask_structure` "0:0" or "N:M")
RECIPE_MODIFIERS = {"wanda": "WandaPruningModifier", "sparsegpt": "SparseGPTModifier"}


def llmcompressor_recipe(
    s: Schedule, method: str, blocks_path: str, pattern: str = "0:0", block_size: int = 128, damp: float = 0.01
) -> dict:
    """An llm-compressor recipe that prunes the decoder blocks (`blocks_path`.0, .1, ...) with
    `method` at the schedule's per-layer sparsities; the output head is left dense."""
    if method not in RECIPE_MODIFIERS:
        raise UserError(f"an llm-compressor recipe takes wanda or sparsegpt, not {method!r}")
    mod = {
        "sparsity": [round(float(v), 6) for v in s.values],
        "mask_structure": pattern,
        "targets": [f"re:{re.escape(blocks_path)}\\.\\d+$"],
        "ignore": ["re:.*lm_head"],
    }
    if method == "sparsegpt":
        mod.update(block_size=block_size, dampening_frac=damp)
    return {"sparsity_stage": {"sparsity_modifiers": {RECIPE_MODIFIERS[method]: mod}}}


def write_prune_run(out: Path, report: PruneReport, evals: dict, meta: dict) -> dict:
    """schedule.json, masks.safetensors, table.md, then results.json."""
    write_json(out / "schedule.json", report.schedule.as_dict())
    o = report.outcome
    write_tensors(out / "masks.safetensors", o.packed, o.metadata)
    results = {
        **meta,
        "method": report.config.method,
        "pattern": report.config.pattern,
        "sparsity": report.sparsity(),
        "sparsity_per_matrix": o.per_matrix,
        "schedule": report.schedule.as_dict(),
        "calibration": report.calibration,
        "eval": evals,
        "seconds": report.seconds,
        "resumed_blocks": o.restored_blocks,
        "unreached_experts": {
            "matrices": o.unreached,
            "treatment": "no calibration token reached these experts: pruned by magnitude |W|",
        },
        "files": ["config.json", "env.json", "schedule.json", "masks.safetensors", "table.md", "results.json"]
        + (["model/"] if meta.get("saved_model") else []),
    }
    label = f"{report.config.method} {report.schedule.name} {report.schedule.target:g}"
    table = eval_table([(label, {"eval": evals, "sparsity": f"{o.overall:.4f}"})], extra=["sparsity"]) if evals else ""
    write_text(out / "table.md", table + ("\n\n" + protocols(evals) if evals else "") + "\n")
    write_json(out / "results.json", results)
    return results


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_model(model, tok, path: Path) -> None:
    """OUT/model via save_pretrained, with the tokenizer (its BOS setting included)."""
    try:
        model.save_pretrained(path)
        tok.save_pretrained(path)
    except OSError as e:
        raise UserError(f"cannot save the pruned model to {path}: {e.strerror or e}") from e
