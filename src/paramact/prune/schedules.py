"""Layer-wise sparsity schedules: one sparsity per decoder block, mean exactly the target.

Every schedule is a pure function of per-layer statistics (or of data) and the target S; the
registry SCHEDULES maps its name to a ScheduleSpec saying which statistic it needs:

- uniform     S_i = S
- activation  the paper's formula (the paper, §3.1): z_i = (N_i − mean N)/std N (population std),
              N'_i = σ(z_i + α/i) with 1-based i, S_i = S + βS(1 − N'_i·L/ΣN'); N_i = the activation
              count of layer i measured by the engine (above γ, or a threshold-free density)
- paper       the paper's hard-coded 50% lists (paper_lists.py), scaled to S (the deviations of the
              formula are proportional to S) and resampled over relative depth if L differs
- alphapruning  AlphaPruning (Lu et al., NeurIPS 2024), needs no data: α_i = the mean over layer i's
              matrices of the Hill estimate of the power-law exponent of the eigenvalues of WᵀW (the
              upper half of the spectrum); r_i = 1 − ε + 2ε·(α_i − min α)/(max α − min α), S_i = S·r_i/mean r
              (a heavier tail, a smaller α: a better-trained layer, pruned less)
- atp         ATP (Huang et al., ICML 2025): sparsity rising linearly with depth,
              S_i = S + δ·(i − (L − 1)/2) for 0-based i, with the step δ given (--atp-step)
- owl         OWL: D_i = the share of layer i's Wanda scores |W|·‖X‖ above M × the layer's mean score,
              mapped linearly onto [0, 2λ]; S_i = S − (D̃_i − mean D̃)
- file        an explicit list (JSON list, {"schedule": [...]} as written by `paramact schedule`, or
              numbers separated by commas/whitespace)

`finalize` enforces the contract for all of them: every entry in [0, cap] with cap < 1, and the
mean equal to S (clipped entries are fixed, the others shifted, repeated until it holds).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .masks import check_sparsity
from .paper_lists import PAPER_LISTS, PAPER_TARGET

MAX_LAYER_SPARSITY = 0.99  # cap of one layer's sparsity (raised to the target when the target is higher)


def finalize(values: Sequence[float], target: float) -> list[float]:
    """Clip into [0, cap] and restore mean == target exactly (to float rounding)."""
    target = check_sparsity(target, "target sparsity")
    s = np.asarray(values, dtype=np.float64)
    if s.ndim != 1 or s.size == 0 or not np.all(np.isfinite(s)):
        raise UserError("a schedule must be a non-empty list of finite numbers")
    cap = max(MAX_LAYER_SPARSITY, target)
    s = np.clip(s, 0.0, cap)
    for _ in range(4 * s.size + 8):
        deficit = target * s.size - s.sum()
        if abs(deficit) <= 1e-13 * s.size:
            break
        movable = s < cap if deficit > 0 else s > 0.0
        if not movable.any():
            break
        s[movable] += deficit / movable.sum()
        s = np.clip(s, 0.0, cap)
    s += target - s.mean()  # the last ulp
    return [float(min(max(v, 0.0), cap)) for v in s]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def zscores(counts: Sequence[float]) -> np.ndarray:
    n = np.asarray(counts, dtype=np.float64)
    std = n.std()  # population std (ddof = 0), as the paper's lists imply
    return (n - n.mean()) / std if std > 0 else np.zeros_like(n)


def activation_from_z(z: Sequence[float], target: float, alpha: float = 2.0, beta: float = 0.2) -> list[float]:
    """The paper's formula from z-scores: N'_i = σ(z_i + α/i), S_i = S + βS(1 − N'_i·L/ΣN')."""
    z = np.asarray(z, dtype=np.float64)
    i = np.arange(1, z.size + 1, dtype=np.float64)
    n_prime = sigmoid(z + alpha / i)
    return list(target + beta * target * (1.0 - n_prime * z.size / n_prime.sum()))


def activation_schedule(counts: Sequence[float], target: float, alpha: float = 2.0, beta: float = 0.2) -> list[float]:
    return finalize(activation_from_z(zscores(counts), target, alpha, beta), target)


def uniform_schedule(n_layers: int, target: float) -> list[float]:
    return finalize([target] * n_layers, target)


def paper_schedule(model_key: str, n_layers: int, target: float) -> tuple[list[float], dict]:
    if model_key not in PAPER_LISTS:
        raise UserError(f"no paper list for {model_key!r}; the paper's lists: {', '.join(PAPER_LISTS)}")
    src = np.asarray(PAPER_LISTS[model_key], dtype=np.float64)
    meta = {"paper_model": model_key, "source_layers": int(src.size)}
    if src.size != n_layers:  # resample over relative depth (layer centres), keep the mean at 0.5
        x_src = (np.arange(src.size) + 0.5) / src.size
        x_dst = (np.arange(n_layers) + 0.5) / n_layers
        src = np.interp(x_dst, x_src, src)
        src += PAPER_TARGET - src.mean()
        meta["resampled"] = f"linear interpolation over relative depth, {meta['source_layers']} -> {n_layers} layers"
    return finalize(src * (target / PAPER_TARGET), target), meta


def owl_schedule(ratios: Sequence[float], target: float, lam: float = 0.08) -> list[float]:
    r = np.asarray(ratios, dtype=np.float64)
    span = r.max() - r.min()
    d = (r - r.min()) / span * (2 * lam) if span > 0 else np.zeros_like(r)
    return finalize(target - (d - d.mean()), target)


def hill_alpha(eigenvalues: Sequence[float]) -> float:
    """Hill estimate of the power-law exponent of a spectrum's tail: with the eigenvalues sorted
    ascending, λ_min = the median one (index N // 2) and the n = N − N // 2 from there on,
    α = 1 + n / Σ ln(λ_j / λ_min)."""
    lam = np.sort(np.asarray(eigenvalues, dtype=np.float64))
    if lam.size < 2 or not np.all(np.isfinite(lam)) or lam[lam.size // 2] <= 0:
        raise UserError("a spectrum needs at least 2 finite eigenvalues with a positive median")
    tail = lam[lam.size // 2 :]
    denom = float(np.log(tail / tail[0]).sum())
    return 1.0 + tail.size / denom if denom > 0 else math.inf


def alphapruning_schedule(alphas: Sequence[float], target: float, epsilon: float = 0.3) -> list[float]:
    """AlphaPruning's mapping: α linearly onto [1 − ε, 1 + ε], scaled to mean S."""
    a = np.asarray(alphas, dtype=np.float64)
    span = a.max() - a.min()
    r = 1.0 - epsilon + 2.0 * epsilon * (a - a.min()) / span if span > 0 else np.ones_like(a)
    return finalize(target * r / r.mean(), target)


def atp_schedule(n_layers: int, target: float, step: float) -> list[float]:
    """ATP's arithmetic progression over depth: S_i = S + δ·(i − (L − 1)/2), mean exactly S."""
    i = np.arange(n_layers, dtype=np.float64)
    return finalize(target + step * (i - (n_layers - 1) / 2), target)


def read_schedule_file(path: str | Path) -> list[float]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read schedule file {p}: {getattr(e, 'strerror', None) or e}") from e
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        obj = list(text.replace(",", " ").split())
    if isinstance(obj, dict):
        obj = obj.get("schedule", obj.get("sparsity"))
    try:
        values = [float(v) for v in obj]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise UserError(
            f'schedule file {p} must hold a list of numbers (JSON list, {{"schedule": [...]}}, '
            "or numbers separated by commas/whitespace)"
        ) from None
    return values


def file_schedule(values: Sequence[float], n_layers: int, target: float | None, path: str = "the file") -> list[float]:
    if len(values) != n_layers:
        raise UserError(f"schedule {path} has {len(values)} entries but the model has {n_layers} layers")
    for i, v in enumerate(values):
        if not (math.isfinite(v) and 0.0 <= v < 1.0):
            raise UserError(f"schedule {path}: layer {i} sparsity {v} is outside [0, 1)")
    mean = float(np.mean(values))
    if target is not None and abs(mean - target) > 1e-6:
        raise UserError(
            f"schedule {path} has mean {mean:.6f}, not the target sparsity {target}; "
            "omit --sparsity to use the file's mean"
        )
    return finalize(values, mean if target is None else target)


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    description: str


SCHEDULES: dict[str, ScheduleSpec] = {
    s.name: s
    for s in (
        ScheduleSpec("uniform", "the same sparsity in every layer"),
        ScheduleSpec(
            "activation",
            "the paper's formula from activation counts (N'=σ(z+α/i), S_i=S+βS(1−N'L/ΣN'))",
        ),
        ScheduleSpec("paper", "the paper's hard-coded lists (llama_7b, llama2_7b, llama2_13b, llama3_8b)"),
        ScheduleSpec(
            "alphapruning", "AlphaPruning: heavy-tail exponents of the weight spectra, no data (Lu et al. 2024)"
        ),
        ScheduleSpec("atp", "ATP: sparsity rising linearly with depth by a step δ per layer"),
        ScheduleSpec("owl", "OWL: layers with more outlier Wanda scores (> M×mean) get lower sparsity"),
        ScheduleSpec("file", "an explicit list of per-layer sparsities from a file"),
    )
}


def get_schedule(name: str) -> ScheduleSpec:
    if name not in SCHEDULES:
        raise UserError(f"unknown schedule {name!r}; choose one of: {', '.join(SCHEDULES)}")
    return SCHEDULES[name]


# density measures an activation schedule can use as N_i
def density_measure(spec: str) -> tuple[str, Callable[[dict], float]]:
    """'gamma:2e-06' -> count above γ; 'mass50'/'mass90' -> parameters carrying 50%/90% of the
    layer's activation mass; 'above_mean' -> parameters above the model-wide mean."""
    from ..density import gamma_key

    spec = str(spec).strip()
    if spec.startswith("gamma:"):
        try:
            g = float(spec.split(":", 1)[1])
        except ValueError:
            raise UserError(f"density {spec!r}: write gamma:<number>, e.g. gamma:2e-6") from None
        if not (g > 0 and math.isfinite(g)):
            raise UserError(f"density {spec!r}: γ must be a positive number")
        key = gamma_key(g)
        return f"count above γ={key}", lambda row: float(row["count_above"][key])
    table = {
        "mass50": ("parameters carrying 50% of the layer's activation mass", "mass_share_50"),
        "mass90": ("parameters carrying 90% of the layer's activation mass", "mass_share_90"),
        "above_mean": ("parameters above the model-wide mean activation", "share_above_model_mean"),
    }
    if spec not in table:
        raise UserError(f"unknown density {spec!r}; use gamma:<γ>, mass50, mass90 or above_mean")
    label, field = table[spec]
    return label, lambda row: float(row[field]) * row["params"]


def density_gamma(spec: str) -> float | None:
    return float(spec.split(":", 1)[1]) if str(spec).startswith("gamma:") else None
