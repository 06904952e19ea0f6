"""The public compute API: models and texts in, tensors and tables out. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Sequence

import torch
from tqdm.auto import tqdm

from .anatomy import Anatomy, discover
from .batching import make_batches
from .density import DEFAULT_GAMMAS, check_gammas, layer_density
from .engine import Engine
from .errors import UserError
from .experts import ExpertUsage, expert_density
from .reducers import MeanMap, SampleStats
from .similarity import llmdcos_from_gram
from .targets import get_target

# The reducers an analysis can run, each paid for only when asked:
#   mean_map      Σ_i A_i per parameter -> the mean map, density (Finding 1), pruning scores
#   norms         per sample and layer ‖A‖ and ΣA
#   grams         per batch, the exact LLMDcos of every pair in it (in-batch Gram)
#   fingerprints  per sample and layer, a count sketch (needs sketch_dim > 0)
#   experts       per sample, MoE layer and expert: routed tokens and activation mass
REDUCERS = ("mean_map", "norms", "grams", "fingerprints", "experts")

# 2**16 buckets per layer: standard error of a fingerprint LLMDcos ≈ sqrt((1+cos²)/m)
# ≈ 0.0044 at cos 0.5; measured on SmolLM2 pairs, 99% of |errors| ≤ 0.01 (README).
DEFAULT_SKETCH_DIM = 2**16


@dataclass(frozen=True)
class ActivationConfig:
    """Everything that decides the numbers of one activation pass."""

    target: str = "max_logit"
    batch_size: int = 8
    max_length: int | None = None  # None: the model's context length
    gammas: tuple[float, ...] = DEFAULT_GAMMAS
    sketch_dim: int = DEFAULT_SKETCH_DIM  # 0 disables fingerprints
    seed: int = 0
    stats_device: str | None = None  # where the mean map lives (None: beside each weight)
    # batch texts of similar length together (less padding); in-batch LLMDcos then pairs
    # neighbours in length instead of neighbours in order, every other statistic is unchanged
    sort_by_length: bool = False
    # run without the block parameters paramact cannot attribute (Anatomy.coverage records them)
    # instead of refusing the model
    allow_uncovered: bool = False
    reducers: tuple[str, ...] = REDUCERS  # what to compute (see REDUCERS); target values always

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


def analyze(
    model,
    tokenizer,
    texts: Sequence[str],
    config: ActivationConfig = ActivationConfig(),
    continuations: Sequence[str] | None = None,
    progress: bool = False,
    on_fingerprints=None,
    checkpoint=None,
    extra_state: dict | None = None,
    shard: tuple[int, int] = (0, 1),
    merge=None,
    anatomy: Anatomy | None = None,
) -> Analysis:
    """Run the engine over `texts` and reduce the statistics config.reducers asks for.

    on_fingerprints: optional callable(sample_ids, [B, L, m] tensor) that receives each
    batch's fingerprints instead of keeping them in memory (Analysis.fingerprints is then None).
    anatomy: the model's (discovered here when not given).
    """
    if len(texts) == 0:
        raise UserError("no texts to analyse (the dataset is empty)")
    target = get_target(config.target)
    if target.needs_continuation and continuations is None:
        raise UserError(f"target {config.target} needs a continuation (answer) per text")
    anatomy = anatomy or discover(model, config.allow_uncovered)
    max_len = config.max_length or anatomy.context_length
    batches, n_trunc = make_batches(tokenizer, texts, config.batch_size, continuations, max_len,
                                     config.sort_by_length, anatomy.prepend_bos)
    mean = MeanMap(anatomy, config.stats_device) if config.wants("mean_map") else None
    sketch = config.sketch_dim if config.wants("fingerprints") else 0
    stats = SampleStats(anatomy, sketch, config.seed, grams=config.wants("grams"), on_fingerprints=on_fingerprints,
                        norms=config.wants("norms"))
    usage = ExpertUsage(anatomy) if anatomy.experts and config.wants("experts") else None
    parts = {"mean": mean, "stats": stats, "experts": usage, **(extra_state or {})}
    parts = {k: v for k, v in parts.items() if v is not None}
    start = checkpoint.load(parts) if checkpoint is not None else 0
    rank, world = shard
    todo = [k for k in range(start, len(batches)) if k % world == rank]
    sinks = [s for s in (mean, stats, usage) if s is not None]
    with Engine(model, anatomy) as eng:
        for k in tqdm(todo, desc="activations", unit="batch", disable=not progress, initial=0):
            stats.add_values(eng.run(batches[k], target, sinks))
            if checkpoint is not None and checkpoint.due(k + 1, len(batches)):
                checkpoint.save(k + 1, parts)
    if merge is not None:  # sharded run: combine every process's reducers
        merge(mean, stats, *([usage] if usage is not None else []))
    mmap = mean.mean(in_place=True) if mean is not None else {}
    return Analysis(
        anatomy=anatomy,
        mean_map=mmap,
        gammas=config.gammas,
        norms=stats.norms(),
        sums=stats.sums(),
        fingerprints=stats.normalized_fingerprints() if sketch and on_fingerprints is None else None,
        batch_llmdcos=[(ids, llmdcos_from_gram(g).float()) for ids, g in stats.grams],
        target_values=stats.target_values(),
        n_truncated=n_trunc,
        meta={"max_length": max_len, "n_samples": len(texts), "batches": [b.index for b in batches]},
        expert_tokens=usage.tokens() if usage is not None else None,
        expert_mass=usage.mass() if usage is not None else None,
    )


def activation_map(
    model, tokenizer, texts: Sequence[str], target: str = "max_logit", batch_size: int = 8, continuations=None
) -> dict[str, torch.Tensor]:
    """Mean |A| per parameter name over `texts` (float32), for every decoder-block weight, shaped
    like the parameter (a fused [E, out, in] expert tensor gives a 3-D map)."""
    cfg = ActivationConfig(target=target, batch_size=batch_size, reducers=("mean_map",))
    return analyze(model, tokenizer, texts, cfg, continuations).mean_map


def pair_similarity(
    model, tokenizer, pairs: Sequence[tuple[str, str]], batch_size: int = 8, target: str = "max_logit",
    shard: tuple[int, int] = (0, 1), merge=None, progress: bool = False, checkpoint=None,
    allow_uncovered: bool = False,
) -> torch.Tensor:
    """Exact LLMDcos of each text pair, per layer: [n_pairs, n_layers].

    Both texts of a pair go into the same batch, so the in-batch Gram gives their
    LLMDcos exactly; batch_size counts texts (rounded down to an even number, min 2).
    shard/merge: this process's (rank, world) and the merge of every process's reducers
    (distributed.merge) under torchrun; every process returns the full result.
    checkpoint: a runs.Checkpoint that saves (and, resuming, restores) the reducer state.
    """
    if not pairs:
        raise UserError("no pairs given")
    texts = [t for p in pairs for t in p]
    per_batch = max(2, batch_size - batch_size % 2)
    cfg = ActivationConfig(target=target, batch_size=per_batch, allow_uncovered=allow_uncovered,
                           reducers=("grams",))
    res = analyze(model, tokenizer, texts, cfg, shard=shard, merge=merge, progress=progress, checkpoint=checkpoint)
    out = torch.empty(len(pairs), res.anatomy.n_layers)
    for ids, cos in res.batch_llmdcos:
        for j in range(0, len(ids), 2):
            out[ids[j] // 2] = cos[:, j, j + 1]
    return out
