"""Model anatomy: the one module that knows how a causal LM is laid out.

A *layer* in paramact is one decoder block. Its *weights* are every parameter of the block
with two or more dimensions, each seen as (a stack of) 2-D matrices:

- ``linear``: the weight of an nn.Linear, stored [out, in];
- ``conv1d``: the weight of a GPT-2 style Conv1D, stored [in, out] (transposed);
- ``router``: the 2-D ``weight`` Parameter of a module that is not a Linear (a mixture-of-experts
  router); attributed where its forward passes it to ``F.linear``;
- ``expert``: one expert's slice ``P[e]`` of a fused 3-D expert tensor (``gate_up_proj`` /
  ``up_proj`` / ``down_proj``) of an experts module that transformers dispatches through its
  experts interface; stored [E, out, in], or [E, in, out] where the module says ``is_transposed``
  (gpt-oss).

Biases (also gpt-oss's per-expert [E, out] bias stacks), norms, embeddings and lm_head are
excluded, as in the paper. A block parameter of two or more dimensions that fits none of the kinds
above cannot be attributed: discovery ends with one line naming it, unless the caller allows
uncovered parameters (the Anatomy then records them and its coverage is below 1).

Nothing here is keyed by model name: the block list is the ModuleList whose length equals the
config's layer count. Model facts read from the config (context length, vocabulary size, whether
the model needs a BOS token in front of every input) live here too, and only here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .errors import UserError

try:  # GPT-2, GPT-J style Conv1D: y = x @ W + b with W of shape [in, out]
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover - transformers is a hard dependency
    Conv1D = ()  # type: ignore[assignment]

KINDS = ("linear", "conv1d", "router", "expert")
_LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length")
# families trained with a BOS token in front of every sequence, whose outputs degrade without one
_NEEDS_BOS = ("gemma",)


@dataclass(frozen=True)
class Weight:
    """One 2-D matrix of a block: a whole parameter, or one expert's slice of a fused one."""

    name: str  # full HF parameter name, e.g. "model.layers.3.mlp.experts.down_proj"
    module: nn.Module  # the module holding the parameter
    attr: str  # the parameter's attribute on that module
    kind: str  # one of KINDS
    layer: int
    slot: int  # position inside the block, 0-based
    offset: int  # offset of its first element in the concatenated layer vector
    transposed: bool  # stored [in, out] (Conv1D, gpt-oss experts)
    expert: int | None = None  # index into the fused [E, ...] parameter

    @property
    def key(self) -> str:
        """Unique per matrix: the parameter name, with [e] for an expert's slice."""
        return self.name if self.expert is None else f"{self.name}[{self.expert}]"

    @property
    def param(self) -> torch.Tensor:
        """The whole parameter (3-D for fused experts)."""
        return getattr(self.module, self.attr)

    def select(self, t: torch.Tensor) -> torch.Tensor:
        """This matrix's part (a view) of a tensor shaped like the parameter, in storage layout."""
        return t if self.expert is None else t[self.expert]

    @property
    def weight(self) -> torch.Tensor:
        """The matrix in storage layout (a view of the parameter)."""
        return self.select(self.param)

    def oriented(self, t: torch.Tensor | None = None) -> torch.Tensor:
        """An (out, in) view of the weight, or of this matrix's part of a parameter-shaped tensor."""
        v = self.select(self.param if t is None else t)
        return v.t() if self.transposed else v

    def to_storage(self, t: torch.Tensor) -> torch.Tensor:
        """An (out, in) matrix back in this matrix's storage layout."""
        return t.t() if self.transposed else t

    @property
    def numel(self) -> int:
        return self.weight.numel()

    @property
    def shape_out_in(self) -> tuple[int, int]:
        """(out_features, in_features) whatever the storage layout."""
        r, c = self.weight.shape
        return (c, r) if self.transposed else (r, c)


@dataclass(frozen=True)
class Experts:
    """A fused experts module of one block: which of its parameters hold the experts."""

    module: nn.Module
    layer: int
    n_experts: int
    names: tuple[str, ...]  # HF names of its expert weight tensors


