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


def _bins(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """v's entries (>= 0, float32) binned by the top bits of their float32 pattern, which order
    non-negative floats like their values (2^-10 relative bins): the bin of every entry, and per bin,
    from the top down, its mass (float64) and its count."""
    key = (v.view(torch.int32) >> 13).clamp_(min=0)
    if fused.usable(v.device):  # one parallel pass for both
        mass, count = fused.bin_sums(key, v)
        return key, mass.flip(0), count.flip(0)
    return key, torch.bincount(key, weights=v.double()).flip(0), torch.bincount(key).flip(0)


def _shares(v: torch.Tensor, bins, fractions) -> list[float]:
    key, mass, count = bins
    n, top = v.numel(), len(mass) - 1
    cum_mass, cum_count = torch.cumsum(mass, 0), torch.cumsum(count, 0)
    total = float(cum_mass[-1])
    if total <= 0:
        return [0.0 for _ in fractions]
    out = []
    for f in fractions:
        goal = torch.tensor(f * total, dtype=torch.float64, device=v.device)
        b = min(int(torch.searchsorted(cum_mass, goal)), top)
        before_mass = float(cum_mass[b - 1]) if b else 0.0
        before_count = int(cum_count[b - 1]) if b else 0
        inside = torch.sort(v[key == top - b], descending=True).values
        need = torch.cumsum(inside, 0, dtype=torch.float64) + before_mass
        k = int(torch.searchsorted(need, goal)) + 1
        out.append(min(before_count + k, n) / n)
    return out


def mass_shares(v: torch.Tensor, fractions=(0.5, 0.9)) -> list[float]:
    """For each fraction f: the smallest share of entries of v (>= 0) whose sum reaches f of the
    total. Exact, in O(n): entries are binned by value (`_bins`), whole bins are taken from the top,
    and only the bin where the running mass crosses f·total is sorted."""
    v = v.flatten().float()
    if v.numel() == 0:
        return [0.0 for _ in fractions]
    return _shares(v, _bins(v), fractions)


def layer_density(mean_map: dict[str, torch.Tensor], anatomy: Anatomy, gammas=DEFAULT_GAMMAS) -> list[dict]:
    """One dict per layer (0-based `index`): params, count_above, mass shares, mean_abs.

    One float64 copy of each layer's values serves its mass histogram, its total and its mean; the
    model-wide mean (the threshold of share_above_model_mean) adds float32 sums of each matrix in
    float64 (a float32 sum of one matrix is cascaded: ~1e-7 relative)."""
    gammas = check_gammas(gammas)
    total = sum(float(w.select(mean_map[w.name]).sum()) for w in anatomy.weights)
    global_mean = total / sum(w.numel for w in anatomy.weights)
    rows = []
    for i, ws in enumerate(anatomy.layers):
        v = torch.cat([w.select(mean_map[w.name]).flatten().float() for w in ws])
        bins = _bins(v)
        m50, m90 = _shares(v, bins, (0.5, 0.9))
        rows.append(
            {
                "index": i,
                "params": v.numel(),
                "count_above": {gamma_key(g): int(torch.count_nonzero(v > g)) for g in gammas},
                "mass_share_50": m50,
                "mass_share_90": m90,
                "share_above_model_mean": int(torch.count_nonzero(v > global_mean)) / v.numel(),
                "mean_abs": float(bins[1].sum()) / v.numel(),
            }
        )
    return rows
