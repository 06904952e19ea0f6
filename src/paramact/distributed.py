"""Multi-process runs on torch.distributed (torchrun): one model replica per process.

Batches are sharded deterministically (batch k goes to rank k % world), every process
reduces its own batches, and the reducers are merged at the end: per-parameter sums by
all-reduce, per-sample statistics by an all-gather. NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import copy

import torch

from . import api
from .api import ActivationConfig, Analysis
from .context import RunContext
from .reducers import MeanMap
from .runs import Checkpoint


def init(world: int, local_rank: int = 0) -> tuple[int, int]:
    """(rank, world size); initializes the process group when `world` > 1 (torchrun's WORLD_SIZE,
    read by the shell; the process group reads torchrun's rendezvous variables itself)."""
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def owned_samples(batches: list[list[int]], rank: int, world: int) -> list[int]:
    """Sample ids a rank reduces: those of batches k (sample ids per batch) with k % world == rank."""
    return [i for k, ids in enumerate(batches) if k % world == rank for i in ids]


def device_for_rank(world: int, local_rank: int) -> str | None:
    """The device a process should load its replica on (its local GPU), or None."""
    if world > 1 and torch.cuda.is_available():
        return f"cuda:{local_rank}"
    return None


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_(tensors) -> None:
    import torch.distributed as dist

    for t in tensors:
        dist.all_reduce(t)


def merge(mean: MeanMap | None, *per_sample) -> None:
    """Combine every process's reducers in place (each process ends with the full result):
    the mean map by all-reduce, per-sample reducers (SampleStats, ExpertUsage) by all-gather."""
    import torch.distributed as dist

    if mean is not None:
        all_reduce_(mean.sums.values())
        n = torch.tensor([mean.n], dtype=torch.long, device=next(iter(mean.sums.values())).device)
        dist.all_reduce(n)
        mean.n = int(n.item())
    for mine in per_sample:
        states = [None] * dist.get_world_size()
        dist.all_gather_object(states, mine.state_dict())
        for r, state in enumerate(states):
            if r != dist.get_rank():
                other = copy.copy(mine)  # same layout, its own sample lists
                other.load_state_dict(state)
                mine.merge(other)


def reduce_input_stats(stats) -> None:
    """Sum pruning statistics (prune.collect.InputStats: Σx², Σxᵀx, token count) over every process.

    Every process passes its accumulators in the same order (prune.driver.unique_stats)."""
    import torch.distributed as dist

    for st in stats:
        if st.sq is None:
            raise RuntimeError("a process saw no calibration batch")
        dist.all_reduce(st.sq)
        if st.gram is not None:
            dist.all_reduce(st.gram)
        n = torch.tensor([st.n], dtype=torch.long, device=st.sq.device)
        dist.all_reduce(n)
        st.n = int(n.item())


def run_pass(
    ctx: RunContext,
    model,
    tokenizer,
    texts,
    config: ActivationConfig,
    folder,
    key,
    continuations=None,
    on_fingerprints=None,
    extra_state: dict | None = None,
    anatomy=None,
) -> tuple[Analysis, Checkpoint | None]:
    """One activation pass as a process of a run: this process's share of the batches (batch k to
    rank k % world), checkpointed every ctx.checkpoint_every batches into `folder` under `key`
    (resumed from there when ctx.resume), the reducers merged over the processes at the end.

    extra_state: more parts (state_dict/load_state_dict) that a checkpoint saves with the reducers.
    Returns the Analysis (every process holds the full result) and the checkpoint, which the
    caller clears once the run's results are written."""
    prep = api.prepare(model, tokenizer, texts, config, continuations, anatomy)
    red = api.new_reducers(prep.anatomy, config, on_fingerprints)
    parts = {**red.parts, **(extra_state or {})}
    ckpt = ctx.checkpoint(folder, key)
    start = ckpt.load(parts) if ckpt is not None else 0
    mine = ctx.share(prep.batches, start)

    def after(i: int) -> None:
        k = mine[i][0]
        if ckpt is not None and ckpt.due(k + 1, len(prep.batches)):
            ckpt.save(k + 1, parts)

    api.reduce(model, prep.anatomy, [b for _, b in mine], config.target, red, ctx.bars, after)
    if ctx.world > 1:
        merge(red.mean, red.stats, *([red.experts] if red.experts is not None else []))
    return api.finalize(prep, red, config), ckpt