@dataclass(frozen=True)
class Anatomy:
    """The decoder blocks of a model, their weight matrices, and the model facts paramact uses."""

    blocks_path: str
    blocks: nn.ModuleList
    layers: tuple[tuple[Weight, ...], ...]
    experts: tuple[Experts, ...] = ()  # the fused experts modules, in block order
    context_length: int | None = None
    vocab_size: int | None = None
    bos_token_id: int | None = None
    prepend_bos: bool = False  # the model expects a BOS token in front of every input
    uncovered: tuple[str, ...] = ()  # block parameters (>= 2 dims) not attributed (allowed by the caller)
    uncovered_params: int = 0
    excluded_biases: tuple[str, ...] = ()  # stacked per-expert biases: biases, excluded as all biases

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def weights(self) -> list[Weight]:
        return [w for layer in self.layers for w in layer]

    def layer_params(self, i: int) -> int:
        return sum(w.numel for w in self.layers[i])

    @property
    def names(self) -> list[str]:
        """The attributed parameters' HF names, each once, in order."""
        return list(dict.fromkeys(w.name for w in self.weights))

    def params(self) -> dict[str, torch.Tensor]:
        """HF name -> the whole parameter, for every attributed parameter."""
        return {w.name: w.param for w in self.weights}

    def n_experts(self, layer: int) -> int:
        """Routed experts of a block (0 for a dense block)."""
        return next((e.n_experts for e in self.experts if e.layer == layer), 0)

    @property
    def moe_layers(self) -> list[int]:
        return [e.layer for e in self.experts]

    def coverage(self) -> dict:
        """The share of the blocks' weights (parameters with >= 2 dims, biases aside) attributed."""
        covered = sum(self.layer_params(i) for i in range(self.n_layers))
        total = covered + self.uncovered_params
        return {
            "share": covered / total if total else 1.0,
            "attributed_params": covered,
            "block_params": total,
            "uncovered": list(self.uncovered),
            "excluded_biases": list(self.excluded_biases),
        }


# ---- model facts ---------------------------------------------------------------------------------


def _config(model):
    cfg = getattr(model, "config", None)
    return getattr(cfg, "text_config", None) or cfg


def _config_int(model, keys) -> int | None:
    cfg = _config(model)
    for key in keys:
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def context_length(model) -> int | None:
    return _config_int(model, _CONTEXT_KEYS)


def vocab_size(model) -> int | None:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    w = getattr(head, "weight", None)
    return int(w.shape[0]) if isinstance(w, torch.Tensor) and w.dim() == 2 else _config_int(model, ("vocab_size",))


def needs_bos(model) -> bool:
    model_type = str(getattr(_config(model), "model_type", "") or "")
    return model_type.startswith(_NEEDS_BOS)


def window_bos(model, tokenizer) -> int | None:
    """The BOS id every token window cut from a stream must open with (calibration, perplexity),
    for a model that expects one; None otherwise."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return int(bos) if needs_bos(model) and isinstance(bos, int) else None


# ---- discovery -----------------------------------------------------------------------------------


def _is_matrix_module(m: nn.Module) -> bool:
    w = getattr(m, "weight", None)
    return isinstance(m, (nn.Linear, Conv1D)) and isinstance(w, torch.Tensor) and w.dim() == 2


def is_experts_module(m: nn.Module) -> bool:
    """A fused experts module dispatched through transformers' experts interface
    (transformers.integrations.moe.use_experts_implementation sets these attributes)."""
    return (
        all(hasattr(m, a) for a in ("has_gate", "is_transposed", "has_bias", "num_experts"))
        and getattr(m, "config", None) is not None
    )


def expert_weight_attrs(m: nn.Module) -> tuple[str, ...]:
    return ("gate_up_proj" if m.has_gate else "up_proj", "down_proj")


def _has_weights(block: nn.Module) -> bool:
    return any(p.dim() >= 2 for p in block.parameters())


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ModuleList of decoder blocks: length = config layer count, blocks hold matrices."""
    want = _config_int(model, _LAYER_COUNT_KEYS)
    candidates = []
    for path, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0 and all(_has_weights(b) for b in mod):
            candidates.append((path, mod))
    if want is not None:
        exact = [(p, m) for p, m in candidates if len(m) == want]
        if exact:
            return exact[0]
    if candidates and want is None:
        return max(candidates, key=lambda pm: len(pm[1]))
    found = ", ".join(f"{p} ({len(m)})" for p, m in candidates) or "none"
    raise UserError(
        f"unsupported model {type(model).__name__}: no list of decoder blocks "
        f"with {want} entries holding weight matrices (module lists found: {found})"
    )


