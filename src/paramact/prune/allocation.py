"""The statistics behind the layer-wise allocations, and the allocations themselves.

build_schedule turns a ScheduleConfig and a target into per-layer sparsities, measuring what the
allocation needs (activation counts, OWL outlier ratios, AlphaPruning's spectra) unless given.
calibration_mean_map is the `activation` pruning method's weight map. Under torchrun each process
measures its share and the sums are merged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch

from .. import distributed
from ..anatomy import discover
from ..api import ActivationConfig
from ..context import RunContext
from ..errors import UserError
from .config import Schedule, ScheduleConfig
from .driver import sequential
from .masks import check_sparsity
from .schedules import (
    activation_schedule,
    alphapruning_schedule,
    atp_schedule,
    density_gamma,
    density_measure,
    file_schedule,
    hill_alpha,
    owl_schedule,
    paper_schedule,
    read_schedule_file,
    uniform_schedule,
    zscores,
)
from .scores import MatrixContext, wanda_score

log = logging.getLogger(__name__)


# ---- statistics behind the schedules -------------------------------------------------------------
# shard = (rank, world): under torchrun every process measures its own share of the batches
# and the sums are merged, so every process ends with the statistics of one process.

Shard = tuple[int, int]


def own_batches(batches: Sequence[torch.Tensor], shard: Shard) -> list[torch.Tensor]:
    """This process's calibration batches (batch k goes to rank k % world)."""
    rank, world = shard
    if len(batches) < world:
        raise UserError(
            f"{len(batches)} calibration batches cannot be shared by {world} processes; "
            "use a smaller --batch-size or more --calibration-samples"
        )
    return list(batches[rank::world])


def _mean_map_pass(model, tokenizer, texts, cfg: ActivationConfig, progress: bool, shard: Shard):
    """The engine over `texts`, this process's share of the batches, merged over the processes."""
    ctx = RunContext(rank=shard[0], world=shard[1], checkpoint_every=0, progress=progress)
    return distributed.run_pass(ctx, model, tokenizer, texts, cfg, None, None)[0]


def _reduce(shard: Shard):
    return distributed.reduce_input_stats if shard[1] > 1 else None


def activation_counts(
    model,
    tokenizer,
    sc: ScheduleConfig,
    batch_size: int = 8,
    data_dir: str | None = None,
    progress: bool = False,
    shard: Shard = (0, 1),
) -> dict:
    """Per-layer activation statistics of sc.data measured by the engine, and N_i per sc.density."""
    from ..data import analysis_prompts
    from ..density import DEFAULT_GAMMAS

    texts, source = analysis_prompts(
        sc.data, sc.samples, sc.seed, tokenizer=tokenizer, seqlen=sc.seqlen, data_dir=data_dir
    )
    g = density_gamma(sc.density)
    gammas = tuple(sorted(set(DEFAULT_GAMMAS + ((g,) if g else ()))))
    t0 = time.perf_counter()
    cfg = ActivationConfig(target=sc.target, batch_size=batch_size, gammas=gammas, reducers=("mean_map",))
    res = _mean_map_pass(model, tokenizer, texts, cfg, progress, shard)
    label, measure = density_measure(sc.density)
    rows = res.layers
    return {
        "counts": [measure(r) for r in rows],
        "density": sc.density,
        "density_label": label,
        "layers": rows,
        "source": source,
        "seconds": time.perf_counter() - t0,
        "target": sc.target,
    }


def owl_ratios(
    model, batches: Sequence[torch.Tensor], m: float = 5.0, progress: bool = False, shard: Shard = (0, 1)
) -> list[float]:
    """Per layer: the share of Wanda scores |W|·‖X‖ above m × the layer's mean score (dense model).

    Under torchrun `batches` are every batch; each process collects its own share."""
    ratios: list[float] = []

    def on_block(i, weights, stats) -> bool:
        scores = []
        for w in weights:
            W = w.oriented().detach().float()
            scores.append(wanda_score(W, MatrixContext(w.key, stats[w.key])).flatten())
        s = torch.cat(scores)
        ratios.append(float((s > m * s.mean()).double().mean()))
        return False

    sequential(
        model,
        own_batches(batches, shard),
        on_block,
        "norms",
        progress,
        desc="OWL outlier ratios",
        reduce_stats=_reduce(shard),
    )
    return ratios


