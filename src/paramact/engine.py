"""The engine: batched, exact per-sample A(s, w) = |w * dD(s)/dw| through hooks.

For a matrix y = x W^T, dD_i/dW = sum_t g_{i,t} x_{i,t}^T with x the matrix's input and
g = dD/dy (a hook on the output tensor), both seen through taps.py. Samples never interact
in a causal LM, so ONE backward of sum_i D_i hands every sample its own g, block by block.
For an expert of a mixture-of-experts block the sum runs over the tokens routed to that
expert only (its x and g exist for those tokens alone; the routing weight is inside g), so
a sample none of whose tokens reached the expert gets A = 0 there. The per-sample gradient
of one matrix is formed in a reusable fp32 workspace, turned into A, handed to the sinks
(the streaming reducers) and dropped. Weights never get a .grad: they are frozen for the
pass and gradients flow from a leaf made of the input embeddings' output.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable
from typing import Protocol

import torch
from torch import nn

from .anatomy import Anatomy, Weight, discover, input_embeddings, output_head
from .batching import Batch
from .errors import UserError
from .taps import Taps
from .targets import Target, get_target
from .workspace import Workspace


class Sink(Protocol):
    """Receives A one block of rows of one matrix at a time: A = |W[rows] * dD/dW[rows]| of
    shape [B, len(rows), cols]. A is a workspace: read it, never keep or modify it."""

    def begin_batch(self, batch: Batch) -> None: ...

    def update(self, w: Weight, rows: slice, A: torch.Tensor) -> None: ...

    def end_batch(self, batch: Batch) -> None: ...

    # optional, for mixture-of-experts blocks: routed(layer, counts) with counts [B, E] the
    # number of each sample's real tokens routed to each expert
    # optional: a sink whose reads_abs_grad(device) is True for the batch's device gets
    # update_abs_grad(w, rows, G, absW) with |dD/dW[rows]| [B, n, C] and |W[rows]| [n, C] *instead
    # of* update: a reducer that sums over samples (the mean map) multiplies its [n, C] sum once
    # instead of reading B products, and the per-sample statistics on a CPU sweep |G| and |W| once
    # (fused.py). When no sink needs A itself, A = |W| * |G| is never formed.


# On a CPU, a sample's gradient is one exact-size product over its own real tokens: an expert's
# routed rows, and every matrix of a right-padded batch (no masked copies, no products over
# padding). Accelerators use one padded batched product (one launch); set True to use that layout
# on a CPU too (tests compare the two).
PADDED_ON_CPU = False

# Elements of A processed at once. On a CPU a block that stays in cache lets every reducer
# read it for the price of one pass over memory; on a GPU, large blocks avoid launch costs.
CHUNK_ELEMENTS = {"cpu": 1 << 22}
_DEFAULT_CHUNK = 1 << 25  # 128 MB of float32 per block on an accelerator


def chunk_rows(batch: int, rows: int, cols: int, device: torch.device) -> int:
    per_row = batch * cols
    return max(1, min(rows, CHUNK_ELEMENTS.get(device.type, _DEFAULT_CHUNK) // per_row))


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


class _Routed:
    """An expert's routed rows, grouped by sample. Rows arrive sorted by flat token index b·T + t,
    so each sample's rows are contiguous; rows of padding tokens are dropped (`keep`).

    Two layouts of the same numbers: `segments` (start, count) per sample, for a loop of exact-size
    matrix products (CPU: no padding, no copies), and `scatter` into [B, M, ·] with M the largest
    count, for one batched product (accelerators: one launch)."""

    def __init__(self, tokens: torch.Tensor, valid: torch.Tensor):
        B, T = valid.shape
        keep = valid.reshape(-1)[tokens]
        self.keep = None if bool(keep.all()) else keep
        tok = tokens if self.keep is None else tokens[keep]
        self.b = torch.div(tok, T, rounding_mode="floor")
        counts = torch.bincount(self.b, minlength=B)
        starts = torch.cumsum(counts, 0) - counts
        self.segments = list(zip(starts.tolist(), counts.tolist()))
        self.r = torch.arange(tok.numel(), device=tok.device) - starts[self.b]
        self.n = tok.numel()
        self.width = int(counts.max()) if self.n else 0

    def rows(self, v: torch.Tensor) -> torch.Tensor:
        """The kept rows of v (one row per routed token), as float32."""
        return (v if self.keep is None else v[self.keep]).float()

    def scatter(self, v: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(self.segments), self.width, v.shape[-1], dtype=torch.float32, device=v.device)
        out[self.b, self.r] = v
        return out


class Engine:
    """Install hooks on a model and run batches through it.

    Use as a context manager; every hook is removed on exit, whatever happens.
    """

    def __init__(self, model: nn.Module, anatomy: Anatomy | None = None):
        self.model = model
        self.anatomy = anatomy or discover(model)
        self._sinks: list[Sink] = []
        self._grad_sinks: list[Sink] = []
        self._a_sinks: list[Sink] = []
        self._valid: torch.Tensor | None = None  # [B, T] bool of the running batch
        self._padded = False
        self._segments: list[tuple[int, int]] | None = None  # right-padded rows per sample (CPU layout)
        self._gather: torch.Tensor | None = None  # [B, K] positions for the output head
        self._seen: set[str] = set()
        self._last_input: tuple[weakref.ref, int, torch.Tensor] | None = None
        self._routers = [w for w in self.anatomy.weights if w.kind == "router"]
        self._stack = contextlib.ExitStack()
        self._workspace = Workspace()
        self._entered = False

    # -- hook installation ------------------------------------------------------------
    def __enter__(self) -> Engine:
        try:
            self._stack.enter_context(frozen_eval(self.model))
            emb = input_embeddings(self.model)
            head = output_head(self.model)
            self._stack.callback(emb.register_forward_hook(self._make_leaf).remove)
            self._stack.callback(head.register_forward_pre_hook(self._gather_positions).remove)
            self._stack.enter_context(Taps(self.anatomy, self._on_input, self._on_route))
        except BaseException:
            self._stack.close()
            raise
        self._entered = True
        return self

    def __exit__(self, *exc) -> None:
        self._entered = False
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
        return (h[rows, self._gather.to(h.device)], *tuple(args[1:]))

    def _on_input(self, w: Weight, x: torch.Tensor, out: torch.Tensor, tokens: torch.Tensor | None) -> None:
        if self._valid is None or not out.requires_grad:
            return
        if w.key in self._seen:
            raise UserError(f"weight {w.key} is used twice per forward; not supported")
        self._seen.add(w.key)
        valid = self._valid.to(x.device)
        if tokens is None and self._segments is not None and x.device.type == "cpu":
            xs, seg = x.detach().reshape(-1, x.shape[-1]), self._segments  # sample b's rows: b*T : b*T+len_b
            out.register_hook(lambda g: self._accumulate(w, xs, g.reshape(-1, g.shape[-1]), seg))
            return
        if tokens is None:
            x = self._masked_input(x, valid)
            out.register_hook(lambda g: self._accumulate(w, x, self._dense(g)))
            return
        routed = _Routed(tokens, valid)
        if routed.n == 0:
            return  # only padding reached this expert: A = 0 for every sample
        xs = routed.rows(x.detach())
        if x.device.type == "cpu" and not PADDED_ON_CPU:
            out.register_hook(lambda g: self._accumulate(w, xs, routed.rows(g), routed.segments))
        else:
            xp = routed.scatter(xs)
            out.register_hook(lambda g: self._accumulate(w, xp, routed.scatter(routed.rows(g))))

    def _masked_input(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x as [B, T, in], zero at padding (padding contributes nothing; a batch without padding
        skips the copy). Matrices that read the same input tensor (q/k/v, gate/up) share one copy:
        the input last seen is remembered by a weak reference (a freed tensor is never mistaken for a
        new one at the same address) and its version counter (an input changed in place is copied
        again)."""
        last = self._last_input
        if last is not None and last[0]() is x and last[1] == x._version:  # unchanged in place since
            return last[2]
        # some models (OPT) flatten tokens to [B*T, in]: view every input as [B, T, in]
        masked = x.detach().reshape(valid.shape[0], valid.shape[1], -1)
        if self._padded:
            masked = torch.where(valid[..., None], masked, torch.zeros((), dtype=x.dtype, device=x.device))
        self._last_input = (weakref.ref(x), x._version, masked)
        return masked

    def _right_padded_segments(self) -> list[tuple[int, int]] | None:
        """(b·T, len_b) per sample when every sample's real tokens come first (paramact's batches pad
        on the right): its rows of a [B·T, ·] view, for exact-size products. None otherwise."""
        T = self._valid.shape[1]
        lengths = self._valid.sum(1)
        prefix = torch.arange(T, device=self._valid.device) < lengths[:, None]
        if not bool(torch.equal(prefix, self._valid)):
            return None
        return [(b * T, n) for b, n in enumerate(lengths.tolist())]

    def _dense(self, g: torch.Tensor) -> torch.Tensor:
        valid = self._valid.to(g.device)[..., None]
        g = g.reshape(valid.shape[0], valid.shape[1], -1)
        if self._padded:
            g = torch.where(valid, g, torch.zeros((), dtype=g.dtype, device=g.device))
        return g.float()

    def _on_route(self, layer: int, top_k: torch.Tensor) -> None:
        if self._valid is None:
            return
        B, T = self._valid.shape
        if top_k.shape[0] != B * T:
            raise UserError(
                f"the experts of layer {layer} saw {top_k.shape[0]} tokens, not the batch's {B}x{T}: "
                "an MoE block that reorders or drops tokens is not supported"
            )
        E = self.anatomy.n_experts(layer)
        sample = torch.arange(B, device=top_k.device).repeat_interleave(T)[:, None].expand_as(top_k)
        ok = self._valid.to(top_k.device).reshape(-1, 1).expand_as(top_k) & (top_k >= 0) & (top_k < E)
        counts = torch.bincount((sample * E + top_k)[ok], minlength=B * E).view(B, E)
        for s in self._sinks:
            routed = getattr(s, "routed", None)
            if routed is not None:
                routed(layer, counts)

    def _accumulate(self, w: Weight, x: torch.Tensor, g: torch.Tensor, segments=None) -> None:
        """A = |W * sum_t g_t x_t^T| per sample, row block by row block, into the sinks.

        x [B, T', in] and g [B, T', out] float32, zero where a token does not count; or, with
        `segments` [(start, count)] per sample, x [n, in] and g [n, out] with sample b's rows at
        start:start+count."""
        x, g = x.float(), g.float()
        W = w.weight.detach()
        # dW = sum_t g_t x_t^T (W stored [out, in]); sum_t x_t g_t^T when stored [in, out]
        left, right = (x, g) if w.transposed else (g, x)  # [.., T', rows], [.., T', cols]
        B = g.shape[0] if segments is None else len(segments)
        R, C = W.shape
        step = chunk_rows(B, R, C, g.device)
        for r0 in range(0, R, step):
            rows = slice(r0, min(R, r0 + step))
            n = rows.stop - r0
            A = self._workspace.get((B, n, C), g.device)  # one buffer, contiguous whatever n
            if segments is None:
                torch.bmm(left[:, :, rows].transpose(1, 2), right, out=A)
            else:
                for b, (s0, cnt) in enumerate(segments):
                    if cnt:
                        torch.mm(left[s0 : s0 + cnt, rows].t(), right[s0 : s0 + cnt], out=A[b])
                    else:
                        A[b].zero_()
            A.abs_()  # |G|; A = |W| * |G|
            absW = W[rows].to(A).abs()
            for s in self._grad_sinks:
                s.update_abs_grad(w, rows, A, absW)
            if self._a_sinks:
                A.mul_(absW)
                for s in self._a_sinks:
                    s.update(w, rows, A)

    # -- running ----------------------------------------------------------------------
    def run(self, batch: Batch, target: str | Target, sinks: Iterable[Sink]) -> torch.Tensor:
        """One forward + one backward for the batch; returns D per sample ([B], detached)."""
        if not self._entered:
            raise RuntimeError("Engine.run must be called inside `with Engine(model):`")
        target = get_target(target)
        device = next(self.model.parameters()).device
        batch = batch.to(device)
        self._sinks = list(sinks)
        self._valid = batch.attention_mask.bool()
        self._padded = not bool(self._valid.all())
        self._segments = self._right_padded_segments() if self._padded and not PADDED_ON_CPU else None
        pos, pos_valid = target.positions(batch)
        self._gather = pos
        self._seen = set()
        for s in self._sinks:
            s.begin_batch(batch)
        reads = [getattr(s, "reads_abs_grad", lambda _: False)(device) for s in self._sinks]
        self._grad_sinks = [s for s, r in zip(self._sinks, reads) if r]
        self._a_sinks = [s for s, r in zip(self._sinks, reads) if not r]
        try:
            with torch.enable_grad():
                out = self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
                D = target.value(out.logits, batch, pos, pos_valid)
                del out
                missed = [w.name for w in self._routers if w.key not in self._seen]
                if missed:
                    raise UserError(
                        f"cannot attribute router weight {missed[0]}: its module's forward did not pass it to F.linear"
                    )
                if not torch.isfinite(D).all():
                    raise UserError("non-finite target value (overflow?): use float32 or bfloat16 instead of float16")
                D.sum().backward()
        finally:
            self._gather = None
            self._valid = self._segments = None
            self._last_input = None
        for s in self._sinks:
            s.end_batch(batch)
        self._sinks = self._grad_sinks = self._a_sinks = []
        return D.detach()
