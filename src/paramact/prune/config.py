"""Typed configurations of a pruning run: calibration, schedule, method (checked on creation)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import UserError
from .masks import check_sparsity, parse_pattern
from .schedules import density_measure, get_schedule
from .scores import get_method


def _positive_int(v, what: str) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise UserError(f"{what} must be a positive integer, got {v!r}")


@dataclass(frozen=True)
class CalibrationConfig:
    """Calibration token windows. The paper used C4, 128 × 2048 tokens; the default fits a CPU."""

    dataset: str = "c4"
    nsamples: int = 32
    seqlen: int = 256
    seed: int = 0
    split: str | None = None
    batch_size: int = 8
    data_dir: str | None = None

    def __post_init__(self) -> None:
        _positive_int(self.nsamples, "calibration samples")
        _positive_int(self.seqlen, "calibration seqlen")
        _positive_int(self.batch_size, "batch size")


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = "uniform"
    alpha: float = 2.0  # activation: N'_i = σ(z_i + α/i)
    beta: float = 0.2  # activation: S_i = S + βS(1 − N'_i·L/ΣN')
    density: str = "gamma:2e-06"  # activation: N_i (gamma:<γ>, mass50, mass90, above_mean)
    data: str = "c4"  # activation: data whose activation counts give N_i
    samples: int = 64
    seqlen: int = 256
    seed: int = 1
    target: str = "max_logit"
    owl_lambda: float = 0.08
    owl_m: float = 5.0
    paper_model: str | None = None
    file: str | None = None

    def __post_init__(self) -> None:
        spec = get_schedule(self.name)
        for k in ("alpha", "beta", "owl_lambda", "owl_m"):
            v = getattr(self, k)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise UserError(f"schedule option {k} must be a finite number, got {v!r}")
        if self.beta < 0 or self.owl_lambda < 0 or self.owl_m <= 0:
            raise UserError("β and λ must be >= 0 and M > 0")
        if spec.name == "activation":
            density_measure(self.density)
            _positive_int(self.samples, "schedule samples")
            _positive_int(self.seqlen, "schedule seqlen")
        if spec.name == "paper" and not self.paper_model:
            from .paper_lists import PAPER_LISTS

            raise UserError(f"schedule 'paper' needs --paper-model, one of: {', '.join(PAPER_LISTS)}")
        if spec.name == "file" and not self.file:
            raise UserError("schedule 'file' needs --schedule-file PATH")


@dataclass(frozen=True)
class PruneConfig:
    method: str = "wanda"
    sparsity: float | None = 0.5  # None: the schedule file's mean, or N/M for an N:M pattern
    pattern: str = "row"
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    blocksize: int = 128  # sparsegpt
    damp: float = 0.01  # sparsegpt: λ = damp · mean diag(H)

    def __post_init__(self) -> None:
        get_method(self.method)
        pat = parse_pattern(self.pattern)
        if self.sparsity is not None:
            check_sparsity(self.sparsity)
        if pat.kind == "nm":
            if self.schedule.name != "uniform":
                raise UserError(f"an {pat} pattern fixes every layer at {pat.n}/{pat.m}; use --schedule uniform")
            if self.sparsity is not None and abs(self.sparsity - pat.n / pat.m) > 1e-9:
                raise UserError(f"an {pat} pattern means sparsity {pat.n / pat.m:g}, not {self.sparsity}")
        _positive_int(self.blocksize, "blocksize")
        if not (self.damp > 0 and math.isfinite(self.damp)):
            raise UserError(f"damp must be a positive number, got {self.damp}")

    @property
    def target(self) -> float | None:
        pat = parse_pattern(self.pattern)
        return pat.fixed_sparsity if pat.kind == "nm" else self.sparsity


@dataclass
class Schedule:
    values: list[float]
    name: str
    target: float
    meta: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"schedule": self.values, "name": self.name, "target": self.target,
                "mean": sum(self.values) / len(self.values), "n_layers": len(self.values), **self.meta}

    @classmethod
    def from_dict(cls, d: dict) -> "Schedule":
        meta = {k: v for k, v in d.items() if k not in ("schedule", "name", "target", "mean", "n_layers")}
        return cls(list(d["schedule"]), d["name"], d["target"], meta)
