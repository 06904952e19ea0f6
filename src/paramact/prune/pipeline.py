"""The library entry points of pruning: calibration -> schedule -> driver -> outcome.

Nothing here prints or writes files; commands.py and outputs.py do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import torch

from .. import distributed
from ..anatomy import discover
from ..api import ActivationConfig
from ..context import RunContext
from ..errors import UserError
from .atp import search_step
from .config import CalibrationConfig, PruneConfig, Schedule, ScheduleConfig
from .driver import PruneOutcome, prune_model, sequential, token_batches
from .masks import check_sparsity, parse_pattern
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
from .scores import MatrixContext, get_method, wanda_score

log = logging.getLogger(__name__)


# ---- calibration ---------------------------------------------------------------------------------


def calibration_windows(model, tokenizer, cfg: CalibrationConfig) -> tuple[list[list[int]], dict]:
    """cfg.nsamples windows of exactly cfg.seqlen token ids, and their recorded source."""
    from ..data import calibration

    anatomy = discover(model)
    ctx = anatomy.context_length
    if ctx is not None and cfg.seqlen > ctx:
        raise UserError(f"calibration seqlen {cfg.seqlen} exceeds the model's context length {ctx}")
    windows, source = calibration(
        cfg.dataset, tokenizer, cfg.nsamples, cfg.seqlen, cfg.seed, split=cfg.split, data_dir=cfg.data_dir
    )
    bos = getattr(tokenizer, "bos_token_id", None)
    if anatomy.prepend_bos and bos is not None:
        windows = [[bos, *list(w[:-1])] for w in windows]  # the model expects BOS; keep seqlen
        source["bos"] = "prepended (last token dropped)"
    return [list(map(int, w)) for w in windows], {**source, "config": asdict(cfg)}


def held_out_windows(
    model, tokenizer, cfg: CalibrationConfig, n: int, calibration: Sequence[Sequence[int]]
) -> list[list[int]]:
    """n windows of the calibration's data, seqlen and seed that are not calibration windows: the
    same seeded draw, extended (a document-window draw's first windows are the calibration's)."""
    have = {tuple(w) for w in calibration}
    for extra in (n, 4 * n + 8):
        more, _ = calibration_windows(model, tokenizer, replace(cfg, nsamples=cfg.nsamples + extra))
        fresh = [w for w in more if tuple(w) not in have]
        if len(fresh) >= n:
            return fresh[:n]
    raise UserError(f"{cfg.dataset}: fewer than {n} windows beyond the calibration's for the held-out set")


def calibration_snippets(tokenizer, windows: Sequence[Sequence[int]]) -> list[str]:
    """A piece of text from the middle of each window, to find the documents calibration used."""
    out = []
    for w in windows:
        mid = len(w) // 2
        text = tokenizer.decode(list(w[max(0, mid - 16) : mid + 16])).strip()[3:-3]
        if len(text) >= 20:
            out.append(text)
    return out


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


# ---- one pruning run -----------------------------------------------------------------------------


@dataclass
class PruneReport:
    config: PruneConfig
    schedule: Schedule
    outcome: PruneOutcome
    calibration: dict
    seconds: dict

    def sparsity(self) -> dict:
        o = self.outcome
        return {
            "overall": o.overall,
            "per_layer": o.per_layer,
            "zero_fraction_per_layer": o.zero_fraction,
            "target": self.schedule.target,
            "schedule": self.schedule.values,
            "max_abs_error_vs_schedule": max(abs(a - b) for a, b in zip(o.per_layer, self.schedule.values)),
        }


def run_prune(
    model,
    tokenizer,
    cfg: PruneConfig,
    *,
    schedule: Schedule | None = None,
    windows: list[list[int]] | None = None,
    calibration_source: dict | None = None,
    progress: bool = False,
    shard: Shard = (0, 1),
    checkpoint=None,
) -> PruneReport:
    """Prune `model` in place per cfg. A precomputed schedule or calibration windows may be given.

    shard = (rank, world) under torchrun: every process holds a replica and its share of the
    calibration batches; statistics are summed over processes, so every replica is pruned alike.
    checkpoint: a prune.resume.BlockCheckpoint (save each pruned block; restore them on resume)."""
    method = get_method(cfg.method)
    pattern = parse_pattern(cfg.pattern)
    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    if windows is None:
        windows, calibration_source = calibration_windows(model, tokenizer, cfg.calibration)
    batches = token_batches(windows, cfg.calibration.batch_size)
    secs["calibration"] = time.perf_counter() - t0
    if schedule is None and not (cfg.schedule.name == "atp" and cfg.schedule.atp_step is None):
        t0 = time.perf_counter()
        schedule = build_schedule(
            model,
            tokenizer,
            cfg.schedule,
            cfg.target,
            batches=batches,
            batch_size=cfg.calibration.batch_size,
            data_dir=cfg.calibration.data_dir,
            progress=progress,
            shard=shard,
        )
        secs["schedule"] = time.perf_counter() - t0
    amap = None
    if method.needs_activation_map:
        t0 = time.perf_counter()
        amap = calibration_mean_map(
            model, tokenizer, windows, cfg.calibration.batch_size, cfg.schedule.target, progress, shard
        )
        secs["activation_map"] = time.perf_counter() - t0
    mine = own_batches(batches, shard) if method.stats else batches  # magnitude/activation: no forwards
    if schedule is None:  # ATP without a step: searched with this method, batches and pattern
        t0 = time.perf_counter()
        held = held_out_windows(model, tokenizer, cfg.calibration, cfg.schedule.atp_held_out, windows)
        step, record = search_step(
            model,
            cfg.target,
            held,
            lambda vals: prune_model(
                model, mine, method, vals, pattern, amap, cfg.blocksize, cfg.damp, False, _reduce(shard)
            ),
            cfg.schedule.atp_grid,
            cfg.calibration.batch_size,
        )
        L = discover(model).n_layers
        schedule = Schedule(atp_schedule(L, cfg.target, step), "atp", cfg.target, {"step": step, "search": record})
        secs["schedule"] = time.perf_counter() - t0
        if checkpoint is not None:
            checkpoint.save_schedule(schedule.as_dict())
    outcome = prune_model(
        model,
        mine,
        method,
        schedule.values,
        pattern,
        amap,
        cfg.blocksize,
        cfg.damp,
        progress,
        _reduce(shard),
        checkpoint,
    )
    secs["prune"] = outcome.seconds
    return PruneReport(cfg, schedule, outcome, calibration_source or {}, secs)
