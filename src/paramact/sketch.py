"""Count-sketch fingerprints of a layer's activation vector.

For a layer vector a (all matrices of one block, concatenated), the sketch is
s_j = sum_k sigma_k a_k [h(k) = j] with m buckets. E[s(a)·s(b)] = a·b and, for any
vectors, Var ≈ (‖a‖²‖b‖² + (a·b)²)/m, so the cosine estimate f(a)·f(b) with
f = s/‖a‖ (exact norm) has a standard error of about sqrt((1 + cos²)/m).

The hash of entry (r, c) of a matrix is separable, h = (hr[r] + hc[c]) mod m and
sigma = sr[r]·sc[c], with hr, hc, sr, sc drawn once per (seed, layer, matrix). Two
distinct entries collide with probability 1/m and their sign product has mean 0, so
the estimator is unbiased with the variance above, while the hash costs O(rows + cols)
memory instead of O(rows·cols). Everything is fixed by the seed: fingerprints from
different batches, datasets or runs of the same model are comparable.
"""

from __future__ import annotations

import hashlib

import torch

from .anatomy import Anatomy, Weight
from .errors import UserError
from .workspace import Workspace


def _seed_for(seed: int, layer: int, slot: int) -> int:
    digest = hashlib.sha256(f"paramact-sketch:{seed}:{layer}:{slot}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


class CountSketch:
    def __init__(self, anatomy: Anatomy, dim: int, seed: int = 0):
        if dim < 2 or dim & (dim - 1):
            raise UserError(f"sketch dimension must be a power of two >= 2, got {dim}")
        self.dim = dim
        self.seed = seed
        self.n_layers = anatomy.n_layers
        self._params: dict[str, tuple[torch.Tensor, ...]] = {}
        for w in anatomy.weights:
            R, C = w.weight.shape
            g = torch.Generator().manual_seed(_seed_for(seed, w.layer, w.slot))
            hr = torch.randint(0, dim, (R, 1), generator=g)
            hc = torch.randint(0, dim, (1, C), generator=g)
            sr = torch.randint(0, 2, (R, 1), generator=g).float().mul_(2).sub_(1)
            sc = torch.randint(0, 2, (1, C), generator=g).float().mul_(2).sub_(1)
            self._params[w.key] = (hr, hc, sr, sc)
        self._scratch = Workspace()

    def _on(self, w: Weight, device: torch.device) -> tuple[torch.Tensor, ...]:
        p = self._params[w.key]
        if p[0].device != device:
            p = self._params[w.key] = tuple(t.to(device) for t in p)
        return p

    def zeros(self, batch: int, device: torch.device) -> torch.Tensor:
        """An empty per-batch accumulator, [L, B, m]."""
        return torch.zeros(self.n_layers, batch, self.dim, dtype=torch.float32, device=device)

    def hashes(self, w: Weight, rows: slice, device: torch.device) -> tuple[torch.Tensor, ...]:
        """The hash of the block `rows` of one matrix as flat tensors, for a fused kernel:
        bucket offsets hr [n], hc [C] (int64) and signs sr [n], sc [C] (float32)."""
        hr, hc, sr, sc = self._on(w, device)
        return hr[rows].view(-1), hc.view(-1), sr[rows].view(-1), sc.view(-1)

    def add(self, out: torch.Tensor, w: Weight, rows: slice, A: torch.Tensor) -> None:
        """out [B, m] += sketch of A [B, n, C], the block `rows` of one matrix of the layer."""
        hr, hc, sr, sc = self._on(w, A.device)
        idx = (hr[rows] + hc).bitwise_and_(self.dim - 1).view(-1)  # [n*C]
        buf = self._scratch.get(A.shape, A.device)
        torch.mul(A, sr[rows] * sc, out=buf)  # the [n, C] signs once, then one pass over the B samples
        out.index_add_(1, idx.to(out.device), buf.view(A.shape[0], -1).to(out.device))


def read_fingerprints(path, rows: list[int] | None = None) -> torch.Tensor:
    """The float32 [N, L, m] fingerprints of a run's fingerprints.safetensors, or some of its rows."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            t = f.get_slice("fingerprints")
            return (t[:] if rows is None else torch.stack([t[i] for i in rows]) if rows else t[0:0]).float()
    except (SafetensorError, OSError) as e:
        raise UserError(
            f"cannot read fingerprints from {path}: {str(e).splitlines()[0] if str(e) else 'corrupt'}"
        ) from e
