"""Taps: the input and output of every weight matrix of the anatomy, seen during a forward.

One mechanism serves the engine (which hooks the outputs' gradients) and the pruning
statistics (which read the inputs), for every kind of weight (anatomy.KINDS):

- linear / conv1d: a forward hook on the module;
- router: while the router module runs, a TorchFunctionMode sees each ``F.linear`` call whose
  weight is the router's Parameter (or a dtype/device cast of it, as DeepSeek-V3 does);
- expert: the fused experts module computes its forward through transformers' experts
  interface (``config._experts_implementation``); paramact registers an implementation of its
  own, ``"paramact"``, that runs the same forward one expert at a time and shows each expert's
  routed tokens. The model's own modeling code is not forked or patched: while the taps are
  active the experts modules' configs name paramact's implementation, and afterwards the
  previous implementation (and the interface's registry) is restored.

The callback ``on_input(w, x, out, tokens)`` receives the matrix's input rows x, its output
``out`` (before any bias), and, for an expert, the flat token indices (b·T + t) of those rows
(None: x holds every token of the batch, in order). ``on_route(layer, top_k_index)`` receives each
MoE block's routing decisions [tokens, k].
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .anatomy import Anatomy, Experts, Weight, expert_weight_attrs
from .errors import UserError

OnInput = Callable[[Weight, torch.Tensor, torch.Tensor, "torch.Tensor | None"], None]
OnRoute = Callable[[int, torch.Tensor], None]

IMPLEMENTATION = "paramact"
_CASTS = {
    torch.Tensor.to,
    torch.Tensor.type,
    torch.Tensor.float,
    torch.Tensor.double,
    torch.Tensor.half,
    torch.Tensor.bfloat16,
    torch.Tensor.contiguous,
}
_ACTIVE: dict[int, _ExpertsTap] = {}  # id(experts module) -> its tap, while taps are active
_REGISTERED = [0]  # how many Taps keep paramact's experts implementation registered


class _LinearTap(TorchFunctionMode):
    """Inside a router's forward: report F.linear calls on the router's weight (or a cast of it)."""

    def __init__(self, weights: list[Weight], on_input: OnInput):
        super().__init__()
        self._tracked = {id(w.param): w for w in weights}
        self._keep: list[torch.Tensor] = []  # casts stay alive, so their ids are not reused
        self._on_input = on_input

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func is F.linear:
            weight = args[1] if len(args) > 1 else kwargs.get("weight")
            w = self._tracked.get(id(weight))
            if w is not None:
                self._on_input(w, args[0] if args else kwargs["input"], out, None)
        elif func in _CASTS and args and id(args[0]) in self._tracked and torch.is_tensor(out):
            if out is not args[0]:
                self._keep.append(out)
                self._tracked[id(out)] = self._tracked[id(args[0])]
        return out


class _ExpertsTap:
    """The weights of one experts module, by (attribute, expert), and the callbacks to report to."""

    def __init__(self, group: Experts, weights: list[Weight], on_input: OnInput, on_route: OnRoute | None):
        self.layer = group.layer
        self.by_slot = {(w.attr, w.expert): w for w in weights}
        self.on_input, self.on_route = on_input, on_route


def _linear(x: torch.Tensor, W: torch.Tensor, transposed: bool) -> torch.Tensor:
    return x @ W if transposed else F.linear(x, W)


def experts_forward(
    self, hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
) -> torch.Tensor:
    """The experts' forward, one expert at a time (the computation of transformers' eager loop),
    reporting every expert's routed tokens to the active taps. hidden_states [N, H], top_k_* [N, k]."""
    if getattr(self, "_is_expert_parallel", False):
        raise UserError(
            "expert-parallel MoE modules are not supported: load the model with every expert on each process"
        )
    tap = _ACTIVE.get(id(self))
    if tap is not None and tap.on_route is not None:
        tap.on_route(tap.layer, top_k_index)
    up_attr, down_attr = expert_weight_attrs(self)
    out = torch.zeros_like(hidden_states)
    for e in range(self.num_experts):
        tokens, k = torch.where(top_k_index == e)  # sorted by token
        if tokens.numel() == 0:
            continue
        x = hidden_states[tokens]
        h = _linear(x, getattr(self, up_attr)[e], self.is_transposed)
        if tap is not None:
            tap.on_input(tap.by_slot[(up_attr, e)], x, h, tokens)
        if self.has_bias:
            h = h + getattr(self, up_attr + "_bias")[e]
        h = self._apply_gate(h) if self.has_gate else self.act_fn(h)
        y = _linear(h, getattr(self, down_attr)[e], self.is_transposed)
        if tap is not None:
            tap.on_input(tap.by_slot[(down_attr, e)], h, y, tokens)
        if self.has_bias:
            y = y + getattr(self, down_attr + "_bias")[e]
        if getattr(self, "has_post_expert_norm", False):
            y = self.post_expert_norm(y)
        y = y * top_k_weights[tokens, k, None]
        out.index_add_(0, tokens, y.to(out.dtype))
    return out


