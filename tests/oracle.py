"""A slow, obviously-correct oracle: one sample at a time, full logits, autograd.grad.

Written independently of paramact.targets / paramact.engine on purpose.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def target_value(logits: torch.Tensor, ids: torch.Tensor, target: str, n_prompt: int) -> torch.Tensor:
    """logits [T, V], ids [T] of one unpadded sample."""
    if target == "max_logit":
        return logits[-1].max()
    if target == "gold_logprob":
        lp = torch.log_softmax(logits, -1)
        return sum(lp[t - 1, ids[t]] for t in range(n_prompt, len(ids)))
    if target == "lm_loss":
        return F.cross_entropy(logits[:-1], ids[1:])
    raise ValueError(target)


def per_sample_A(model, weights, ids: list[int], target: str = "max_logit", n_prompt: int | None = None):
    """[A(w) for w in weights] for one sample: |w * dD/dw|, float64."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        params = [w.weight for w in weights]
        for p in params:
            p.requires_grad_(True)
        x = torch.tensor([ids])
        logits = model(input_ids=x, use_cache=False).logits[0]
        D = target_value(logits, x[0], target, n_prompt if n_prompt is not None else len(ids))
        grads = torch.autograd.grad(D, params)
        return [(g.double() * p.detach().double()).abs() for g, p in zip(grads, params)]
    finally:
        for p, f in flags:
            p.requires_grad_(f)


def layer_vectors(anatomy, A_list):
    """Concatenate the per-weight A of each block into one vector per layer."""
    out, i = [], 0
    for layer in anatomy.layers:
        out.append(torch.cat([a.flatten() for a in A_list[i : i + len(layer)]]))
        i += len(layer)
    return out


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|: the error relative to the tensor's scale."""
    a, b = a.double(), b.double()
    scale = b.abs().max()
    return float((a - b).abs().max() / scale) if scale > 0 else float((a - b).abs().max())
