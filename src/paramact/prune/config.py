"""Typed configurations of a pruning run: calibration, schedule, method (checked on creation)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import UserError
from ..evaluation import EvalConfig
from ..fields import DATA_DIR_HELP, option
from ..models import ModelConfig
from .masks import check_sparsity, parse_pattern
from .schedules import SCHEDULES, density_measure, get_schedule
from .scores import METHODS, get_method


def _positive_int(v, what: str) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise UserError(f"{what} must be a positive integer, got {v!r}")


# the target mean sparsity when none is given (an N:M pattern fixes N/M, a schedule file its own mean)
DEFAULT_SPARSITY = 0.5
SPARSITY_HELP = (
    f"target mean sparsity in [0, 1) (default {DEFAULT_SPARSITY}; an N:M pattern: N/M; the file "
    "schedule: the file's mean)"
)


@dataclass(frozen=True)
class CalibrationConfig:
    """Calibration token windows. The paper used C4, 128 × 2048 tokens; the default fits a CPU."""

    dataset: str = option("c4", "calibration data: c4, wikitext2, mmlu, siqa, ...", flag="calibration")
    nsamples: int = option(
        32, "calibration sequences (the paper: 128)", flag="calibration-samples", aliases=("nsamples",)
    )
    seqlen: int = option(
        256, "tokens per calibration sequence (the paper: the context)", flag="calibration-seqlen", aliases=("seqlen",)
    )
    seed: int = option(0, "seed of the calibration draw", flag="calibration-seed")
    split: str | None = option(
        None, "calibration split (default: the dataset's calibration split)", flag="calibration-split"
    )
    batch_size: int = option(8, "calibration sequences per forward")
    data_dir: str | None = option(None, DATA_DIR_HELP)

    def __post_init__(self) -> None:
        _positive_int(self.nsamples, "calibration samples")
        _positive_int(self.seqlen, "calibration seqlen")
        _positive_int(self.batch_size, "batch size")


@dataclass(frozen=True)
class ScheduleConfig:
    name: str = option("uniform", "layer-wise sparsity schedule", flag="schedule", choices=lambda: list(SCHEDULES))
    alpha: float = option(2.0, "activation schedule: N'_i = σ(z_i + α/i)")
    beta: float = option(0.2, "activation schedule: S_i = S + βS(1 − N'_i·L/ΣN')")
    density: str = option(
        "gamma:2e-06", "activation schedule N_i: gamma:<γ> (count above γ), mass50, mass90, above_mean"
    )
    data: str = option("c4", "activation schedule: data whose activation counts give N_i", flag="schedule-data")
    samples: int = option(64, "activation schedule: samples", flag="schedule-samples")
    seqlen: int = option(256, "activation schedule: tokens per corpus window", flag="schedule-seqlen")
    seed: int = option(1, "activation schedule: seed of the sample draw", flag="schedule-seed")
    target: str = option("max_logit", "activation schedule: D(s)", cli=False)
    epsilon: float = option(0.3, "AlphaPruning: layer sparsities span S·(1 ± ε) before rescaling to the target")
    atp_step: float | None = option(
        None,
        "ATP: sparsity added per layer of depth (S_i = S + δ·(i − (L − 1)/2)); default: searched on "
        "held-out calibration perplexity while pruning",
    )
    atp_grid: int = option(6, "ATP search: candidate steps, evenly from 0 below the largest valid step")
    atp_held_out: int = option(8, "ATP search: held-out calibration windows scored per candidate")
    owl_lambda: float = option(0.08, "OWL: sparsities span target ± λ")
    owl_m: float = option(5.0, "OWL: outlier = score > M × layer mean")
    paper_model: str | None = option(None, "paper schedule: llama_7b, llama2_7b, llama2_13b, llama3_8b")
    file: str | None = option(None, "file schedule: a JSON list or a schedule.json", flag="schedule-file")

    def __post_init__(self) -> None:
        spec = get_schedule(self.name)
        for k in ("alpha", "beta", "epsilon", "atp_step", "owl_lambda", "owl_m"):
            v = getattr(self, k)
            if v is None and k == "atp_step":
                continue
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise UserError(f"schedule option {k} must be a finite number, got {v!r}")
        if not 0 <= self.epsilon < 1:
            raise UserError(f"AlphaPruning's ε must be in [0, 1), got {self.epsilon}")
        if self.beta < 0 or self.owl_lambda < 0 or self.owl_m <= 0:
            raise UserError("β and λ must be >= 0 and M > 0")
        if spec.name == "activation":
            density_measure(self.density)
            _positive_int(self.samples, "schedule samples")
            _positive_int(self.seqlen, "schedule seqlen")
        _positive_int(self.atp_grid, "ATP grid")
        _positive_int(self.atp_held_out, "ATP held-out windows")
        if spec.name == "paper" and not self.paper_model:
            from .paper_lists import PAPER_LISTS

            raise UserError(f"schedule 'paper' needs --paper-model, one of: {', '.join(PAPER_LISTS)}")
        if spec.name == "file" and not self.file:
            raise UserError("schedule 'file' needs --schedule-file PATH")


@dataclass(frozen=True)
class PruneConfig:
    method: str = option("wanda", "pruning score", choices=lambda: list(METHODS))
    sparsity: float | None = option(None, SPARSITY_HELP)
    pattern: str = option("row", "row (per output row), matrix, or N:M such as 2:4, 4:8 (N zeros per M)")
    schedule: ScheduleConfig = option(factory=ScheduleConfig)
    calibration: CalibrationConfig = option(factory=CalibrationConfig)
    blocksize: int = option(128, "sparsegpt column block")
    damp: float = option(0.01, "sparsegpt damping λ, a fraction of mean diag(H)")

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
        """The target mean sparsity: N/M for an N:M pattern, else resolve_sparsity."""
        pat = parse_pattern(self.pattern)
        return pat.fixed_sparsity if pat.kind == "nm" else resolve_sparsity(self.sparsity, self.schedule)


def resolve_sparsity(sparsity: float | None, schedule: ScheduleConfig) -> float | None:
    """The one place the default sparsity is decided: the given one, a schedule file's own mean
    (None here), or DEFAULT_SPARSITY."""
    if sparsity is not None or schedule.name == "file":
        return sparsity
    return DEFAULT_SPARSITY


@dataclass
class Schedule:
    values: list[float]
    name: str
    target: float
    meta: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "schedule": self.values,
            "name": self.name,
            "target": self.target,
            "mean": sum(self.values) / len(self.values),
            "n_layers": len(self.values),
            **self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Schedule:
        meta = {k: v for k, v in d.items() if k not in ("schedule", "name", "target", "mean", "n_layers")}
        return cls(list(d["schedule"]), d["name"], d["target"], meta)


@dataclass(frozen=True)
class PruneRun:
    """`paramact prune`: one model pruned layer by layer, then evaluated."""

    model: ModelConfig = option(factory=ModelConfig)
    prune: PruneConfig = option(factory=PruneConfig)
    eval_tasks: tuple[str, ...] = option(
        (), "tasks to evaluate after pruning (see `paramact eval --help`)", flag="eval"
    )
    eval: EvalConfig = option(factory=EvalConfig)
    save_model: bool = option(False, "also save the pruned model to OUT/model (save_pretrained)")
    checkpoint: bool = option(
        True,
        "save each pruned block to OUT/checkpoint (masks, and SparseGPT's rewritten "
        "weights); without it a killed run starts over",
    )


@dataclass(frozen=True)
class ScheduleRun:
    """`paramact schedule`: a layer-wise sparsity schedule, without pruning."""

    model: ModelConfig = option(factory=ModelConfig)
    schedule: ScheduleConfig = option(factory=lambda: ScheduleConfig(name="activation"))
    sparsity: float | None = option(None, SPARSITY_HELP)
    calibration: CalibrationConfig = option(factory=CalibrationConfig)
    format: str = option(
        "table",
        "table: the schedule (saved as schedule.json with --out); llmcompressor: also an llm-compressor "
        "recipe pruning the blocks at these sparsities (OUT/recipe.yaml, or printed without --out)",
        choices=("table", "llmcompressor"),
    )
    method: str = option(
        "wanda", "the recipe's pruning modifier (--format llmcompressor)", choices=("wanda", "sparsegpt")
    )

    def __post_init__(self) -> None:
        if self.sparsity is not None:
            check_sparsity(self.sparsity)

    @property
    def target(self) -> float | None:
        return resolve_sparsity(self.sparsity, self.schedule)
