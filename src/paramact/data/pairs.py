"""Sentence pairs for the STS validation (the paper, §3.3) and the zh-en parallel experiment (§3.4).

- STS-B: (sentence_a, sentence_b, gold 0-5) for train/dev/test; the paper takes the first
  256 dev pairs (`order="first"`, the STS-B default).
- SICK: (sentence_a, sentence_b, relatedness 1-5) by SemEval split (train / validation =
  TRIAL / test); the paper takes 256 random validation pairs with seed 1.
- TED zh-en: parallel (zh, en) segments; the paper draws 128 random pairs.

Each sentence is fed raw (BOS only, no prompt).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .loading import load_split
from .registry import get_spec
from .sampling import first, pick

STS_DATASETS = ("stsb", "sick")
PAPER_ORDER = {"stsb": "first", "sick": "random", "ted_zh_en": "random"}


@dataclass(frozen=True)
class StsPair:
    a: str
    b: str
    score: float
    index: int  # row in the split, file order


@dataclass(frozen=True)
class ParallelPair:
    zh: str
    en: str
    talk: str
    seg: str
    index: int


def _indices(name: str, split: str, total: int, n: int | None, seed: int, order: str | None) -> tuple[list[int], str]:
    order = order or PAPER_ORDER[name]
    if order not in ("random", "first"):
        raise UserError(f"order must be 'random' or 'first', got {order!r}")
    what = f"{name} {split}"
    return (first(total, n, what) if order == "first" else pick(total, n, seed, what)), order


def sts_pairs(
    name: str,
    n: int | None = 256,
    seed: int = 1,
    *,
    split: str | None = None,
    order: str | None = None,
    data_dir: str | Path | None = None,
    path: str | Path | None = None,
) -> tuple[list[StsPair], dict]:
    """Scored sentence pairs of STS-B or SICK (default split: STS-B dev, SICK validation) and their source."""
    if name not in STS_DATASETS:
        raise UserError(f"{name!r} is not a sentence-similarity dataset (choose from {', '.join(STS_DATASETS)})")
    data = load_split(name, get_spec(name).split(split), data_dir=data_dir, path=path)
    indices, order = _indices(name, data.split, len(data.rows), n, seed, order)
    pairs = [StsPair(data.rows[i]["a"], data.rows[i]["b"], data.rows[i]["score"], i) for i in indices]
    return pairs, {**data.source, "order": order, "seed": seed, "samples": len(pairs)}


def parallel_pairs(
    name: str = "ted_zh_en",
    n: int | None = 128,
    seed: int = 1,
    *,
    split: str | None = None,
    order: str | None = None,
    data_dir: str | Path | None = None,
    path: str | Path | None = None,
) -> tuple[list[ParallelPair], dict]:
    """zh-en translation pairs (default split tst2016 locally; the paper used the hub's train split)."""
    if get_spec(name).kind != "parallel":
        raise UserError(f"{name!r} is not a parallel-sentence dataset")
    data = load_split(name, split, data_dir=data_dir, path=path)
    indices, order = _indices(name, data.split, len(data.rows), n, seed, order)
    rows = data.rows
    pairs = [ParallelPair(rows[i]["zh"], rows[i]["en"], rows[i]["talk"], rows[i]["seg"], i) for i in indices]
    return pairs, {**data.source, "order": order, "seed": seed, "samples": len(pairs)}
