"""Pruning: one sequential layer driver, method and schedule registries, masks.

- driver.py      capture block-0 inputs, then per block: statistics -> prune -> recompute outputs
- collect.py     per-input-column statistics with hooks (Wanda norms, SparseGPT Hessian)
- scores.py      METHODS: magnitude, wanda, activation, sparsegpt
- sparsegpt.py   the OBS update with blocked Cholesky inverse
- masks.py       row / matrix / N:M masks; bit-packed storage
- schedules.py   SCHEDULES: uniform, activation (the paper's formula), paper, alphapruning, atp, owl, file
- paper_lists.py the paper's hard-coded lists and implied z-scores (data)
- config.py      typed configs (calibration, schedule, method), checked on creation
- allocation.py  the statistics behind the allocations, and build_schedule (sharded over torchrun processes)
- atp.py         ATP's step, searched on held-out calibration perplexity
- pipeline.py    calibration -> schedule -> driver -> outcome
- study.py       the pruning validations over seeds; study_stats.py: mean ± s.d. and paired verdicts;
                 study_outputs.py: its run directory
- resume.py      per-block checkpoints of a pruning run (--resume)
- outputs.py     run directories and tables of `prune`, `schedule` and `eval`; llm-compressor recipes
"""

from .allocation import build_schedule
from .config import CalibrationConfig, PruneConfig, Schedule, ScheduleConfig
from .driver import PruneOutcome, prune_model, sequential, token_batches
from .masks import keep_mask, pack_masks, parse_pattern, unpack_masks
from .pipeline import PruneReport, calibration_windows, run_prune
from .schedules import SCHEDULES, activation_from_z, activation_schedule, finalize, owl_schedule, paper_schedule
from .scores import METHODS

__all__ = [
    "METHODS",
    "SCHEDULES",
    "CalibrationConfig",
    "PruneConfig",
    "PruneOutcome",
    "PruneReport",
    "Schedule",
    "ScheduleConfig",
    "activation_from_z",
    "activation_schedule",
    "build_schedule",
    "calibration_windows",
    "finalize",
    "keep_mask",
    "owl_schedule",
    "pack_masks",
    "paper_schedule",
    "parse_pattern",
    "prune_model",
    "run_prune",
    "sequential",
    "token_batches",
    "unpack_masks",
]
