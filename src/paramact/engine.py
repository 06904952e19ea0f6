"""The engine: batched, exact per-sample A(s, w) = |w * dD(s)/dw| through hooks.

For a Linear y = x W^T, dD_i/dW = sum_t g_{i,t} x_{i,t}^T with x the layer input
(forward hook) and g = dD/dy (a hook on the output tensor). Samples never interact in a
causal LM, so ONE backward of sum_i D_i hands every sample its own g, block by block.
The per-sample gradient of one matrix is formed in a reusable fp32 workspace, turned
into A, handed to the sinks (the streaming reducers) and dropped. Weights never get
a .grad: they are frozen for the pass and gradients flow from a leaf made of the input
embeddings' output.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Protocol

import torch
from torch import nn

from .anatomy import Anatomy, Weight, discover, input_embeddings, output_head
from .batching import Batch
from .errors import UserError
from .targets import Target, get_target


class Sink(Protocol):
    """Receives A one block of rows of one matrix at a time: A = |W[rows] * dD/dW[rows]| of
    shape [B, len(rows), cols]. A is a workspace: read it, never keep or modify it."""

    def begin_batch(self, batch: Batch) -> None: ...

    def update(self, w: Weight, rows: slice, A: torch.Tensor) -> None: ...

    def end_batch(self, batch: Batch) -> None: ...


# Elements of A processed at once. On a CPU a block that stays in cache lets every reducer
# read it for the price of one pass over memory; on a GPU, large blocks avoid launch costs.
CHUNK_ELEMENTS = {"cpu": 1 << 22}
_DEFAULT_CHUNK = 1 << 25  # 128 MB of float32 per block on an accelerator


def chunk_rows(batch: int, rows: int, cols: int, device: torch.device) -> int:
    per_row = batch * cols
    return max(1, min(rows, CHUNK_ELEMENTS.get(device.type, _DEFAULT_CHUNK) // per_row))


class Workspace:
    """One reusable float32 buffer, grown on demand and viewed into any shape: fresh large
    allocations cost page faults on every call, and one buffer caps the engine's memory."""

    def __init__(self) -> None:
        self._flat: torch.Tensor | None = None

    def get(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        n = 1
        for d in shape:
            n *= d
        if self._flat is None or self._flat.numel() < n or self._flat.device != device:
            self._flat = torch.empty(n, dtype=torch.float32, device=device)
        return self._flat[:n].view(shape)

    def clear(self) -> None:
        self._flat = None


@contextlib.contextmanager
def frozen_eval(model: nn.Module):
    """Eval mode and frozen parameters for the duration; everything restored after."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        model.eval()
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)
        model.train(was_training)


class Engine:
    """Install hooks on a model and run batches through it.

    Use as a context manager; every hook is removed on exit, whatever happens.
    """

    def __init__(self, model: nn.Module, anatomy: Anatomy | None = None):
        self.model = model
        self.anatomy = anatomy or discover(model)
        self._handles: list = []
        self._sinks: list[Sink] = []
        self._valid: torch.Tensor | None = None  # [B, T] bool of the running batch
        self._gather: torch.Tensor | None = None  # [B, K] positions for the output head
        self._seen: set[str] = set()
        self._stack = contextlib.ExitStack()
        self._workspace = Workspace()

    # -- hook installation ------------------------------------------------------------
    def __enter__(self) -> "Engine":
        self._stack.enter_context(frozen_eval(self.model))
        emb = input_embeddings(self.model)
        head = output_head(self.model)
        self._handles.append(emb.register_forward_hook(self._make_leaf))
        self._handles.append(head.register_forward_pre_hook(self._gather_positions))
        for w in self.anatomy.weights:
            self._handles.append(w.module.register_forward_hook(self._capture(w)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._workspace.clear()
        self._stack.close()

    @staticmethod
    def _make_leaf(module, args, output):
        return output.detach().requires_grad_(True)

    def _gather_positions(self, module, args):
        if self._gather is None:
            return None
        h = args[0]  # [B, T, H]
        rows = torch.arange(h.shape[0], device=h.device)[:, None]
        return (h[rows, self._gather.to(h.device)],) + tuple(args[1:])

    def _capture(self, w: Weight):
        def hook(module, args, output):
            if not torch.is_tensor(output) or not output.requires_grad:
                return None
            if w.name in self._seen:
                raise UserError(f"module {w.name} is called twice per forward; not supported")
            self._seen.add(w.name)
            valid = self._valid.to(args[0].device)[..., None]
            # some models (OPT) flatten tokens to [B*T, in]: view every input as [B, T, in]
            x = args[0].detach().reshape(valid.shape[0], valid.shape[1], -1)
            x = torch.where(valid, x, torch.zeros((), dtype=x.dtype, device=x.device))
            output.register_hook(lambda g: self._on_grad(w, x, g))
            return None

        return hook

    def _on_grad(self, w: Weight, x: torch.Tensor, g: torch.Tensor) -> None:
        valid = self._valid.to(g.device)[..., None]
        g = g.reshape(valid.shape[0], valid.shape[1], -1)
        g = torch.where(valid, g, torch.zeros((), dtype=g.dtype, device=g.device)).float()
        x = x.float()
        W = w.weight.detach()
        # dW = sum_t g_t x_t^T for Linear (W [out, in]); sum_t x_t g_t^T for Conv1D (W [in, out])
        left, right = (x, g) if w.transposed else (g, x)  # [B, T, rows], [B, T, cols]
        B, R, C = g.shape[0], W.shape[0], W.shape[1]
        step = chunk_rows(B, R, C, g.device)
        buf = self._workspace.get((B, step, C), g.device)
        for r0 in range(0, R, step):
            rows = slice(r0, min(R, r0 + step))
            n = rows.stop - r0
            A = buf[:, :n]  # [B, n, C]
            torch.bmm(left[:, :, rows].transpose(1, 2), right, out=A)
            A.mul_(W[rows].to(A)).abs_()
            for s in self._sinks:
                s.update(w, rows, A)

    # -- running ----------------------------------------------------------------------
    def run(self, batch: Batch, target: str | Target, sinks: Iterable[Sink]) -> torch.Tensor:
        """One forward + one backward for the batch; returns D per sample ([B], detached)."""
        if not self._handles:
            raise RuntimeError("Engine.run must be called inside `with Engine(model):`")
        target = get_target(target)
        device = next(self.model.parameters()).device
        batch = batch.to(device)
        self._sinks = list(sinks)
        self._valid = batch.attention_mask.bool()
        pos, pos_valid = target.positions(batch)
        self._gather = pos
        self._seen = set()
        for s in self._sinks:
            s.begin_batch(batch)
        try:
            with torch.enable_grad():
                out = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
                D = target.value(out.logits, batch, pos, pos_valid)
                del out
                if not torch.isfinite(D).all():
                    raise UserError("non-finite target value (overflow?): use float32 or bfloat16 instead of float16")
                D.sum().backward()
        finally:
            self._gather = None
            self._valid = None
        for s in self._sinks:
            s.end_batch(batch)
        self._sinks = []
        return D.detach()
