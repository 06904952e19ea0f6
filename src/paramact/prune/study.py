"""The paper's pruning validations on one model (the paper, §3.1, §3.2), as a library call, with seeds.

Validation 1: dense, then every method × sparsity × allocation (uniform, the paper's activation
schedule, OWL, AlphaPruning, ATP), calibrated on C4. Validation 2: the paper's "Wanda (ours)"
(wanda, activation schedule, 50%) calibrated on each calibration set (C4, MMLU, SIQA, BoolQ). Every
pruned cell runs once per seed; a seed fixes the calibration draw and the data behind the
data-driven allocations (the activation counts' samples, the OWL outlier ratios). AlphaPruning needs
no data; ATP's step is searched per cell on held-out calibration perplexity. One model is loaded
once; its dense block weights are restored before every pruning. Cells run seed by seed, so the
first seed's grid is complete before the second starts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from ..anatomy import discover, window_bos
from ..data import MC_TASKS, mc_items
from ..errors import UserError
from ..evaluation import EvalConfig, evaluate, parse_tasks, prepare
from ..fields import option
from ..models import ModelConfig
from .allocation import activation_counts, build_schedule, owl_ratios
from .config import CalibrationConfig, PruneConfig, ScheduleConfig
from .driver import token_batches
from .pipeline import calibration_snippets, calibration_windows, run_prune
from .schedules import get_schedule
from .scores import get_method

log = logging.getLogger(__name__)


ALLOCATIONS = ("uniform", "activation", "owl", "alphapruning", "atp")
# perplexity, then lm-evaluation-harness's zero-shot tasks and 5-shot MMLU (the `lmeval` extra);
# `:loglik` picks paramact's own scorer (tested to agree with lm-eval), a bare name the paper's letters
RESEARCH_TASKS = ("wikitext2", "c4", "boolq:lmeval", "piqa:lmeval", "hellaswag:lmeval", "siqa:lmeval", "mmlu:lmeval")


@dataclass(frozen=True)
class StudyConfig:
    methods: tuple[str, ...] = option(("wanda", "sparsegpt"), "Validation 1 pruning scores")
    schedules: tuple[str, ...] = option(ALLOCATIONS, "Validation 1 allocations: " + ", ".join(ALLOCATIONS))
    sparsities: tuple[float, ...] = option((0.5, 0.6, 0.7), "Validation 1 target sparsities")
    calibrations: tuple[str, ...] = option(
        ("c4", "mmlu", "siqa", "boolq"), "Validation 2 calibration sets (none: a Validation 1 study only)"
    )
    seeds: tuple[int, ...] = option(
        (0, 1, 2), "seeds: each pruned cell runs once per seed (its calibration draw and allocation data)"
    )
    # each method with its own paper's mask: Wanda per output row, SparseGPT per (block of the) matrix
    patterns: tuple[tuple[str, str], ...] = option((("wanda", "row"), ("sparsegpt", "matrix")), cli=False)
    v2_method: str = option("wanda", cli=False)
    v2_schedule: str = option("activation", cli=False)
    v2_sparsity: float = option(0.5, cli=False)
    v1_tasks: tuple[str, ...] = option(RESEARCH_TASKS, "Validation 1 tasks (see `paramact eval --help`)")
    v2_tasks: tuple[str, ...] = option(RESEARCH_TASKS, "Validation 2 tasks")
    calibration: CalibrationConfig = option(factory=lambda: CalibrationConfig(nsamples=16))
    # γ = 2e-5 (the paper's text): the code's 2e-6 puts 97-99.7% of SmolLM2's weights above γ in every layer
    schedule: ScheduleConfig = option(
        factory=lambda: ScheduleConfig(name="activation", density="gamma:2e-05", samples=32)
    )
    # 128 windows: the perplexity's own standard error is stated; 500 items: accuracy ± ~2 points
    eval: EvalConfig = option(factory=lambda: EvalConfig(ppl_windows=128, items=500))

    @property
    def evaluated_tasks(self) -> tuple[str, ...]:
        """Every task the study evaluates: Validation 1's, then Validation 2's unless it calibrates on
        no task set (`--calibrations none`)."""
        return tuple(dict.fromkeys(self.v1_tasks + (self.v2_tasks if self.calibrations else ())))

    @property
    def allocations_used(self) -> set[str]:
        """The allocations some cell of the study prunes with."""
        return set(self.schedules) | ({self.v2_schedule} if self.calibrations else set())

    def pattern(self, method: str) -> str:
        return dict(self.patterns).get(method, "row")

    def __post_init__(self) -> None:
        for m in (*self.methods, self.v2_method):
            get_method(m)
        for s in (*self.schedules, self.v2_schedule):
            get_schedule(s)
            if s not in ALLOCATIONS:
                raise UserError(f"the study compares the allocations {', '.join(ALLOCATIONS)}, not {s!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"give one or more distinct seeds, got {list(self.seeds)}")
        for s in (*self.sparsities, self.v2_sparsity):
            PruneConfig(sparsity=s)  # validates
        parse_tasks(self.v1_tasks + self.v2_tasks, installed=False)  # lm-eval is looked for when a study runs
        if "none" in self.calibrations:
            if len(self.calibrations) > 1:
                raise UserError(f"calibration sets: 'none' stands alone, got {list(self.calibrations)}")
            object.__setattr__(self, "calibrations", ())  # Validation 1 only: no Validation 2 cell


def group_key(method: str | None, schedule: str | None, sparsity: float, calibration: str | None) -> str:
    """A cell without its seed: the unit a table row reports as mean ± s.d. over seeds."""
    return "dense" if method is None else f"{method}/{schedule}/{sparsity:g}/{calibration}"


def _cell(cfg_tasks, table: str, method, schedule, sparsity, calibration, seed) -> dict:
    group = group_key(method, schedule, sparsity, calibration)
    return {
        "key": group if method is None else f"{group}/s{seed}",
        "group": group,
        "method": method,
        "schedule": schedule,
        "sparsity": sparsity,
        "calibration": calibration,
        "seed": seed,
        "tasks": list(cfg_tasks),
        "tables": [table],
    }


def plan(cfg: StudyConfig) -> list[dict]:
    """Every model the study evaluates, seed by seed, with the tasks it needs (a Validation 1 cell
    shared with Validation 2 gets both task lists). The dense model has no seed."""
    dense = _cell(cfg.evaluated_tasks, "validation1", None, None, 0.0, None, None)
    if cfg.calibrations:
        dense["tables"].append("validation2")
    rows = {"dense": dense}
    for seed in cfg.seeds:
        for m in cfg.methods:
            for s in cfg.sparsities:
                for sch in cfg.schedules:
                    r = _cell(cfg.v1_tasks, "validation1", m, sch, s, "c4", seed)
                    rows[r["key"]] = r
        for c in cfg.calibrations:
            r = _cell(cfg.v2_tasks, "validation2", cfg.v2_method, cfg.v2_schedule, cfg.v2_sparsity, c, seed)
            if r["key"] in rows:
                old = rows[r["key"]]
                old["tasks"] = list(dict.fromkeys(old["tasks"] + r["tasks"]))
                old["tables"].append("validation2")
            else:
                rows[r["key"]] = r
    return list(rows.values())


def _calibration(model, tok, cfg: StudyConfig, name: str, seed: int) -> tuple[list[list[int]], dict]:
    ccfg = replace(cfg.calibration, dataset=name, seed=seed)
    try:
        return calibration_windows(model, tok, ccfg)
    except UserError as e:
        if ccfg.split is not None or name not in MC_TASKS:
            raise
        if name == "mmlu":
            # the paper's auxiliary_train is not in every data folder: the test split is disjoint
            # from the validation items and dev demos the evaluation uses
            log.warning("MMLU calibration: %s; using the test split", e)
            windows, src = calibration_windows(model, tok, replace(ccfg, split="test"))
            return windows, {**src, "note": f"auxiliary_train unavailable ({e}); test split used"}
        # no calibration split (BoolQ's train is not in every data folder): the evaluation's own
        # split without the items the evaluation scores
        items, src = mc_items(name, cfg.eval.items, cfg.eval.seed, data_dir=cfg.eval.data_dir or ccfg.data_dir)
        scored = src.get("indices") or range(src["rows"])
        log.warning("%s calibration: %s; using %s minus the %d evaluated items", name, e, items[0].split, len(scored))
        windows, src = calibration_windows(model, tok, replace(ccfg, split=items[0].split), exclude=scored)
        note = f"calibration split unavailable ({e}); {items[0].split} split minus the {len(scored)} evaluated items"
        return windows, {**src, "note": note}


class _SeedData:
    """A seed's calibration windows and allocation statistics, measured when a cell first needs them."""

    def __init__(self, model, tok, cfg: StudyConfig, progress: bool):
        self.model, self.tok, self.cfg, self.progress = model, tok, cfg, progress
        self.calib: dict[tuple[str, int], tuple] = {}
        self.stats: dict[tuple[str, int], object] = {}
        self.seconds: dict[str, float] = {}

    def windows(self, name: str, seed: int) -> tuple[list[list[int]], dict]:
        if (name, seed) not in self.calib:
            self.calib[(name, seed)] = _calibration(self.model, self.tok, self.cfg, name, seed)
        return self.calib[(name, seed)]

    def statistic(self, kind: str, seed: int):
        if (kind, seed) not in self.stats:
            t = time.perf_counter()
            cfg = self.cfg
            if kind == "activation":
                sc = replace(cfg.schedule, seed=cfg.schedule.seed + seed)
                value = activation_counts(
                    self.model, self.tok, sc, cfg.calibration.batch_size, cfg.calibration.data_dir, self.progress
                )
            else:
                batches = token_batches(self.windows("c4", seed)[0], cfg.calibration.batch_size)
                value = owl_ratios(self.model, batches, cfg.schedule.owl_m, self.progress)
            self.stats[(kind, seed)] = value
            self.seconds[f"{kind}/s{seed}"] = time.perf_counter() - t
        return self.stats[(kind, seed)]


