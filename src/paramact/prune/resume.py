"""Block-by-block checkpoints of a pruning run, so that a killed `paramact prune` resumes.

After block i is pruned, DIR/block{i}.safetensors holds its keep masks (1 bit per weight), the
weights a method rewrote (SparseGPT's update; masking methods need only the mask) and its
sparsity numbers, written atomically. On resume the blocks with a file are restored, their
outputs recomputed by a plain forward (no statistics), and pruning continues at the first block
without one: the run ends with the masks and weights of an uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import UserError
from ..runs import config_key, read_checkpoint, write_json, write_tensors
from .masks import pack_masks, unpack_masks


class BlockCheckpoint:
    """Per-block state in `folder`, keyed by `config` (what the pruned blocks depend on: the model
    and the prune config; files of another configuration are refused). The schedule is kept beside.

    writer=False (torchrun ranks other than 0) reads but never writes."""

    def __init__(self, folder: Path, config: dict, resume: bool, writer: bool = True):
        self.folder, self.key, self.resume, self.writer = Path(folder), config_key(config), resume, writer

    def _path(self, i: int) -> Path:
        return self.folder / f"block{i:04d}.safetensors"

    def n_done(self, n_blocks: int) -> int:
        """How many leading blocks a resumed run restores (0 without --resume)."""
        if not self.resume:
            return 0
        n = 0
        while n < n_blocks and self._path(n).is_file():
            n += 1
        return n

    def save(self, i: int, masks: dict[str, torch.Tensor], rewritten: dict[str, torch.Tensor], numbers: dict) -> None:
        if not self.writer:
            return
        packed, meta = pack_masks(masks)
        tensors = {**{f"mask/{k}": v for k, v in packed.items()}, **{f"weight/{k}": v for k, v in rewritten.items()}}
        self.folder.mkdir(parents=True, exist_ok=True)
        write_tensors(self._path(i), tensors, {**meta, "key": self.key, "numbers": json.dumps(numbers)})

    def load(self, i: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
        """(keep masks, rewritten weights, numbers) of block i."""
        tensors, meta = read_checkpoint(
            self._path(i), self.key, "delete it to prune that block again", "pruning checkpoint"
        )
        masks = unpack_masks({k[5:]: v for k, v in tensors.items() if k.startswith("mask/")}, meta)
        weights = {k[7:]: v for k, v in tensors.items() if k.startswith("weight/")}
        return masks, weights, json.loads(meta["numbers"])

    def save_schedule(self, schedule: dict) -> None:
        """The per-layer sparsities, kept so a resumed run prunes to the same ones without measuring again."""
        if self.writer:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_json(self.folder / "schedule.json", schedule)

    def load_schedule(self) -> dict | None:
        path = self.folder / "schedule.json"
        if not self.resume or not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserError(f"corrupt pruning checkpoint {path}: delete {self.folder} to start over") from e

    def clear(self) -> None:
        if self.writer and self.folder.is_dir():
            for p in [*self.folder.glob("block*.safetensors"), self.folder / "schedule.json"]:
                p.unlink(missing_ok=True)
            self.folder.rmdir()
