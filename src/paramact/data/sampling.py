"""Seeded sampling: the same seed gives the same items on every machine.

Only `random.Random(seed)` over `range(total)` (row indices in file order) is used, never
set or dict iteration order, so results do not depend on PYTHONHASHSEED or the platform.
"""

from __future__ import annotations

import random

from ..errors import UserError


def pick(total: int, n: int | None, seed: int, what: str = "the data") -> list[int]:
    """n distinct row indices drawn with Random(seed), in draw order; all rows in order if n is None."""
    if n is None:
        return list(range(total))
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"number of items must be a positive integer, got {n!r}")
    if n > total:
        raise UserError(f"asked for {n} items but {what} has only {total}")
    return random.Random(seed).sample(range(total), n)


def first(total: int, n: int | None, what: str = "the data") -> list[int]:
    """The first n row indices (the paper's order for STS-B pairs and BoolQ evaluation)."""
    if n is None:
        return list(range(total))
    pick(total, n, 0, what)  # same validation and messages
    return list(range(n))


def item_rng(seed: int, index: int, purpose: str) -> random.Random:
    """An RNG for one item (e.g. its GSM8K demo order), independent of which other items were drawn."""
    return random.Random(f"paramact/{purpose}/{seed}/{index}")
