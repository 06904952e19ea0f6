"""The public compute API: models and texts in, tensors and tables out. No I/O here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import torch
from tqdm.auto import tqdm

from .anatomy import Anatomy, discover
from .batching import make_batches
from .density import DEFAULT_GAMMAS, check_gammas, layer_density
from .engine import Engine
from .errors import UserError
from .experts import ExpertUsage, expert_density
from .fields import option
from .reducers import MeanMap, SampleStats
from .similarity import llmdcos_from_gram, llmdcos_from_partner
from .targets import TARGETS, get_target

# The reducers an analysis can run, each paid for only when asked:
#   mean_map      Σ_i A_i per parameter -> the mean map, density (Finding 1), pruning scores
#   norms         per sample and layer ‖A‖ and ΣA
#   grams         per batch, the exact LLMDcos of every pair in it (in-batch Gram)
#   pairs         the exact LLMDcos of texts 2p and 2p+1 (a pair pass: each pair side by side in a batch)
#   fingerprints  per sample and layer, a count sketch (needs sketch_dim > 0)
#   experts       per sample, MoE layer and expert: routed tokens and activation mass
REDUCERS = ("mean_map", "norms", "grams", "pairs", "fingerprints", "experts")
# the default: all of them but "pairs", which only a pair pass's batches allow
DEFAULT_REDUCERS = tuple(r for r in REDUCERS if r != "pairs")

# 2**16 buckets per layer: standard error of a fingerprint LLMDcos ≈ sqrt((1+cos²)/m)
# ≈ 0.0044 at cos 0.5; measured on SmolLM2 pairs, 99% of |errors| ≤ 0.01 (README).
DEFAULT_SKETCH_DIM = 2**16


@dataclass(frozen=True)
class ActivationConfig:
    """Everything that decides the numbers of one activation pass."""

    target: str = option("max_logit", "D(s), the scalar whose gradient is attributed", choices=lambda: sorted(TARGETS))
    batch_size: int = option(8, "texts per forward/backward pass")
    max_length: int | None = option(None, "truncate each text to this many tokens (default: the model's context)")
    gammas: tuple[float, ...] = option(DEFAULT_GAMMAS, "activation thresholds γ, comma-separated")
    sketch_dim: int = option(DEFAULT_SKETCH_DIM, "fingerprint buckets per layer (a power of two; 0: no fingerprints)")
    sketch_seed: int = option(0, "fingerprint hash seed")
    stats_device: str | None = option(
        None,
        "where the mean map (4 bytes per weight) lives, e.g. cpu to spare accelerator memory "
        "(default: beside each weight)",
    )
    sort_by_length: bool = option(
        False,
        "batch texts of similar length together: less padding, the same statistics (in-batch LLMDcos then "
        "pairs length neighbours)",
    )
    allow_uncovered: bool = option(
        False,
        "run without the block parameters paramact cannot attribute (default: refuse the model with one line "
        "naming the first); results.json records the coverage",
    )
    reducers: tuple[str, ...] = option(
        DEFAULT_REDUCERS, "what to compute (see REDUCERS); target values always", cli=False
    )

    def wants(self, name: str) -> bool:
        return name in self.reducers and (name != "fingerprints" or self.sketch_dim > 0)

    def __post_init__(self) -> None:
        unknown = [r for r in self.reducers if r not in REDUCERS]
        if unknown:
            raise UserError(f"unknown reducer {unknown[0]!r}; choose among: {', '.join(REDUCERS)}")
        get_target(self.target)
        check_gammas(self.gammas)
        if self.batch_size < 1:
            raise UserError(f"batch size must be >= 1, got {self.batch_size}")
        d = self.sketch_dim
        if d < 0 or (d and (d < 2 or d & (d - 1))):
            raise UserError(f"sketch dimension must be 0 (off) or a power of two >= 2, got {d}")
        if self.max_length is not None and self.max_length < 2:
            raise UserError(f"max length must be >= 2 tokens, got {self.max_length}")
        from .models import check_device

        check_device(self.stats_device, "--stats-device")


@dataclass
class Analysis:
    """What one pass over a list of texts yields."""

    anatomy: Anatomy
    mean_map: dict[str, torch.Tensor]  # HF parameter name -> mean |A|, float32
    gammas: tuple[float, ...]
    norms: torch.Tensor | None  # [N, L] ‖A_i‖ per layer (reducer "norms", "grams" or "fingerprints")
    sums: torch.Tensor | None  # [N, L] Σ A_i per layer
    fingerprints: torch.Tensor | None  # [N, L, m], f_i·f_j ≈ LLMDcos(i, j)
    batch_llmdcos: list[tuple[list[int], torch.Tensor]]  # (sample ids, [L, B, B]) exact; [] without grams
    pair_llmdcos: torch.Tensor | None  # [N / 2, L] exact LLMDcos of texts 2p and 2p+1 (reducer "pairs")
    target_values: torch.Tensor  # [N] D(s_i)
    n_truncated: int = 0
    meta: dict = field(default_factory=dict)
    # mixture-of-experts models (None for dense ones): [N, MoE layers, experts] per sample
    expert_tokens: torch.Tensor | None = None  # real tokens routed to each expert
    expert_mass: torch.Tensor | None = None  # Σ A over each expert's matrices

    @cached_property
    def layers(self) -> list[dict]:
        """Per-layer density rows (counts above each γ, mass shares), computed on first use."""
        return layer_density(self.mean_map, self.anatomy, self.gammas)

    @cached_property
    def expert_layers(self) -> list[dict]:
        """Per MoE layer, per expert: params, mass, counts above each γ, mass_share_50."""
        return expert_density(self.mean_map, self.anatomy, self.gammas) if self.mean_map else []


@dataclass
class Prepared:
    """Texts tokenized into the batches of one pass (batch k holds sample ids batches[k].index)."""

    anatomy: Anatomy
    batches: list
    n_texts: int
    n_truncated: int
    max_length: int


@dataclass
class Reducers:
    """The reducers one pass feeds, as `config.reducers` asks; `parts` is what a checkpoint saves."""

    mean: MeanMap | None
    stats: SampleStats
    experts: ExpertUsage | None

    @property
    def sinks(self) -> list:
        return [s for s in (self.mean, self.stats, self.experts) if s is not None]

    @property
    def parts(self) -> dict:
        return {
            k: v for k, v in (("mean", self.mean), ("stats", self.stats), ("experts", self.experts)) if v is not None
        }


def prepare(
    model,
    tokenizer,
    texts: Sequence[str],
    config: ActivationConfig,
    continuations: Sequence[str] | None = None,
    anatomy: Anatomy | None = None,
) -> Prepared:
    """Check the inputs and tokenize `texts` into batches (anatomy: the model's, discovered when not given)."""
    if len(texts) == 0:
        raise UserError("no texts to analyse (the dataset is empty)")
    if get_target(config.target).needs_continuation and continuations is None:
        raise UserError(f"target {config.target} needs a continuation (answer) per text")
    anatomy = anatomy or discover(model, config.allow_uncovered)
    max_len = config.max_length or anatomy.context_length
    batches, n_trunc = make_batches(
        tokenizer, texts, config.batch_size, continuations, max_len, config.sort_by_length, anatomy.prepend_bos
    )
    return Prepared(anatomy, batches, len(texts), n_trunc, max_len)


def new_reducers(anatomy: Anatomy, config: ActivationConfig, on_fingerprints=None) -> Reducers:
    """Empty reducers for what config.reducers asks (target values are always kept).

    on_fingerprints: optional callable(sample_ids, [B, L, m] float32) that receives each batch's
    fingerprints instead of keeping them in memory."""
    mean = MeanMap(anatomy, config.stats_device) if config.wants("mean_map") else None
    sketch = config.sketch_dim if config.wants("fingerprints") else 0
    stats = SampleStats(
        anatomy,
        sketch,
        config.sketch_seed,
        grams=config.wants("grams"),
        on_fingerprints=on_fingerprints,
        norms=config.wants("norms"),
        pairs=config.wants("pairs"),
    )
    usage = ExpertUsage(anatomy) if anatomy.experts and config.wants("experts") else None
    return Reducers(mean, stats, usage)


def reduce(
    model,
    anatomy: Anatomy,
    batches: Sequence,
    target: str,
    reducers: Reducers,
    progress: bool = False,
    after_batch=None,
) -> Reducers:
    """Feed `batches` (all of a pass, or one process's share) through the engine into `reducers`.

    after_batch: optional callable(i), called after the i-th batch of `batches` (e.g. to checkpoint)."""
    tgt = get_target(target)
    with Engine(model, anatomy) as eng:
        for i, batch in enumerate(tqdm(batches, desc="activations", unit="batch", disable=not progress)):
            reducers.stats.add_values(eng.run(batch, tgt, reducers.sinks))
            if after_batch is not None:
                after_batch(i)
    return reducers


def finalize(prepared: Prepared, reducers: Reducers, config: ActivationConfig) -> Analysis:
    """The Analysis of a finished pass (the mean map is divided in place)."""
    stats, usage = reducers.stats, reducers.experts
    sketch = stats.sketch is not None and stats.on_fingerprints is None  # kept in memory, not streamed
    return Analysis(
        anatomy=prepared.anatomy,
        mean_map=reducers.mean.mean(in_place=True) if reducers.mean is not None else {},
        gammas=config.gammas,
        norms=stats.norms(),
        sums=stats.sums(),
        fingerprints=stats.normalized_fingerprints() if sketch else None,
        batch_llmdcos=[(ids, llmdcos_from_gram(g).float()) for ids, g in stats.grams],
        pair_llmdcos=llmdcos_from_partner(stats.partner_products(), stats.norms()) if stats.keep_pairs else None,
        target_values=stats.target_values(),
        n_truncated=prepared.n_truncated,
        meta={
            "max_length": prepared.max_length,
            "n_samples": prepared.n_texts,
            "batches": [b.index for b in prepared.batches],
        },
        expert_tokens=usage.tokens() if usage is not None else None,
        expert_mass=usage.mass() if usage is not None else None,
    )


def analyze(
    model,
    tokenizer,
    texts: Sequence[str],
    config: ActivationConfig = ActivationConfig(),
    continuations: Sequence[str] | None = None,
    progress: bool = False,
    on_fingerprints=None,
    anatomy: Anatomy | None = None,
) -> Analysis:
    """Run the engine over `texts` and reduce the statistics config.reducers asks for.

    on_fingerprints: optional callable(sample_ids, [B, L, m] tensor) that receives each
    batch's fingerprints instead of keeping them in memory (Analysis.fingerprints is then None).
    anatomy: the model's (discovered here when not given).
    """
    prep = prepare(model, tokenizer, texts, config, continuations, anatomy)
    red = reduce(
        model, prep.anatomy, prep.batches, config.target, new_reducers(prep.anatomy, config, on_fingerprints), progress
    )
    return finalize(prep, red, config)


def activation_map(
    model, tokenizer, texts: Sequence[str], target: str = "max_logit", batch_size: int = 8, continuations=None
) -> dict[str, torch.Tensor]:
    """Mean |A| per parameter name over `texts` (float32), for every decoder-block weight, shaped
    like the parameter (a fused [E, out, in] expert tensor gives a 3-D map)."""
    cfg = ActivationConfig(target=target, batch_size=batch_size, reducers=("mean_map",))
    return analyze(model, tokenizer, texts, cfg, continuations).mean_map


def pair_similarity(
    model,
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 8,
    target: str = "max_logit",
    allow_uncovered: bool = False,
) -> torch.Tensor:
    """Exact LLMDcos of each text pair, per layer: [n_pairs, n_layers].

    Both texts of a pair go into the same batch, side by side, so the product of their A vectors
    gives their LLMDcos exactly; batch_size counts texts (rounded down to an even number, min 2).
    """
    texts, cfg = pair_pass(pairs, batch_size, target, allow_uncovered)
    return analyze(model, tokenizer, texts, cfg).pair_llmdcos


def pair_pass(
    pairs: Sequence[tuple[str, str]], batch_size: int, target: str, allow_uncovered: bool = False
) -> tuple[list[str], ActivationConfig]:
    """The texts (a, b, a, b, ...) and the config of a pass that puts each pair in one batch."""
    if not pairs:
        raise UserError("no pairs given")
    per_batch = max(2, batch_size - batch_size % 2)
    cfg = ActivationConfig(target=target, batch_size=per_batch, allow_uncovered=allow_uncovered, reducers=("pairs",))
    return [t for p in pairs for t in p], cfg
