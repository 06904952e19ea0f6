"""Per-input-column statistics of a block's matrices, gathered with forward hooks.

For a matrix y = x Wᵀ the statistics are over the rows x of its input (all tokens):
- "norms":   Σ x_j² per input column j (per batch in float32, accumulated in float64) -> Wanda's ‖X_j‖
- "hessian": Σ xᵀx (fp32 products, accumulated in float64) -> SparseGPT's H = 2XᵀX/n
Matrices that read the same input tensor (q, k, v; gate, up) share one accumulator: the hook
sees the identical tensor object and does not count it twice. Sums over batches run in float64,
so their order (one process, or batches shared among torchrun processes and all-reduced) does
not change the float32 statistics the scores read, nor the masks.
"""

from __future__ import annotations

import torch

from ..anatomy import Weight

KINDS = ("norms", "hessian")
_CHUNK = 4096  # tokens per fp32 product before it is added to the fp64 Gram


class InputStats:
    def __init__(self, kind: str):
        if kind not in KINDS:
            raise ValueError(f"unknown statistics kind {kind!r}")
        self.kind = kind
        self.n = 0  # tokens seen
        self.sq: torch.Tensor | None = None
        self.gram: torch.Tensor | None = None
        self.cache: dict = {}  # derived quantities shared by the matrices reading this input (OBS factor)

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).float()  # [tokens, in]
        if self.sq is None:
            self.sq = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
        self.sq += (x * x).sum(0).double()
        if self.kind == "hessian":
            if self.gram is None:
                self.gram = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device)
            for c in range(0, x.shape[0], _CHUNK):
                xc = x[c:c + _CHUNK]
                self.gram += (xc.T @ xc).double()
        self.n += x.shape[0]

    def col_norm(self) -> torch.Tensor:
        """‖X_j‖ / sqrt(n): the root mean square of input column j (Wanda's norm up to a constant)."""
        return torch.sqrt(self.sq / max(self.n, 1)).float()

    def hessian(self) -> torch.Tensor:
        """H = 2XᵀX/n in float64."""
        return self.gram * (2.0 / max(self.n, 1))


class Collector:
    """Context manager: hooks on the given matrices fill `self.stats[name]` during forwards."""

    def __init__(self, weights: tuple[Weight, ...], kind: str):
        self.weights, self.kind = weights, kind
        self.stats: dict[str, InputStats] = {}
        self._handles: list = []
        self._last: tuple[torch.Tensor, InputStats] | None = None

    def _hook(self, name: str):
        def fn(_module, args):
            x = args[0]
            own = self.stats.get(name)
            last = self._last
            if last is not None and last[0] is x and (own is None or own is last[1]):
                self.stats[name] = last[1]  # same input as the previous matrix: already counted
                return
            if own is None:
                own = self.stats[name] = InputStats(self.kind)
            own.add(x)
            self._last = (x, own)

        return fn

    def end_batch(self) -> None:
        self._last = None  # never hold an input tensor between batches

    def __enter__(self) -> "Collector":
        for w in self.weights:
            self._handles.append(w.module.register_forward_pre_hook(self._hook(w.name)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._last = None
