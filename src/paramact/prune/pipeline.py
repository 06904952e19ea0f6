"""The library entry points of pruning: calibration -> schedule (allocation.py) -> driver -> outcome.

Nothing here prints or writes files; the cli and outputs.py do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

from ..anatomy import discover, window_bos
from ..errors import UserError
from .allocation import Shard, _reduce, build_schedule, calibration_mean_map, own_batches
from .atp import search_step
from .config import CalibrationConfig, PruneConfig, Schedule
from .driver import PruneOutcome, prune_model, token_batches
from .masks import parse_pattern
from .schedules import atp_schedule
from .scores import get_method

log = logging.getLogger(__name__)


# ---- calibration ---------------------------------------------------------------------------------


def calibration_windows(
    model, tokenizer, cfg: CalibrationConfig, exclude: Sequence[int] = ()
) -> tuple[list[list[int]], dict]:
    """cfg.nsamples windows of exactly cfg.seqlen token ids, and their recorded source (exclude:
    rows of a task's calibration split left out, see data.calibration)."""
    from ..data import calibration

    anatomy = discover(model)
    ctx = anatomy.context_length
    if ctx is not None and cfg.seqlen > ctx:
        raise UserError(f"calibration seqlen {cfg.seqlen} exceeds the model's context length {ctx}")
    windows, source = calibration(
        cfg.dataset,
        tokenizer,
        cfg.nsamples,
        cfg.seqlen,
        cfg.seed,
        split=cfg.split,
        data_dir=cfg.data_dir,
        exclude=exclude,
    )
    bos = window_bos(model, tokenizer)
    if bos is not None:
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
