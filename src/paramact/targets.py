"""Targets: the scalar D(s) whose weight gradient defines A(s, w) = |w * dD/dw|.

A target names the token positions whose logits it needs (so the engine can apply the
output head at those positions only) and turns those logits into one value per sample.
Adding a target is one registered class.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .batching import Batch
from .errors import UserError

TARGETS: dict[str, type[Target]] = {}


def register_target(name: str) -> Callable[[type[Target]], type[Target]]:
    def deco(cls: type[Target]) -> type[Target]:
        cls.name = name
        TARGETS[name] = cls
        return cls

    return deco


def get_target(name: str | Target) -> Target:
    if isinstance(name, Target):
        return name
    if name not in TARGETS:
        raise UserError(f"unknown target {name!r}; choose one of: {', '.join(sorted(TARGETS))}")
    return TARGETS[name]()


class Target:
    """Base class. positions() -> (pos [B, K] long, valid [B, K] bool); value() -> [B]."""

    name = "target"
    needs_continuation = False
    description = ""

    def positions(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def value(self, logits: torch.Tensor, batch: Batch, pos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@register_target("max_logit")
class MaxLogit(Target):
    description = "largest logit at the last real token (the paper's D)"

    def positions(self, batch):
        last = batch.lengths - 1
        return last[:, None], torch.ones_like(last[:, None], dtype=torch.bool)

    def value(self, logits, batch, pos, valid):
        return logits[:, 0, :].float().max(dim=-1).values


def _next_token_logprob(logits, batch, pos, valid):
    """log p(token at pos+1 | prefix) for each gathered position; 0 where not valid."""
    nxt = torch.gather(batch.input_ids, 1, (pos + 1).clamp(max=batch.input_ids.shape[1] - 1))
    lp = torch.log_softmax(logits.float(), dim=-1)
    tok = torch.gather(lp, 2, nxt[..., None])[..., 0]
    return torch.where(valid, tok, torch.zeros_like(tok))


@register_target("gold_logprob")
class GoldLogprob(Target):
    description = "log-probability of the given continuation (e.g. the gold answer)"
    needs_continuation = True

    def positions(self, batch):
        if batch.target_mask is None:
            raise UserError("target gold_logprob needs a continuation (answer) for every sample")
        # a continuation token at t is predicted from position t-1
        pred = batch.target_mask[:, 1:]
        k = int(pred.sum(1).max())
        order = torch.argsort((~pred).to(torch.int8), dim=1, stable=True)[:, :k]
        valid = torch.gather(pred, 1, order)
        return order, valid

    def value(self, logits, batch, pos, valid):
        return _next_token_logprob(logits, batch, pos, valid).sum(1)


@register_target("lm_loss")
class LMLoss(Target):
    description = "mean next-token negative log-likelihood over the sample"

    def positions(self, batch):
        B, T = batch.input_ids.shape
        pos = torch.arange(max(T - 1, 1), device=batch.input_ids.device).expand(B, -1)
        valid = pos < (batch.lengths - 1)[:, None]
        return pos, valid

    def value(self, logits, batch, pos, valid):
        nll = -_next_token_logprob(logits, batch, pos, valid)
        return nll.sum(1) / valid.sum(1).clamp(min=1)
