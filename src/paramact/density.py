"""Per-layer activation density from the mean activation map (Finding 1).

Counts of parameters whose mean activation exceeds each threshold γ (the paper's
measure), and threshold-free measures: the share of a layer's parameters that carries
50% / 90% of the layer's activation mass, and the share above the model-wide mean.
"""

from __future__ import annotations

import torch

from . import fused
from .anatomy import Anatomy
from .errors import UserError

# 2e-6: the paper's code for 32-layer models; 5e-6: Llama-2-13B; 2e-5: the paper's text.
DEFAULT_GAMMAS: tuple[float, ...] = (2e-6, 5e-6, 2e-5)


def gamma_key(g: float) -> str:
    return f"{g:g}"


def check_gammas(gammas) -> tuple[float, ...]:
    gammas = tuple(float(g) for g in gammas)
    if not gammas or any(not (g > 0) or g != g or g == float("inf") for g in gammas):
        raise UserError(f"every threshold γ must be a positive finite number, got {list(gammas)}")
    return gammas


def _key(x: torch.Tensor) -> torch.Tensor:
    """The bin of float32 values (fused.BIN_SHIFT: 2^-10 relative bins; negatives in bin 0)."""
    return (x.view(torch.int32) >> fused.BIN_SHIFT).clamp_(min=0)


class Histogram:
    """The entries of v (float32, finite, >= 0) binned by value (`_key`): per bin its mass (float64)
    and its count. Counts above a threshold and mass shares then need only the entries of the one
    bin the threshold or the share falls in: exact. On a CPU one parallel pass fills the bins and a
    second gathers the entries of the few bins needed, however many thresholds there are."""

    def __init__(self, v: torch.Tensor):
        self.v = v.flatten().float()
        if self.v.numel() == 0:
            raise ValueError("an empty tensor has no histogram")
        top = self.v.max()
        if not torch.isfinite(top):
            raise UserError(
                "non-finite mean activations (NaN/inf gradients, e.g. float16 overflow): use --dtype float32/bfloat16"
            )
        nb = int(_key(top.reshape(1))) + 1
        if fused.usable(self.v.device):  # one parallel pass for both, and one for the wanted bins
            mass, count = fused.histogram(self.v, nb)
            self._halves, self._keys = count, None
            mass, count = mass.sum(0), count.sum(0)
        else:
            self._keys = _key(self.v)
            mass, count = torch.bincount(self._keys, weights=self.v.double()), torch.bincount(self._keys)
        # from the top bin down
        self.cum_mass, self.cum_count = torch.cumsum(mass.flip(0), 0), torch.cumsum(count.flip(0), 0)
        self.top = nb - 1
        self.total = float(self.cum_mass[-1])

    def _entries(self, keys: list[int]) -> list[torch.Tensor]:
        if self._keys is None:
            return fused.bin_entries(self.v, keys, self._halves)
        return [self.v[self._keys == k] for k in keys]

    def _before(self, b: int) -> tuple[float, int]:
        """Mass and count of the bins above top-down bin b."""
        return (float(self.cum_mass[b - 1]), int(self.cum_count[b - 1])) if b else (0.0, 0)

    def summary(self, thresholds=(), fractions=()) -> tuple[list[int], list[float]]:
        """(count of entries > t for each threshold t, as float32 compares them; for each fraction f,
        the smallest share of entries whose sum reaches f of the total)."""
        n = self.v.numel()
        t32 = [torch.tensor(t, dtype=torch.float32, device=self.v.device) for t in thresholds]
        t_bins = [self.top - int(_key(t.reshape(1))) for t in t32]  # top-down; < 0: above every entry
        goals = [torch.tensor(f * self.total, dtype=torch.float64, device=self.v.device) for f in fractions]
        f_bins = [min(int(torch.searchsorted(self.cum_mass, g)), self.top) for g in goals]
        wanted = sorted({self.top - b for b in t_bins + f_bins if 0 <= b <= self.top})
        inside = dict(zip(wanted, self._entries(wanted)))
        counts = []
        for t, b in zip(t32, t_bins):
            if b < 0:
                counts.append(0)
            else:
                counts.append(self._before(b)[1] + int(torch.count_nonzero(inside[self.top - b] > t)))
        shares = []
        for goal, b in zip(goals, f_bins):
            if self.total <= 0:
                shares.append(0.0)
                continue
            before_mass, before_count = self._before(b)
            desc = torch.sort(inside[self.top - b], descending=True).values
            k = int(torch.searchsorted(torch.cumsum(desc, 0, dtype=torch.float64) + before_mass, goal)) + 1
            shares.append(min(before_count + k, n) / n)
        return counts, shares


def mass_shares(v: torch.Tensor, fractions=(0.5, 0.9)) -> list[float]:
    """For each fraction f: the smallest share of entries of v (>= 0) whose sum reaches f of the
    total. Exact, in O(n): entries are binned by value (`Histogram`), whole bins are taken from the
    top, and only the bin where the running mass crosses f·total is sorted."""
    if v.numel() == 0:
        return [0.0 for _ in fractions]
    return Histogram(v).summary(fractions=fractions)[1]


def layer_density(mean_map: dict[str, torch.Tensor], anatomy: Anatomy, gammas=DEFAULT_GAMMAS) -> list[dict]:
    """One dict per layer (0-based `index`): params, count_above, mass shares, mean_abs.

    One histogram of each layer's values serves its counts, its mass shares, its total and its mean;
    the model-wide mean (the threshold of share_above_model_mean) adds float32 sums of each matrix in
    float64 (a float32 sum of one matrix is cascaded: ~1e-7 relative)."""
    gammas = check_gammas(gammas)
    total = sum(float(w.select(mean_map[w.name]).sum()) for w in anatomy.weights)
    global_mean = total / sum(w.numel for w in anatomy.weights)
    rows = []
    for i, ws in enumerate(anatomy.layers):
        h = Histogram(torch.cat([w.select(mean_map[w.name]).flatten().float() for w in ws]))
        n = h.v.numel()
        counts, (m50, m90) = h.summary((*gammas, global_mean), (0.5, 0.9))
        rows.append(
            {
                "index": i,
                "params": n,
                "count_above": {gamma_key(g): c for g, c in zip(gammas, counts)},
                "mass_share_50": m50,
                "mass_share_90": m90,
                "share_above_model_mean": counts[-1] / n,
                "mean_abs": h.total / n,
            }
        )
    return rows
