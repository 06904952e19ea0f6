"""ATP's one parameter, chosen as ATP does: on held-out calibration perplexity (Huang et al., ICML 2025).

ATP's layer sparsities form an arithmetic progression over depth, S_i = S + δ·(i − (L − 1)/2), so
their mean is S. The step δ is searched: for each candidate, the dense block weights are restored,
the model is pruned with the run's own method, calibration batches and pattern, and the perplexity
of held-out calibration windows (drawn from the same data as the calibration, none of them a
calibration window) is measured. The δ of lowest held-out perplexity wins; every candidate's
perplexity is recorded with the schedule. The model is left dense.

Candidates: `grid` steps evenly from 0 up to (not including) δ_max, the step at which the shallowest
or deepest layer would reach sparsity 0 or MAX_LAYER_SPARSITY; then the two steps half a grid
spacing either side of the best (a step below 0 is skipped), and the best of all wins.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from ..anatomy import discover
from ..errors import UserError
from ..evaluation.ppl import window_perplexity
from .schedules import MAX_LAYER_SPARSITY, atp_schedule

log = logging.getLogger(__name__)


def max_step(n_layers: int, target: float) -> float:
    """The largest δ that keeps every layer of the progression within [0, MAX_LAYER_SPARSITY]."""
    if n_layers < 2:
        return 0.0
    return min(target, MAX_LAYER_SPARSITY - target) / ((n_layers - 1) / 2)


def candidate_steps(n_layers: int, target: float, grid: int) -> list[float]:
    if grid < 1:
        raise UserError(f"the ATP search needs at least one candidate step, got {grid}")
    return [float(x) for x in np.linspace(0.0, max_step(n_layers, target), grid + 1)[:-1]]


def search_step(
    model,
    target: float,
    held_out: Sequence[Sequence[int]],
    prune: Callable[[list[float]], object],
    grid: int = 6,
    batch_size: int = 8,
) -> tuple[float, dict]:
    """The δ of lowest held-out perplexity, and the search's record.

    prune(schedule) prunes `model` in place at those layer sparsities; this function restores the
    dense block weights before each candidate and after the last."""
    if not held_out:
        raise UserError("the ATP search needs held-out calibration windows")
    params = discover(model).params()
    dense = {name: p.detach().clone() for name, p in params.items()}
    n_layers = discover(model).n_layers
    table: list[dict] = []

    def restore() -> None:
        for name, p in params.items():
            p.data.copy_(dense[name])

    def score(step: float, stage: str) -> None:
        prune(atp_schedule(n_layers, target, step))
        res = window_perplexity(model, held_out, batch_size)
        table.append({"step": step, "stage": stage, "ppl": res["ppl"], "ppl_stderr": res["ppl_stderr"]})
        log.info("ATP search: δ=%.5f held-out ppl %.3f", step, res["ppl"])
        restore()

    try:
        steps = candidate_steps(n_layers, target, grid)
        for step in steps:
            score(step, "grid")
        if len(steps) > 1:
            half = (steps[1] - steps[0]) / 2
            best = min(table, key=lambda r: (r["ppl"], r["step"]))["step"]
            for step in (best - half, best + half):
                if step >= 0:
                    score(step, "refine")
    finally:
        restore()
    best = min(table, key=lambda r: (r["ppl"], r["step"]))
    record = {
        "search": "held-out calibration perplexity",
        "candidates": table,
        "held_out_windows": len(held_out),
        "held_out_tokens": sum(len(w) for w in held_out),
        "max_step": max_step(n_layers, target),
    }
    return best["step"], record