def layer_alphas(model) -> list[float]:
    """AlphaPruning's layer quality: per block, the mean Hill exponent of its matrices' spectra
    (eigenvalues of WᵀW = squared singular values; one value per expert slice of fused experts)."""
    out = []
    for layer in discover(model).layers:
        vals = []
        for w in layer:
            sv = torch.linalg.svdvals(w.oriented().detach().double())
            vals.append(hill_alpha((sv * sv).cpu().numpy()))
        out.append(float(sum(vals) / len(vals)))
    return out


def build_schedule(
    model,
    tokenizer,
    sc: ScheduleConfig,
    target: float | None,
    *,
    batches=None,
    counts: dict | None = None,
    ratios: list[float] | None = None,
    batch_size: int = 8,
    data_dir: str | None = None,
    progress: bool = False,
    shard: Shard = (0, 1),
) -> Schedule:
    """The per-layer sparsities of schedule sc at `target`; statistics are measured unless given."""
    L = discover(model).n_layers
    if sc.name == "file":
        values = read_schedule_file(sc.file)
        vals = file_schedule(values, L, target, sc.file)
        return Schedule(vals, "file", sum(vals) / L, {"file": str(sc.file)})
    if target is None:
        raise UserError("give --sparsity (the target mean sparsity)")
    target = check_sparsity(target, "target sparsity")
    if sc.name == "uniform":
        return Schedule(uniform_schedule(L, target), "uniform", target)
    if sc.name == "paper":
        vals, meta = paper_schedule(sc.paper_model, L, target)
        return Schedule(vals, "paper", target, meta)
    if sc.name == "atp":
        if sc.atp_step is None:
            raise UserError("ATP's step is searched while pruning (`paramact prune`); here give --atp-step")
        return Schedule(atp_schedule(L, target, sc.atp_step), "atp", target, {"step": sc.atp_step})
    if sc.name == "alphapruning":
        alphas = layer_alphas(model)
        vals = alphapruning_schedule(alphas, target, sc.epsilon)
        return Schedule(vals, "alphapruning", target, {"epsilon": sc.epsilon, "layer_alpha": alphas})
    if sc.name == "activation":
        if counts is None:
            counts = activation_counts(model, tokenizer, sc, batch_size, data_dir, progress, shard)
        n = counts["counts"]
        vals = activation_schedule(n, target, sc.alpha, sc.beta)
        meta = {
            "alpha": sc.alpha,
            "beta": sc.beta,
            "density": counts["density"],
            "density_label": counts["density_label"],
            "N": n,
            "z": [float(x) for x in zscores(n)],
            "data": counts["source"],
            "activation_target": counts.get("target"),
            "samples": sc.samples,
            "seqlen": sc.seqlen,
            "seed": sc.seed,
        }
        shares = [x / r["params"] for x, r in zip(n, counts["layers"])]
        if len(set(n)) == 1:
            meta["warning"] = "every layer has the same N_i: z = 0, only the α/i term shapes the schedule"
            log.warning("activation schedule: every layer has the same N (%s); try another --density", n[0])
        elif counts["density"].startswith("gamma:") and min(shares) > 0.95:
            meta["warning"] = (
                f"γ saturates: {100 * min(shares):.1f}-{100 * max(shares):.1f}% of every layer's weights "
                "are above it, so z reflects tiny differences; a larger γ or mass50 may suit this model"
            )
            log.warning("activation schedule: %s", meta["warning"])
        return Schedule(vals, "activation", target, meta)
    if sc.name == "owl":
        if ratios is None:
            if batches is None:
                raise ValueError("owl schedule needs calibration batches or ratios")
            ratios = owl_ratios(model, batches, sc.owl_m, progress, shard)
        vals = owl_schedule(ratios, target, sc.owl_lambda)
        return Schedule(vals, "owl", target, {"lambda": sc.owl_lambda, "M": sc.owl_m, "outlier_ratio": ratios})
    raise UserError(f"unknown schedule {sc.name!r}")  # pragma: no cover - guarded by ScheduleConfig


def calibration_mean_map(
    model,
    tokenizer,
    windows: Sequence[Sequence[int]],
    batch_size: int = 8,
    target: str = "max_logit",
    progress: bool = False,
    shard: Shard = (0, 1),
) -> dict[str, torch.Tensor]:
    """The weights of the `activation` pruning method: the engine's mean |A| of the dense model over
    the calibration windows (decoded to text), per parameter name. Under torchrun each process
    measures its share of the windows and the maps are merged."""
    texts = [tokenizer.decode(w) for w in windows]
    cfg = ActivationConfig(target=target, batch_size=batch_size, reducers=("mean_map",))
    return _mean_map_pass(model, tokenizer, texts, cfg, progress, shard).mean_map
