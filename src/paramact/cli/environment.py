"""The shell's side of a run: its options, and the one place that reads the process environment.

RunOptions are the options of a run rather than of its science (where it writes, whether it
resumes, where the replica lives). make_context reads torchrun's WORLD_SIZE and LOCAL_RANK,
joins the process group and returns the RunContext that the library takes; with_environment,
env_data_dir and env_cache give the variables paramact honours ($PARAMACT_DATA_DIR,
$PARAMACT_CACHE) as values.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..context import RunContext
from ..data.loading import ENV_DATA_DIR
from ..errors import UserError
from ..fields import option

ENV_CACHE = "PARAMACT_CACHE"
# `PARAMACT_KEEP_MEMORY=0` leaves glibc's allocator at its defaults (see paramact.memory)
ENV_KEEP_MEMORY = "PARAMACT_KEEP_MEMORY"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    out: str | None = option(None, "run directory (required; must not hold a finished run)")
    resume: bool = option(False, "continue a killed run in --out from its last checkpoint")
    checkpoint_every: int = option(20, "batches between checkpoints (0: none)")
    device: str | None = option(
        None,
        "where the model's replica lives, e.g. cpu, cuda:0 (default: where it loads; "
        "under torchrun each process's own GPU)",
    )
    threads: int | None = option(None, "torch CPU threads (default: torch's choice)")

    def __post_init__(self) -> None:
        if self.checkpoint_every < 0:
            raise UserError(f"--checkpoint-every must be >= 0, got {self.checkpoint_every}")
        if self.threads is not None and self.threads < 1:
            raise UserError(f"--threads must be >= 1, got {self.threads}")


def with_environment(config):
    """`config` with what the environment supplies where the user gave nothing: a data directory
    from $PARAMACT_DATA_DIR and the model cache from $PARAMACT_CACHE, in every nested config."""
    env_dir, cache = env_data_dir(None), env_cache()

    def fill(c):
        if not dataclasses.is_dataclass(c):
            return c
        kw = {}
        for f in dataclasses.fields(c):
            v = getattr(c, f.name)
            if dataclasses.is_dataclass(v):
                kw[f.name] = fill(v)
            elif f.name == "data_dir" and v is None and env_dir:
                kw[f.name] = env_dir
            elif f.name == "cache" and v is None and cache:
                kw[f.name] = cache
        return dataclasses.replace(c, **kw) if kw else c

    return fill(config)


def keep_memory_setting() -> bool:
    """Whether the shell keeps freed memory mapped ($PARAMACT_KEEP_MEMORY=0 turns it off)."""
    return os.environ.get(ENV_KEEP_MEMORY, "1") != "0"


def env_data_dir(data_dir: str | None) -> str | None:
    return data_dir or os.environ.get(ENV_DATA_DIR) or None


def env_cache() -> str | None:
    return os.environ.get(ENV_CACHE) or None


def make_context(
    opts: RunOptions, progress: bool, device_map: str | None = None, distributed_ok: bool = True, command: str = ""
) -> RunContext:
    """The RunContext of this process: torchrun's rank and world (the process group joined), the
    device of its replica, the run directory and checkpoint policy, and the thread count set."""
    import torch

    from .. import distributed

    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not distributed_ok:
        raise UserError(f"{command} runs in one process; under torchrun use `paramact prune` or `paramact schedule`")
    if world > 1 and device_map:
        raise UserError(
            "--device-map spreads one replica over every device; under torchrun each process "
            "holds its own replica on its own device: use one or the other"
        )
    if opts.device is not None:
        from ..models import check_device

        check_device(opts.device)
    rank, world = distributed.init(world, local_rank)
    device = opts.device or distributed.device_for_rank(world, local_rank)
    return RunContext(
        out=Path(opts.out) if opts.out is not None else None,
        rank=rank,
        world=world,
        device=device,
        checkpoint_every=opts.checkpoint_every,
        resume=opts.resume,
        progress=progress,
    )