def run_study(
    model,
    tok,
    cfg: StudyConfig,
    progress: bool = False,
    on_row: Callable[[dict], None] | None = None,
    finished: dict[str, dict] | None = None,
) -> dict:
    """Every cell of plan(cfg); on_row(row) after each. finished: cells of an interrupted run, or
    of other studies (rows with `reused_from`; see study_cells), key -> row as on_row got them:
    kept instead of pruned and evaluated again."""
    parse_tasks(cfg.evaluated_tasks)  # their scorers installed, before any work
    anatomy = discover(model)
    params = anatomy.params()
    dense = {name: p.detach().clone() for name, p in params.items()}
    rows = plan(cfg)
    finished = finished or {}
    t0 = time.perf_counter()
    data = _SeedData(model, tok, cfg, progress)
    tasks = list(dict.fromkeys(t for r in rows for t in r["tasks"]))
    # C4 perplexity leaves out every document a C4 calibration window of any seed came from
    snippets = [x for seed in cfg.seeds for x in calibration_snippets(tok, data.windows("c4", seed)[0])]
    bos = window_bos(model, tok)
    prepared = prepare(tok, tasks, cfg.eval, context=anatomy.context_length, exclude_c4=snippets, bos=bos)
    prepared = {p.name: p for p in prepared}
    for r in rows:
        if r["key"] in finished:
            r.update({k: v for k, v in finished[r["key"]].items() if k not in r})
            if r["method"] is not None:  # its calibration source in the results, as if it had run here
                data.windows(r["calibration"], r["seed"])
            if on_row is not None:
                on_row(r)
            continue
        t = time.perf_counter()
        for name, p in params.items():
            p.data.copy_(dense[name])
        if r["method"] is not None:
            sc = replace(cfg.schedule, name=r["schedule"])
            sched = None  # ATP: searched inside run_prune
            if r["schedule"] != "atp":
                sched = build_schedule(
                    model,
                    tok,
                    sc,
                    r["sparsity"],
                    counts=data.statistic("activation", r["seed"]) if r["schedule"] == "activation" else None,
                    ratios=data.statistic("owl", r["seed"]) if r["schedule"] == "owl" else None,
                )
            pcfg = PruneConfig(
                method=r["method"],
                sparsity=r["sparsity"],
                schedule=sc,
                pattern=cfg.pattern(r["method"]),
                calibration=replace(cfg.calibration, dataset=r["calibration"], seed=r["seed"]),
            )
            windows, source = data.windows(r["calibration"], r["seed"])
            rep = run_prune(
                model, tok, pcfg, schedule=sched, windows=windows, calibration_source=source, progress=progress
            )
            r["schedule_values"] = rep.schedule.as_dict()
            r["sparsity_measured"] = rep.sparsity()
            r["pattern"] = pcfg.pattern
            r["prune_seconds"] = rep.outcome.seconds
        r["eval"] = evaluate(model, [prepared[n] for n in r["tasks"]], progress)
        r["seconds"] = time.perf_counter() - t
        # where it ran: cells of one study may come from sessions on other devices or thread counts
        r["ran_on"] = {"device": str(next(iter(params.values())).device), "threads": torch.get_num_threads()}
        if on_row is not None:
            on_row(r)
    for name, p in params.items():
        p.data.copy_(dense[name])
    return {
        "rows": rows,
        "calibration": {f"{k[0]}/s{k[1]}": v[1] for k, v in data.calib.items()},
        "seconds": {**data.seconds, "total": time.perf_counter() - t0},
        "resumed_cells": [r["key"] for r in rows if r["key"] in finished and "reused_from" not in r],
        "reused_cells": {r["key"]: r["reused_from"] for r in rows if r["key"] in finished and "reused_from" in r},
    }


def label(r: dict) -> str:
    if r["method"] is None:
        return "dense"
    pattern = f" ({r['pattern']})" if r.get("pattern", "row") != "row" else ""
    return f"{r['method']}{pattern} {r['schedule']} {100 * r['sparsity']:g}%"


@dataclass(frozen=True)
class StudyRun:
    """`paramact study prune`: the pruning validations on one model."""

    model: ModelConfig = option(factory=ModelConfig)
    study: StudyConfig = option(factory=StudyConfig)
    cells_from: tuple[str, ...] = option(
        (),
        "study directories whose finished cells this study reuses where they ran under the same cell "
        "settings (model, seeds, calibration, allocation and evaluation settings): a study extended "
        "by more methods, sparsities or allocations runs only its new cells",
    )