def _interface():
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    return ALL_EXPERTS_FUNCTIONS


class Taps:
    """Context manager: report every weight's input and output to `on_input` during forwards."""

    def __init__(
        self, anatomy: Anatomy, on_input: OnInput, on_route: OnRoute | None = None, layers: list[int] | None = None
    ):
        self.anatomy, self.on_input, self.on_route = anatomy, on_input, on_route
        self.layers = set(range(anatomy.n_layers) if layers is None else layers)
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> Taps:
        try:
            self._install()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _install(self) -> None:
        by_module: dict[int, list[Weight]] = {}
        for w in self.anatomy.weights:
            if w.layer in self.layers:
                by_module.setdefault(id(w.module), []).append(w)
        for ws in by_module.values():
            kind, module = ws[0].kind, ws[0].module
            if kind in ("linear", "conv1d"):
                self._hook_module(ws[0])
            elif kind == "router":
                self._tap_router(module, ws)
        for group in self.anatomy.experts:
            if group.layer in self.layers:
                self._tap_experts(group, by_module.get(id(group.module), []))

    def _hook_module(self, w: Weight) -> None:
        def hook(_module, args, output):
            if torch.is_tensor(output):
                self.on_input(w, args[0], output, None)

        self._stack.callback(w.module.register_forward_hook(hook).remove)

    def _tap_router(self, module, ws: list[Weight]) -> None:
        modes: list[_LinearTap] = []

        def enter(_module, _args):
            mode = _LinearTap(ws, self.on_input)
            mode.__enter__()
            modes.append(mode)

        def leave(_module, _args, _output):
            modes.pop().__exit__(None, None, None)

        self._stack.callback(module.register_forward_pre_hook(enter).remove)
        self._stack.callback(module.register_forward_hook(leave, always_call=True).remove)

    def _tap_experts(self, group: Experts, ws: list[Weight]) -> None:
        module = group.module
        if id(module) in _ACTIVE:
            raise RuntimeError(f"experts of layer {group.layer} are already tapped")
        interface = _interface()
        if _REGISTERED[0] == 0:
            interface[IMPLEMENTATION] = experts_forward
        _REGISTERED[0] += 1
        self._stack.callback(_unregister, interface)
        _ACTIVE[id(module)] = _ExpertsTap(group, ws, self.on_input, self.on_route)
        self._stack.callback(_ACTIVE.pop, id(module), None)
        cfg = module.config
        before = cfg._experts_implementation_internal
        cfg._experts_implementation_internal = IMPLEMENTATION
        self._stack.callback(setattr, cfg, "_experts_implementation_internal", before)


def _unregister(interface) -> None:
    _REGISTERED[0] -= 1
    if _REGISTERED[0] == 0 and IMPLEMENTATION in interface:
        del interface[IMPLEMENTATION]
