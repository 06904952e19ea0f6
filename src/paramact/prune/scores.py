"""Pruning methods as a registry: name -> how one [out, in] matrix is pruned.

- magnitude   score |W|
- wanda       score |W|·‖X_j‖ (Sun et al. 2023): weight times the norm of its input column
- activation  score = the engine's mean |A| map of the dense model (the paper's |w·∂D/∂w|)
- sparsegpt   the OBS weight update with its adaptive mask (sparsegpt.py), not only a mask

`prune(W, ctx, sparsity, pattern) -> (new W or None, keep mask)`: a score method returns None (the
weights it keeps stay as they are, the driver zeroes the rest in place); sparsegpt returns the
updated matrix.
Adding a method is one entry in METHODS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import UserError
from .collect import InputStats
from .masks import Pattern, keep_mask
from .sparsegpt import inverse_hessian_factor, sparsegpt_prune


@dataclass(frozen=True)
class MatrixContext:
    """What a method may use for one matrix (all oriented [out, in])."""

    name: str
    stats: InputStats | None = None
    activation: torch.Tensor | None = None  # mean |A| of this matrix
    blocksize: int = 128
    damp: float = 0.01


def magnitude_score(W: torch.Tensor, ctx: MatrixContext) -> torch.Tensor:
    return W.abs()


def wanda_score(W: torch.Tensor, ctx: MatrixContext) -> torch.Tensor:
    return W.abs() * ctx.stats.col_norm().to(W.device)[None, :]


def activation_score(W: torch.Tensor, ctx: MatrixContext) -> torch.Tensor:
    if ctx.activation is None:
        raise UserError(f"no activation map entry for {ctx.name}")
    return ctx.activation.to(W.device, torch.float32)


@dataclass(frozen=True)
class ScoreMethod:
    name: str
    description: str
    stats: str | None  # statistics the driver must collect: None, "norms", "hessian"
    score: Callable[[torch.Tensor, MatrixContext], torch.Tensor]
    needs_activation_map: bool = False

    def prune(self, W: torch.Tensor, ctx: MatrixContext, sparsity: float, pattern: Pattern):
        """(None, keep): the caller zeroes the pruned weights in place; the others stay as they are."""
        return None, keep_mask(self.score(W, ctx), sparsity, pattern)


@dataclass(frozen=True)
class ObsMethod:
    name: str
    description: str
    stats: str | None = "hessian"
    needs_activation_map: bool = False

    def prune(self, W: torch.Tensor, ctx: MatrixContext, sparsity: float, pattern: Pattern):
        key = ("obs_factor", ctx.damp)  # q/k/v (gate/up) share one input, one Hessian, one factor
        if key not in ctx.stats.cache:
            ctx.stats.cache[key] = inverse_hessian_factor(ctx.stats.hessian(), ctx.damp)[0]
        return sparsegpt_prune(W, None, sparsity, pattern, ctx.blocksize, ctx.damp, ctx.stats.cache[key])


METHODS: dict[str, ScoreMethod | ObsMethod] = {
    m.name: m
    for m in (
        ScoreMethod("magnitude", "|W|", None, magnitude_score),
        ScoreMethod("wanda", "|W|·‖X‖ per input column (Wanda)", "norms", wanda_score),
        ScoreMethod(
            "activation",
            "the engine's mean |w·∂D/∂w| of the dense model (the paper's score)",
            None,
            activation_score,
            needs_activation_map=True,
        ),
        ObsMethod("sparsegpt", "OBS weight update with blocked Cholesky inverse (SparseGPT)"),
    )
}


def get_method(name: str):
    if name not in METHODS:
        raise UserError(f"unknown pruning method {name!r}; choose one of: {', '.join(METHODS)}")
    return METHODS[name]
