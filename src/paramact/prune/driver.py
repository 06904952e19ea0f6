"""The one sequential layer-by-layer driver every pruning method goes through.

1. Capture the inputs of the blocks: forward pre-hooks (with kwargs) record block 0's hidden
   states and what the model passes to every block (attention mask, position ids, rotary
   embeddings, ...: per block, since models that mix sliding-window and full attention pass each
   block its own mask); the last block's hook raises a sentinel to stop the forward there.
2. For each block: run it over the captured inputs with hooks on its matrices that accumulate
   per-input-column statistics (collect.py), call `on_block` (score, mask, apply), and, if the
   weights changed, run the block again: the outputs of the *pruned* block are the next block's
   inputs.

Methods that need no statistics (magnitude, activation) skip the forwards entirely. Devices come
from the tensors: inputs follow each block to the device of its weights. Model state (use_cache,
train/eval mode) is restored and every hook removed, also on errors.

Mixture-of-experts blocks: every expert's slice of a fused expert tensor is a matrix of its own,
with statistics from the tokens routed to it. An expert that no calibration token reached (its
input statistics are empty) is pruned by magnitude |W| at its layer's sparsity, whatever the
method, and listed in PruneOutcome.unreached: Wanda's |W|·‖X‖ would be 0 everywhere, and
SparseGPT's Hessian 0. Masks and rewritten weights are kept per HF parameter (3-D for fused
experts), so masks.safetensors and save_pretrained round-trip.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..anatomy import Anatomy, Weight, discover, input_embeddings
from .collect import Collector, InputStats
from .masks import Pattern, pack_masks, unpack_masks
from .scores import METHODS, MatrixContext

log = logging.getLogger(__name__)


class _Stop(Exception):
    """Raised by the last block's pre-hook once every block's call arguments are recorded."""


@dataclass
class BlockInputs:
    hidden: list[torch.Tensor]  # block 0's [B, T, d] input, one per calibration batch
    args: list[list[tuple]]  # [block][batch]: further positional arguments of the block call
    kwargs: list[list[dict]]  # [block][batch]: keyword arguments of the block call


def _to(obj, device):
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, tuple):
        return tuple(_to(o, device) for o in obj)
    if isinstance(obj, list):
        return [_to(o, device) for o in obj]
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


@contextmanager
def inference(model):
    """no_grad, eval mode and use_cache=False for the duration; everything restored after."""
    cfg = getattr(model, "config", None)
    use_cache = getattr(cfg, "use_cache", None)
    was_training = model.training
    try:
        if cfg is not None and use_cache is not None:
            cfg.use_cache = False
        model.eval()
        with torch.no_grad():
            yield
    finally:
        if cfg is not None and use_cache is not None:
            cfg.use_cache = use_cache
        model.train(was_training)


def capture_block_inputs(model, blocks, batches: Sequence[torch.Tensor]) -> BlockInputs:
    """Block 0's hidden states and every block's call arguments for each batch of token ids [B, T]."""
    got = BlockInputs([], [[] for _ in blocks], [[] for _ in blocks])

    def pre(i):
        def hook(_module, args, kwargs):
            kwargs = dict(kwargs)
            if args:
                hidden, rest = args[0], tuple(args[1:])
            else:
                hidden, rest = kwargs.pop("hidden_states"), ()
            if i == 0:
                got.hidden.append(hidden.detach())
            got.args[i].append(rest)
            got.kwargs[i].append(kwargs)
            if i == len(blocks) - 1:
                raise _Stop

        return hook

    device = input_embeddings(model).weight.device
    handles = [b.register_forward_pre_hook(pre(i), with_kwargs=True) for i, b in enumerate(blocks)]
    try:
        for ids in batches:
            try:
                model(input_ids=ids.to(device), use_cache=False)
            except _Stop:
                pass
    finally:
        for h in handles:
            h.remove()
    return got


def _call(block, hidden, args, kwargs) -> torch.Tensor:
    out = block(hidden, *args, **kwargs)
    return out[0] if isinstance(out, (tuple, list)) else out


OnBlock = Callable[[int, tuple[Weight, ...], dict[str, InputStats]], bool]
ReduceStats = Callable[[list[InputStats]], None]


def unique_stats(weights: tuple[Weight, ...], stats: dict[str, InputStats]) -> list[InputStats]:
    """The distinct accumulators of a block, in the (deterministic) order of its matrices."""
    seen: dict[int, InputStats] = {}
    for w in weights:
        st = stats.get(w.key)
        if st is not None and id(st) not in seen:
            seen[id(st)] = st
    return list(seen.values())


def sequential(
    model,
    batches: Sequence[torch.Tensor],
    on_block: OnBlock,
    stats: str | None,
    progress: bool = False,
    on_outputs: Callable[[int, list[torch.Tensor]], None] | None = None,
    desc: str = "blocks",
    reduce_stats: ReduceStats | None = None,
    restored: Callable[[int], bool] | None = None,
    anatomy: Anatomy | None = None,
) -> None:
    """Drive `on_block(i, weights, stats) -> changed` over the blocks in order (see module doc).

    stats None: no forwards at all (on_block gets empty statistics) unless on_outputs is given.
    reduce_stats: called with each block's statistics before on_block sees them; under torchrun
    (distributed.reduce_input_stats) every process holds its own share of the batches and the
    sums are all-reduced, so every process scores, masks and propagates identically.
    restored(i) -> True: block i was restored from a checkpoint; it is only run forward.
    on_block gets the block's statistics keyed by Weight.key.
    """
    anatomy = anatomy or discover(model)
    blocks = anatomy.blocks
    with inference(model):
        if stats is None and on_outputs is None:
            for i in tqdm(range(len(blocks)), desc=desc, unit="block", disable=not progress):
                if restored is None or not restored(i):
                    on_block(i, anatomy.layers[i], {})
            return
        inp = capture_block_inputs(model, blocks, batches)
        hidden = inp.hidden
        for i in tqdm(range(len(blocks)), desc=desc, unit="block", disable=not progress):
            block = blocks[i]
            dev = _device_of(block)
            hidden = [h.to(dev) for h in hidden]
            calls = list(zip(_to(inp.args[i], dev), _to(inp.kwargs[i], dev)))
            inp.args[i] = inp.kwargs[i] = []  # this block's arguments are needed no more
            outs: list[torch.Tensor] | None = None
            collected: dict[str, InputStats] = {}
            was_restored = restored is not None and restored(i)  # then only its outputs are computed
            if stats is not None and not was_restored:
                with Collector(anatomy, i, stats) as col:
                    outs = []
                    for h, (a, k) in zip(hidden, calls):
                        outs.append(_call(block, h, a, k))
                        col.end_batch()
                collected = col.stats
                if reduce_stats is not None:
                    reduce_stats(unique_stats(anatomy.layers[i], collected))
            changed = was_restored or on_block(i, anatomy.layers[i], collected)
            del collected
            if i == len(blocks) - 1 and on_outputs is None:
                break  # nothing reads the last block's outputs
            if changed or outs is None:
                outs = [_call(block, h, a, k) for h, (a, k) in zip(hidden, calls)]
            if on_outputs is not None:
                on_outputs(i, outs)
            hidden = outs


# ---- pruning ------------------------------------------------------------------------------------


@dataclass
class PruneOutcome:
    """What pruning did: bit-packed keep masks and the measured sparsity."""

    packed: dict[str, torch.Tensor]  # name -> uint8 packed bits (pack_masks)
    metadata: dict[str, str]
    per_layer: list[float]  # pruned fraction of each layer's weights (from the masks)
    zero_fraction: list[float]  # share of exact zeros in each layer's weights after pruning
    layer_params: list[int]
    seconds: float
    per_matrix: dict[str, float] = field(default_factory=dict)  # by Weight.key
    restored_blocks: int = 0  # blocks a resumed run took from its checkpoint
    unreached: list[str] = field(default_factory=list)  # experts no calibration token reached (magnitude-pruned)

    @property
    def overall(self) -> float:
        return sum(s * n for s, n in zip(self.per_layer, self.layer_params)) / sum(self.layer_params)

    def masks(self) -> dict[str, torch.Tensor]:
        return unpack_masks(self.packed, self.metadata)


def prune_model(
    model,
    batches: Sequence[torch.Tensor],
    method,
    schedule: Sequence[float],
    pattern: Pattern,
    activation_map: dict[str, torch.Tensor] | None = None,
    blocksize: int = 128,
    damp: float = 0.01,
    progress: bool = False,
    reduce_stats: ReduceStats | None = None,
    checkpoint=None,
    anatomy: Anatomy | None = None,
) -> PruneOutcome:
    """Prune every decoder block of `model` in place: layer i at sparsity schedule[i].

    reduce_stats: see `sequential` (torchrun: `batches` are this process's share).
    checkpoint: a prune.resume.BlockCheckpoint; each pruned block is saved there, and the blocks
    it already holds (a resumed run) are restored instead of pruned again."""
    t0 = time.perf_counter()
    anatomy = anatomy or discover(model)
    n_layers = anatomy.n_layers
    if len(schedule) != n_layers:
        raise ValueError(f"schedule has {len(schedule)} entries for {n_layers} layers")
    packed: dict[str, torch.Tensor] = {}
    shapes: dict[str, list[int]] = {}
    per_layer, zeros, params, per_matrix = [0.0] * n_layers, [0.0] * n_layers, [0] * n_layers, {}
    unreached: list[str] = []
    n_done = checkpoint.n_done(n_layers) if checkpoint is not None else 0
    if n_done:
        log.info("resuming: blocks 0-%d restored from %s", n_done - 1, checkpoint.folder)

    def record(i: int, masks: dict[str, torch.Tensor], numbers: dict) -> None:
        t, meta = pack_masks(masks)  # 1 bit per weight from here on
        packed.update(t)
        shapes.update(json.loads(meta["shapes"]))
        per_layer[i], zeros[i], params[i] = numbers["pruned"], numbers["zeros"], numbers["params"]
        per_matrix.update(numbers["per_matrix"])
        unreached.extend(numbers.get("unreached", []))

    def on_block(i: int, weights: tuple[Weight, ...], stats: dict[str, InputStats]) -> bool:
        s = float(schedule[i])
        pruned = nz = total = 0
        masks, rewritten, matrix, missed = {}, {}, {}, []
        for w in weights:
            stored = w.select(w.param.data)  # this matrix, in storage layout
            keep = torch.ones(w.shape_out_in, dtype=torch.bool, device=stored.device)
            if s > 0:
                st = stats.get(w.key)
                m = method
                if method.stats is not None and (st is None or st.n == 0):
                    m, st = METHODS["magnitude"], None  # an expert no calibration token reached
                    missed.append(w.key)
                act = None if activation_map is None else w.oriented(activation_map[w.name])
                ctx = MatrixContext(w.key, st, act, blocksize, damp)
                W_new, keep = m.prune(w.oriented(w.param.data).float(), ctx, s, pattern)
                if W_new is None:
                    stored.masked_fill_(~w.to_storage(keep).to(stored.device), 0)
                else:
                    stored.copy_(w.to_storage(W_new).to(stored.dtype))
                    rewritten[w.name] = w.param.data
            full = masks.setdefault(w.name, torch.ones(w.param.shape, dtype=torch.bool, device=stored.device))
            w.select(full).copy_(w.to_storage(keep))
            k = int((~keep).sum())
            matrix[w.key] = k / keep.numel()
            pruned += k
            nz += int((stored == 0).sum())
            total += keep.numel()
        if missed:
            log.warning("layer %d: %d expert matrices got no calibration token; pruned by magnitude", i, len(missed))
        numbers = {
            "pruned": pruned / total,
            "zeros": nz / total,
            "params": total,
            "per_matrix": matrix,
            "unreached": missed,
        }
        record(i, masks, numbers)
        if checkpoint is not None:
            checkpoint.save(i, masks, rewritten, numbers)
        return s > 0

    def restored(i: int) -> bool:
        if i >= n_done:
            return False
        masks, rewritten, numbers = checkpoint.load(i)
        params = {w.name: w.param for w in anatomy.layers[i]}
        for name, p in params.items():
            weight = p.data
            if name in rewritten:
                weight.copy_(rewritten[name].to(weight.device, weight.dtype))
            else:
                weight.masked_fill_(~masks[name].to(weight.device), 0)
        record(i, masks, numbers)
        return True

    sequential(
        model,
        batches,
        on_block,
        method.stats,
        progress,
        desc=f"prune {method.name}",
        reduce_stats=reduce_stats,
        restored=restored,
        anatomy=anatomy,
    )
    _, meta = pack_masks({})
    meta["shapes"] = json.dumps(shapes)
    return PruneOutcome(packed, meta, per_layer, zeros, params, time.perf_counter() - t0, per_matrix, n_done, unreached)


def token_batches(windows: Sequence[Sequence[int]], batch_size: int) -> list[torch.Tensor]:
    """Equal-length token windows -> [B, T] long tensors of at most batch_size rows."""
    if not windows:
        raise ValueError("no calibration windows")
    ids = torch.tensor([list(w) for w in windows], dtype=torch.long)
    return list(ids.split(batch_size))
