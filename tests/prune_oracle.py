"""Slow, obvious pieces of the pruning oracles: a matrix in [out, in] orientation, the inputs
of one block's matrices from a full forward, and the Wanda score in float64."""

import torch


def oriented(w):
    """The weight as [out, in], whatever the module stores (GPT-2 Conv1D is transposed)."""
    W = w.module.weight.detach()
    return W.t() if w.transposed else W


def forward_with(model, ids, hooks, xs: dict) -> dict:
    """One no-grad forward with the given hook handles (removed afterwards); xs's lists of rows
    concatenated into float64 [tokens, in] matrices."""
    try:
        with torch.no_grad():
            model(ids)
    finally:
        for h in hooks:
            h.remove()
    return {n: torch.cat(v).double() for n, v in xs.items() if v}


def layer_inputs(model, layer, ids) -> dict:
    """{matrix name: [tokens, in] inputs} of every matrix of `layer`, from one full forward."""
    xs = {}
    hooks = [
        w.module.register_forward_pre_hook(
            lambda m, a, n=w.name: xs.setdefault(n, []).append(a[0].detach().reshape(-1, a[0].shape[-1]))
        )
        for w in layer
    ]
    return forward_with(model, ids, hooks, xs)


def wanda_score(w, X) -> torch.Tensor:
    """|W| · ‖X_j‖ (root mean square over tokens, as the driver scales it), float64."""
    return oriented(w).double().abs() * torch.sqrt((X * X).sum(0) / X.shape[0])[None, :]