def _classify(m: nn.Module, attr: str, p: torch.Tensor) -> str | None:
    """The kind of a block parameter with >= 2 dims, "bias" for a stacked bias, None if unknown."""
    if _is_matrix_module(m) and attr == "weight":
        return "conv1d" if Conv1D and isinstance(m, Conv1D) else "linear"
    if is_experts_module(m):
        if attr in expert_weight_attrs(m) and p.dim() == 3 and p.shape[0] == m.num_experts:
            return "expert"
        if attr.endswith("bias") and p.dim() == 2 and p.shape[0] == m.num_experts:
            return "bias"
        return None
    if attr == "weight" and p.dim() == 2 and not isinstance(m, nn.Embedding):
        return "router"
    return None


def discover(model: nn.Module, allow_uncovered: bool = False) -> Anatomy:
    """The decoder blocks and every weight matrix in them, in a stable order (module definition
    order; a fused experts tensor contributes its experts in index order).

    allow_uncovered: record block parameters no kind fits instead of refusing the model."""
    path, blocks = find_blocks(model)
    param_names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    layers, experts, uncovered, biases = [], [], [], []
    n_uncovered = 0
    seen: set[int] = set()
    for i, block in enumerate(blocks):
        ws: list[Weight] = []
        offset = 0
        for _, m in block.named_modules():
            for attr, p in m.named_parameters(recurse=False):
                if p.dim() < 2 or id(p) in seen:
                    continue
                seen.add(id(p))
                name = param_names[id(p)]
                kind = _classify(m, attr, p)
                if kind == "bias":
                    biases.append(name)
                    continue
                if kind is None:
                    uncovered.append(f"{name} {list(p.shape)} ({type(m).__name__}.{attr})")
                    n_uncovered += p.numel()
                    continue
                slices = range(p.shape[0]) if kind == "expert" else [None]
                transposed = kind == "conv1d" or (kind == "expert" and bool(m.is_transposed))
                for e in slices:
                    w = Weight(name, m, attr, kind, i, len(ws), offset, transposed, e)
                    ws.append(w)
                    offset += w.numel
            if is_experts_module(m):
                names = tuple(param_names[id(getattr(m, a))] for a in expert_weight_attrs(m) if hasattr(m, a))
                experts.append(Experts(m, i, int(m.num_experts), names))
        if not ws:
            raise UserError(f"unsupported model: decoder block {i} at {path} has no weight matrices")
        layers.append(tuple(ws))
    if uncovered and not allow_uncovered:
        raise UserError(
            f"cannot attribute {len(uncovered)} block parameter(s), first {uncovered[0]}: not a Linear/"
            "Conv1D weight, a router weight or a fused expert tensor; --allow-uncovered runs without "
            "them and records the coverage in results.json"
        )
    bos = getattr(_config(model), "bos_token_id", None)
    return Anatomy(
        blocks_path=path,
        blocks=blocks,
        layers=tuple(layers),
        experts=tuple(experts),
        context_length=context_length(model),
        vocab_size=vocab_size(model),
        bos_token_id=bos if isinstance(bos, int) else None,
        prepend_bos=needs_bos(model),
        uncovered=tuple(uncovered),
        uncovered_params=n_uncovered,
        excluded_biases=tuple(biases),
    )


def input_embeddings(model: nn.Module) -> nn.Module:
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if emb is None:
        raise UserError(f"unsupported model {type(model).__name__}: no input embeddings found")
    return emb


def output_head(model: nn.Module) -> nn.Module:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        raise UserError(
            f"unsupported model {type(model).__name__}: no output head (lm_head) found; "
            "paramact needs a causal language model"
        )
    return head
