"""Finished cells of other studies, reused in this one (`paramact study prune --cells-from DIR`).

A cell's numbers depend on the model, its dtype, and the study fields in CELL_FIELDS: the
calibration and allocation settings, each method's mask pattern, the evaluation protocol, and the
seeds (the C4 perplexity leaves out the documents of every seed's C4 calibration draw). They do
not depend on the grid's other axes: which methods, sparsities, allocations and calibration sets
the study lists. So a study that extends another one (Wanda 60% after Wanda 50%, or the whole grid
assembled from its parts) takes the cells the other one finished, the dense model and the
Validation 2 cells included, and runs only the rest.

A source whose cell fields differ from this study's is refused with the first field that differs;
data_dir is a path, not a setting, and is not compared. A cell of a source that lacks one of the
tasks this study needs is run again. Each reused row keeps `reused_from` (its directory), and
evaluations of tasks this study does not list are dropped from it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UserError

CELL_FIELDS = ("seeds", "patterns", "calibration", "schedule", "eval")
NOT_COMPARED = ("data_dir",)


@dataclass(frozen=True)
class CellSource:
    """Another study's directory, read by the shell: its config.json, its finished rows (results.json,
    or partial.json while it runs) and its env.json."""

    label: str
    config: dict
    rows: list[dict]
    env: dict


def cell_settings(config: dict) -> dict:
    """What a cell's numbers depend on in a study's config.json (JSON values, paths left out)."""
    config = json.loads(json.dumps(config, default=str))  # tuples as lists, as config.json holds them
    study = config.get("study") or {}
    out = {"model": config.get("model")}
    for k in CELL_FIELDS:
        v = study.get(k)
        out[k] = {f: x for f, x in v.items() if f not in NOT_COMPARED} if isinstance(v, dict) else v
    return out


def _first_difference(a: dict, b: dict, where: str = "") -> str | None:
    for k in dict.fromkeys([*a, *b]):
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) and isinstance(y, dict):
            d = _first_difference(x, y, f"{where}{k}.")
            if d:
                return d
        elif x != y:
            return f"{where}{k}: {json.dumps(y)} there, {json.dumps(x)} here"
    return None


def check_source(config: dict, source: CellSource) -> None:
    """UserError unless `source`'s cells were computed under this study's cell settings."""
    diff = _first_difference(cell_settings(config), cell_settings(source.config))
    if diff is not None:
        raise UserError(f"--cells-from {source.label}: its cells ran under other settings ({diff})")


def check_dtype(source: CellSource, dtype: str) -> None:
    """UserError if `source`'s env.json names a model dtype other than `dtype`."""
    theirs = source.env.get("dtype")
    if theirs is not None and theirs != dtype:
        raise UserError(f"--cells-from {source.label}: its model ran in {theirs}, this one in {dtype}")


def reusable_cells(
    planned: Sequence[dict], config: dict, sources: Sequence[CellSource]
) -> tuple[dict[str, dict], list[str]]:
    """(key -> finished row, notes): the planned cells some source finished with every task they
    need, the first source first; a note per source on what it gave and what it lacked.

    planned: this study's plan (each row's key and tasks); config: its config.json. Settings only:
    the model's dtype is known after it loads, and checked then by check_dtype."""
    got: dict[str, dict] = {}
    notes = []
    for src in sources:
        check_source(config, src)
        rows = {r.get("key"): r for r in src.rows if isinstance(r, dict) and isinstance(r.get("eval"), dict)}
        used, lacking = 0, 0
        for p in planned:
            r = rows.get(p["key"])
            if r is None or p["key"] in got:
                continue
            if not set(p["tasks"]) <= set(r["eval"]):
                lacking += 1
                continue
            row = {k: v for k, v in r.items() if k not in ("tasks", "tables")}
            row["eval"] = {t: r["eval"][t] for t in p["tasks"]}
            row["reused_from"] = r.get("reused_from", src.label)
            got[p["key"]] = row
            used += 1
        note = f"{src.label}: {used} of this study's cells reused"
        if lacking:
            note += f"; {lacking} more lack a task this study evaluates and run again"
        notes.append(note)
    return got, notes
