"""Multi-process runs on torch.distributed (torchrun): one model replica per process.

Batches are sharded deterministically (batch k goes to rank k % world), every process
reduces its own batches, and the reducers are merged at the end: per-parameter sums by
all-reduce, per-sample statistics by an all-gather. NCCL on GPUs, gloo on CPUs.
"""

from __future__ import annotations

import copy
import os

import torch

from .reducers import MeanMap


def init() -> tuple[int, int]:
    """(rank, world size); initializes the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def owned_samples(batches: list[list[int]], rank: int, world: int) -> list[int]:
    """Sample ids a rank reduces: those of batches k (sample ids per batch) with k % world == rank."""
    return [i for k, ids in enumerate(batches) if k % world == rank for i in ids]


def device_for_rank() -> str | None:
    """The device a process should load its replica on (its local GPU), or None."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
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
