"""Per-input-column statistics of a block's matrices, gathered through the taps (taps.py).

For a matrix y = x Wᵀ the statistics are over the rows x of its input: every token, or, for an
expert of a mixture-of-experts block, the tokens routed to that expert only:
- "norms":   Σ x_j² per input column j (per batch in float32, accumulated in float64) -> Wanda's ‖X_j‖
- "hessian": Σ xᵀx (fp32 products, accumulated in float64) -> SparseGPT's H = 2XᵀX/n
Matrices that read the same input tensor (q, k, v; gate, up) share one accumulator: the tap
sees the identical tensor object and does not count it twice. Every expert gets its accumulator
up front, so an expert that no calibration token reached holds n = 0 (and all processes of a
torchrun hold the same accumulators in the same order). Sums over batches run in float64,
so their order (one process, or batches shared among torchrun processes and all-reduced) does
not change the float32 statistics the scores read, nor the masks.
"""

from __future__ import annotations

import torch

from ..anatomy import Anatomy, Weight
from ..taps import Taps

KINDS = ("norms", "hessian")
_CHUNK = 4096  # tokens per fp32 product before it is added to the fp64 Gram


class InputStats:
    def __init__(self, kind: str, width: int | None = None, device=None):
        if kind not in KINDS:
            raise ValueError(f"unknown statistics kind {kind!r}")
        self.kind = kind
        self.n = 0  # tokens seen
        self.sq: torch.Tensor | None = None
        self.gram: torch.Tensor | None = None
        self.cache: dict = {}  # derived quantities shared by the matrices reading this input (OBS factor)
        if width is not None:  # allocated up front (experts): zero until a token arrives
            self.sq = torch.zeros(width, dtype=torch.float64, device=device)
            if kind == "hessian":
                self.gram = torch.zeros(width, width, dtype=torch.float64, device=device)

    def add(self, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).float()  # [tokens, in]
        if self.sq is None:
            self.sq = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
        self.sq += (x * x).sum(0).double()
        if self.kind == "hessian":
            if self.gram is None:
                self.gram = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device)
            for c in range(0, x.shape[0], _CHUNK):
                xc = x[c : c + _CHUNK]
                self.gram += (xc.T @ xc).double()
        self.n += x.shape[0]

    def col_norm(self) -> torch.Tensor:
        """‖X_j‖ / sqrt(n): the root mean square of input column j (Wanda's norm up to a constant)."""
        return torch.sqrt(self.sq / max(self.n, 1)).float()

    def hessian(self) -> torch.Tensor:
        """H = 2XᵀX/n in float64."""
        return self.gram * (2.0 / max(self.n, 1))


class Collector:
    """Context manager: the taps on block `layer`'s matrices fill `self.stats[key]` during forwards."""

    def __init__(self, anatomy: Anatomy, layer: int, kind: str):
        self.anatomy, self.layer, self.kind = anatomy, layer, kind
        self.stats: dict[str, InputStats] = {
            w.key: InputStats(kind, w.shape_out_in[1], w.param.device)
            for w in anatomy.layers[layer]
            if w.expert is not None
        }
        self._taps = Taps(anatomy, self._on_input, layers=[layer])
        self._last: tuple[torch.Tensor, InputStats] | None = None

    def _on_input(self, w: Weight, x: torch.Tensor, _out, _tokens) -> None:
        own = self.stats.get(w.key)
        last = self._last
        if last is not None and last[0] is x and (own is None or own is last[1]):
            self.stats[w.key] = last[1]  # same input as the previous matrix: already counted
            return
        if own is None:
            own = self.stats[w.key] = InputStats(self.kind)
        own.add(x)
        self._last = (x, own)

    def end_batch(self) -> None:
        self._last = None  # never hold an input tensor between batches

    def __enter__(self) -> Collector:
        self._taps.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._taps.__exit__(*exc)
        self._last = None
