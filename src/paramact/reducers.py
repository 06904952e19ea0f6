"""Streaming reducers: statistics of A that never hold a per-sample model gradient.

Each reducer is a Sink for the engine (begin_batch / update / end_batch), keeps its
state in float32, and can be merged with another reducer of the same kind (for sharded
runs) and saved/restored (for resume). Memory does not grow with the number of samples,
except for the per-sample outputs themselves (a few floats per layer, and the
fingerprints).
"""

from __future__ import annotations

import torch

from . import fused
from .anatomy import Anatomy, Weight
from .batching import Batch
from .errors import UserError
from .sketch import CountSketch
from .workspace import Workspace

_GRAM_PIECE = 1 << 13


def _piecewise_partner(flat: torch.Tensor) -> torch.Tensor:
    """flat [B, N] (B even) -> [B] float64 products of rows b and b xor 1, from float32 sums over
    _GRAM_PIECE-long pieces (as _piecewise_gram); one [B/2, N] product, no copies of flat."""
    B, N = flat.shape
    prod = flat[0::2] * flat[1::2]  # [B/2, N]
    whole = N - N % _GRAM_PIECE
    out = prod[:, :whole].reshape(B // 2, -1, _GRAM_PIECE).sum(-1).double().sum(-1)
    if whole < N:
        out += prod[:, whole:].sum(-1).double()
    return out.repeat_interleave(2)


def _piecewise_gram(flat: torch.Tensor) -> torch.Tensor:
    """flat [B, N] -> flat @ flat.T in float64, from float32 products over _GRAM_PIECE-long pieces
    (one batched product for all whole pieces): a single float32 GEMM over millions of terms
    would lose ~1e-4 relative. Computing the B x B products costs less than the B squares alone."""
    B, N = flat.shape
    whole = N - N % _GRAM_PIECE
    out = torch.zeros(B, B, dtype=torch.float64, device=flat.device)
    if whole:
        pieces = flat[:, :whole].reshape(B, -1, _GRAM_PIECE)  # [B, P, K]
        out += torch.matmul(pieces.transpose(0, 1), pieces.permute(1, 2, 0)).double().sum(0)
    if whole < N:
        rest = flat[:, whole:]
        out += (rest @ rest.T).double()
    return out


class MeanMap:
    """Sum over samples of A, per parameter: the mean activation map Ā = sum / n."""

    def __init__(self, anatomy: Anatomy, device: torch.device | str | None = None):
        self.anatomy = anatomy
        self.sums = {  # keyed by HF parameter name, shaped like the parameter (3-D for fused experts)
            name: torch.zeros(p.shape, dtype=torch.float32, device=device or p.device)
            for name, p in anatomy.params().items()
        }
        self.n = 0

    def begin_batch(self, batch: Batch) -> None:
        pass

    def reads_abs_grad(self, device: torch.device) -> bool:
        return True

    def update(self, w: Weight, rows: slice, A: torch.Tensor) -> None:
        s = w.select(self.sums[w.name])[rows]
        s.add_(A.sum(0).to(s.device))

    def update_abs_grad(self, w: Weight, rows: slice, G: torch.Tensor, absW: torch.Tensor) -> None:
        """Σ_b A_b = |W| * Σ_b |G_b|: one [n, C] product instead of B (the engine's fast path)."""
        s = w.select(self.sums[w.name])[rows]
        s.add_(G.sum(0).mul_(absW).to(s.device))

    def end_batch(self, batch: Batch) -> None:
        self.n += batch.size

    def mean(self, in_place: bool = False) -> dict[str, torch.Tensor]:
        """sum / n per parameter; in_place turns the sums themselves into the means (no copy of
        4 bytes per weight; the reducer is spent afterwards)."""
        if self.n == 0:
            raise ValueError("no samples were reduced")
        if in_place:
            return {k: v.div_(self.n) for k, v in self.sums.items()}
        return {k: v / self.n for k, v in self.sums.items()}

    def merge(self, other: MeanMap) -> None:
        for k, v in other.sums.items():
            self.sums[k] += v.to(self.sums[k].device)
        self.n += other.n

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**{f"sum/{k}": v for k, v in self.sums.items()}, "n": torch.tensor(self.n)}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k in self.sums:
            self.sums[k].copy_(state[f"sum/{k}"])
        self.n = int(state["n"])


