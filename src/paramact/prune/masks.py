"""Pruning masks from scores, and their bit-packed storage.

A mask is a bool tensor shaped like the score, True = keep, False = pruned. Patterns:

- "row":    per output row, the floor(cols·s) lowest-scored weights of every row (Wanda's choice);
- "matrix": per layer in SparseGPT's sense (one Linear), the floor(numel·s) lowest of the matrix;
- "N:M":    in every group of M consecutive input columns of a row, the N lowest (2:4, 4:8).

Scores are oriented [out, in]. Ties are broken by position (stable sort), so a mask is a pure
function of the score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError

PATTERNS = ("row", "matrix", "N:M (e.g. 2:4, 4:8)")


@dataclass(frozen=True)
class Pattern:
    kind: str  # "row" | "matrix" | "nm"
    n: int = 0  # N:M: zeros per group
    m: int = 0  # N:M: group size

    @property
    def fixed_sparsity(self) -> float | None:
        return self.n / self.m if self.kind == "nm" else None

    def __str__(self) -> str:
        return f"{self.n}:{self.m}" if self.kind == "nm" else self.kind


def parse_pattern(spec: str) -> Pattern:
    spec = str(spec).strip()
    if spec in ("row", "matrix"):
        return Pattern(spec)
    if ":" in spec:
        a, _, b = spec.partition(":")
        try:
            n, m = int(a), int(b)
        except ValueError:
            raise UserError(f"N:M pattern must be two integers like 2:4, got {spec!r}") from None
        if not (0 < n < m):
            raise UserError(f"N:M pattern needs 0 < N < M (N zeros in every group of M), got {spec!r}")
        return Pattern("nm", n, m)
    raise UserError(f"unknown mask pattern {spec!r}; choose one of: {', '.join(PATTERNS)}")


def count_pruned(total: int, sparsity: float) -> int:
    """floor(total·s), robust to 0.7·10 = 6.999…"""
    return min(total, int(total * sparsity + 1e-9))


def lowest_keep(score: torch.Tensor, k: int) -> torch.Tensor:
    """Keep mask of a [R, C] score with the k lowest entries of every row pruned.

    Exactly what a stable sort would prune (ties go to the lower column index), in O(C) per row:
    t = the k-th smallest value; prune every entry below t and the first k − #{< t} entries equal
    to t, by position.
    """
    _rows, cols = score.shape
    if k <= 0:
        return torch.ones_like(score, dtype=torch.bool)
    if k >= cols:
        return torch.zeros_like(score, dtype=torch.bool)
    t = score.kthvalue(k, dim=1, keepdim=True).values
    below = score < t
    equal = score == t
    need = k - below.sum(1, keepdim=True)
    return ~(below | (equal & (equal.cumsum(1) <= need)))


def keep_mask(score: torch.Tensor, sparsity: float, pattern: Pattern) -> torch.Tensor:
    """Keep mask (True = keep) of a [out, in] score at the given sparsity."""
    if score.dim() != 2:
        raise ValueError(f"score must be 2-D, got shape {tuple(score.shape)}")
    rows, cols = score.shape
    if pattern.kind == "row":
        return lowest_keep(score, count_pruned(cols, sparsity))
    if pattern.kind == "matrix":
        return lowest_keep(score.reshape(1, -1), count_pruned(score.numel(), sparsity)).reshape(rows, cols)
    if cols % pattern.m:
        raise UserError(f"{pattern} pattern needs the input width ({cols}) to be a multiple of {pattern.m}")
    groups = score.reshape(-1, pattern.m)  # [rows·cols/M, M]: consecutive input columns
    return lowest_keep(groups, pattern.n).reshape(rows, cols)


def check_sparsity(s: float, what: str = "sparsity") -> float:
    if isinstance(s, bool) or not isinstance(s, (int, float)) or not (0.0 <= float(s) < 1.0):
        raise UserError(f"{what} must be a number in [0, 1), got {s!r}")
    return float(s)


# ---- bit-packed storage -------------------------------------------------------------------------


def pack_masks(masks: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Bool masks -> uint8 tensors of packed bits (numpy.packbits, big-endian bit order) and the
    metadata that restores them: {"shapes": JSON {name: shape}, "bit": "1 = kept"}."""
    tensors, shapes = {}, {}
    for name, m in masks.items():
        flat = m.detach().to("cpu", torch.bool).contiguous().numpy().reshape(-1)
        tensors[name] = torch.from_numpy(np.packbits(flat))
        shapes[name] = list(m.shape)
    return tensors, {"shapes": json.dumps(shapes), "bit": "1 = kept, 0 = pruned", "packing": "numpy.packbits"}


def unpack_masks(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict[str, torch.Tensor]:
    try:
        shapes = json.loads(metadata["shapes"])
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise UserError("mask file has no valid 'shapes' metadata") from e
    out = {}
    for name, shape in shapes.items():
        if name not in tensors:
            raise UserError(f"mask file lacks the mask of {name}")
        n = int(np.prod(shape))
        bits = np.unpackbits(tensors[name].numpy().astype(np.uint8), count=n)
        out[name] = torch.from_numpy(bits.astype(bool)).reshape(shape)
    return out
