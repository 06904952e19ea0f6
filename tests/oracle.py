"""A slow, obviously-correct oracle: one sample at a time, full logits, autograd.grad.

Written independently of paramact.targets / paramact.engine / paramact.anatomy on purpose: it
takes gradients with respect to whole parameters (3-D fused expert tensors included) and builds a
layer's vector from every parameter of the block with >= 2 dims that is not a bias.
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


def block_params(model, blocks_path: str, layer: int) -> dict[str, torch.Tensor]:
    """Every parameter of block `layer` with >= 2 dims that is not a bias, by HF name."""
    prefix = f"{blocks_path}.{layer}."
    return {
        n: p for n, p in model.named_parameters() if n.startswith(prefix) and p.dim() >= 2 and not n.endswith("bias")
    }


def per_sample_A(model, names, ids: list[int], target: str = "max_logit", n_prompt: int | None = None):
    """{name: |w * dD/dw|} for one sample and the named parameters, float64, shaped like each parameter."""
    params = dict(model.named_parameters())
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        ps = [params[n] for n in names]
        for p in ps:
            p.requires_grad_(True)
        x = torch.tensor([ids])
        logits = model(input_ids=x, use_cache=False).logits[0]
        D = target_value(logits, x[0], target, n_prompt if n_prompt is not None else len(ids))
        grads = torch.autograd.grad(D, ps)
        return {n: (g.double() * p.detach().double()).abs() for n, g, p in zip(names, grads, ps)}
    finally:
        for p, f in flags:
            p.requires_grad_(f)


def oracle_names(model, blocks_path: str, n_layers: int) -> list[str]:
    return [n for i in range(n_layers) for n in block_params(model, blocks_path, i)]


def layer_vectors(model, blocks_path: str, n_layers: int, A: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """One vector per layer: the A of every parameter of the block, concatenated (any order: norms and
    dot products do not depend on it)."""
    return [torch.cat([A[n].flatten() for n in block_params(model, blocks_path, i)]) for i in range(n_layers)]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|: the error relative to the tensor's scale."""
    a, b = a.double(), b.double()
    scale = b.abs().max()
    return float((a - b).abs().max() / scale) if scale > 0 else float((a - b).abs().max())
