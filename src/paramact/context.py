"""The run context: where and how one process of a run works, created once by the shell.

It holds what the process environment and the run options decide (rank and world size under
torchrun, the device of this process's replica, the run directory and the checkpoint policy),
so that nothing below the shell reads the environment or passes these facts one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .runs import Checkpoint

T = TypeVar("T")


@dataclass(frozen=True)
class RunContext:
    out: Path | None = None  # the run directory
    rank: int = 0  # this process under torchrun (0 alone)
    world: int = 1  # processes in the run
    device: str | None = None  # where this process's replica lives (None: where the model loads)
    checkpoint_every: int = 20  # batches (pruning: blocks are always saved) between checkpoints; 0: none
    resume: bool = False  # continue a killed run in `out`
    progress: bool = False  # progress bars (rank 0 only)

    @property
    def shard(self) -> tuple[int, int]:
        return self.rank, self.world

    @property
    def writer(self) -> bool:
        """Whether this process writes the run's files (rank 0)."""
        return self.rank == 0

    @property
    def bars(self) -> bool:
        return self.progress and self.rank == 0

    def share(self, items: Sequence[T], start: int = 0) -> list[tuple[int, T]]:
        """(k, item) for the items k >= start this process takes: item k goes to rank k % world."""
        return [(k, x) for k, x in enumerate(items) if k >= start and k % self.world == self.rank]

    def checkpoint(self, folder: Path, config) -> Checkpoint | None:
        """This process's checkpoint in `folder`, keyed by `config` (None when checkpoints are off)."""
        if not self.checkpoint_every:
            return None
        return Checkpoint.for_process(folder, self.shard, self.checkpoint_every, config, self.resume)