class SampleStats:
    """Per sample and layer: ‖A‖², ΣA, optionally the in-batch Gram (exact LLMDcos of every pair
    in a batch), the product with the sample's partner in a pair pass (texts 2p and 2p+1 side by
    side in one batch: their exact LLMDcos for 1/B of the Gram's work) and a count-sketch
    fingerprint whose dot products estimate A·A'.

    A "layer" is the concatenation of every matrix of one block, as in the paper. Without
    grams only the Gram's diagonal (‖A‖²) is accumulated: B times fewer products. With neither
    norms, grams nor a sketch it reads no A at all and keeps only the samples' target values.
    """

    def __init__(
        self,
        anatomy: Anatomy,
        sketch_dim: int = 0,
        seed: int = 0,
        grams: bool = True,
        fingerprint_dtype: torch.dtype = torch.float16,
        on_fingerprints=None,
        norms: bool = True,
        pairs: bool = False,
    ):
        self.anatomy = anatomy
        self.on_fingerprints = on_fingerprints  # callable(index, [B, L, m]) instead of keeping them
        self.fingerprint_dtype = fingerprint_dtype
        self.sketch = CountSketch(anatomy, sketch_dim, seed) if sketch_dim else None
        self.keep_grams = grams
        self.keep_pairs = pairs
        self.active = norms or grams or pairs or self.sketch is not None
        self.index: list[int] = []
        self.sq_norm: list[torch.Tensor] = []  # [B, L] per batch
        self.total: list[torch.Tensor] = []  # [B, L]
        self.fingerprints: list[torch.Tensor] = []  # [B, L, m] sketches / exact layer norms
        self.grams: list[tuple[list[int], torch.Tensor]] = []  # (sample ids, [L, B, B])
        self.partner: list[torch.Tensor] = []  # [B, L] A_b·A_(b xor 1) per batch (pairs)
        self.values: list[torch.Tensor] = []  # [B] target value D per sample
        self._gram = self._sum = self._sk = self._pd = None
        self._scratch = Workspace()

    def add_values(self, values: torch.Tensor) -> None:
        self.values.append(values.detach().float().cpu())

    def begin_batch(self, batch: Batch) -> None:
        if not self.active:
            return
        L, B = self.anatomy.n_layers, batch.size
        dev = batch.input_ids.device
        shape = (L, B, B) if self.keep_grams else (L, B)  # without grams: the diagonal alone
        self._gram = torch.zeros(shape, dtype=torch.float64, device=dev)
        self._sum = torch.zeros(L, B, dtype=torch.float64, device=dev)
        self._sk = self.sketch.zeros(B, dev) if self.sketch else None
        if self.keep_pairs:
            if B % 2 or any(batch.index[j] ^ 1 != batch.index[j ^ 1] for j in range(B)):
                raise UserError("a pair pass needs both texts of each pair side by side in one batch (even batch size)")
            self._pd = torch.zeros(L, B, dtype=torch.float64, device=dev)

    def update(self, w: Weight, rows: slice, A: torch.Tensor) -> None:
        if not self.active:
            return
        flat = A.reshape(A.shape[0], -1)  # [B, n]
        # fp32 GEMMs over 8192-long pieces, summed in fp64: one fp32 GEMM over millions of
        # terms would lose ~1e-4 relative in the norms
        gram = self._gram[w.layer]
        prod = _piecewise_gram(flat)  # [B, B] float64
        gram += (prod if self.keep_grams else torch.diagonal(prod)).to(gram.device)  # (a device_map spans devices)
        self._sum[w.layer] += flat.sum(1).to(self._sum)
        if self.keep_pairs:
            self._pd[w.layer] += _piecewise_partner(flat).to(self._pd)
        if self.sketch is not None:
            self.sketch.add(self._sk[w.layer], w, rows, A)

    def reads_abs_grad(self, device: torch.device) -> bool:
        """On a CPU the statistics come from |G| and |W| in one fused sweep (fused.py), A unwritten."""
        if not self.active:
            return True  # nothing to read: no A need be formed for this reducer
        return fused.usable(device) and self._gram.device.type == "cpu"

    def update_abs_grad(self, w: Weight, rows: slice, G: torch.Tensor, absW: torch.Tensor) -> None:
        """Σ A, ‖A‖², the Gram and the sketch of A = |G|·|W| in one sweep (fused.py), A unwritten."""
        if not self.active:
            return
        if not fused.usable(G.device):  # a layer on an accelerator beside CPU layers (a device_map)
            self.update(w, rows, torch.mul(G, absW, out=self._scratch.get(G.shape, G.device)))
            return
        layer = w.layer
        sketch = (self._sk[layer], *self.sketch.hashes(w, rows, G.device)) if self.sketch is not None else None
        pd = self._pd[layer] if self.keep_pairs else None
        if self.keep_grams:  # the squares are the Gram's diagonal: the kernel's own are dropped
            sq = torch.zeros(G.shape[0], dtype=torch.float64, device=G.device)
            fused.sample_stats(G, absW, self._sum[layer], sq, self._gram[layer], sketch, pd)
        else:
            fused.sample_stats(G, absW, self._sum[layer], self._gram[layer], None, sketch, pd)

    def end_batch(self, batch: Batch) -> None:
        self.index.extend(batch.index)
        if not self.active:
            return
        g = self._gram.cpu()  # float64
        sq = (torch.diagonal(g, dim1=1, dim2=2) if self.keep_grams else g).T.float().contiguous()  # [B, L]
        if not torch.isfinite(sq).all():
            raise UserError(
                "non-finite activations (NaN/inf gradients, e.g. float16 overflow): use --dtype float32 or bfloat16"
            )
        self.sq_norm.append(sq)
        self.total.append(self._sum.T.float().cpu())
        if self.keep_grams:
            self.grams.append((list(batch.index), g))
        if self.keep_pairs:
            self.partner.append(self._pd.T.float().cpu())
        if self._sk is not None:  # unit-scale values: float16 storage loses < 1e-3 relative
            norm = sq.clamp(min=0).sqrt().clamp(min=torch.finfo(torch.float32).tiny)
            fp = self._sk.transpose(0, 1).cpu() / norm[..., None]
            if self.on_fingerprints is not None:
                self.on_fingerprints(list(batch.index), fp)  # float32: the receiver chooses the storage
            else:
                self.fingerprints.append(fp.to(self.fingerprint_dtype))
        self._gram = self._sum = self._sk = self._pd = None

    # -- results (rows in sample-id order, whatever order batches were reduced in) -----
    def _ordered(self, parts: list[torch.Tensor]) -> torch.Tensor:
        order = torch.argsort(torch.tensor(self.index, dtype=torch.long))
        return torch.cat(parts)[order]

    def norms(self) -> torch.Tensor | None:
        """‖A_i‖ per sample and layer, [N, L] (None when not collected)."""
        return self._ordered(self.sq_norm).clamp(min=0).sqrt() if self.active else None

    def sums(self) -> torch.Tensor | None:
        """Σ A_i per sample and layer, [N, L] (None when not collected)."""
        return self._ordered(self.total) if self.active else None

    def partner_products(self) -> torch.Tensor | None:
        """A_i·A_(i xor 1) per sample and layer, [N, L] (None without pairs)."""
        return self._ordered(self.partner) if self.keep_pairs else None

    def target_values(self) -> torch.Tensor:
        return self._ordered(self.values)

    def normalized_fingerprints(self) -> torch.Tensor:
        """Sketches divided by the exact layer norms, [N, L, m]: f_i · f_j ≈ LLMDcos(i, j)."""
        if not self.fingerprints:
            raise ValueError("fingerprints were not collected (sketch_dim=0)")
        return self._ordered(self.fingerprints)

    # -- state: checkpoints and merging shards ----------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        sizes = [t.shape[0] for t in self.values]
        state = {
            "index": torch.tensor(self.index, dtype=torch.long),
            "batch_sizes": torch.tensor(sizes, dtype=torch.long),
        }
        if self.index:
            state["values"] = torch.cat(self.values)
        if self.index and self.active:
            state.update(sq_norm=torch.cat(self.sq_norm), total=torch.cat(self.total))
            if self.fingerprints:
                state["fingerprints"] = torch.cat(self.fingerprints)
            if self.partner:
                state["partner"] = torch.cat(self.partner)
            for k, (_, g) in enumerate(self.grams):
                state[f"gram/{k}"] = g
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.index = state["index"].tolist()
        sizes = state["batch_sizes"].tolist()
        split = lambda t: list(torch.split(t, sizes)) if sizes else []  # noqa: E731
        self.sq_norm = split(state["sq_norm"]) if "sq_norm" in state else []
        self.total = split(state["total"]) if "total" in state else []
        self.values = split(state["values"]) if self.index else []
        self.fingerprints = split(state["fingerprints"]) if "fingerprints" in state else []
        self.partner = split(state["partner"]) if "partner" in state else []
        ids = split(state["index"]) if self.index else []
        self.grams = [(i.tolist(), state[f"gram/{k}"]) for k, i in enumerate(ids)] if self.keep_grams else []

    def merge(self, other: SampleStats) -> None:
        """Add another shard's samples (the results stay in sample-id order)."""
        self.index += other.index
        self.sq_norm += other.sq_norm
        self.total += other.total
        self.values += other.values
        self.fingerprints += other.fingerprints
        self.grams += other.grams
        self.partner += other.partner
