"""Model anatomy: the one module that knows how a causal LM is laid out.

A *layer* in paramact is one decoder block; its *weights* are the 2-D matrices of
every Linear (or GPT-2 style Conv1D) inside the block, in module-definition order
(q, k, v, o, gate, up, down for Llama). Embeddings, lm_head, norms and biases are
excluded. Nothing here is keyed by model name: the block list is discovered as the
ModuleList whose length equals the config's layer count.
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

_LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")


@dataclass(frozen=True)
class Weight:
    """One weight matrix of a block."""

    name: str  # full HF parameter name, e.g. "model.layers.3.self_attn.q_proj.weight"
    module: nn.Module
    layer: int
    slot: int  # position inside the block, 0-based
    offset: int  # offset of its first element in the concatenated layer vector
    transposed: bool  # True for Conv1D: weight is [in, out]

    @property
    def weight(self) -> torch.Tensor:
        return self.module.weight

    @property
    def numel(self) -> int:
        return self.module.weight.numel()

    @property
    def shape_out_in(self) -> tuple[int, int]:
        """(out_features, in_features) whatever the storage layout."""
        r, c = self.module.weight.shape
        return (c, r) if self.transposed else (r, c)


@dataclass(frozen=True)
class Anatomy:
    """The decoder blocks of a model and their weight matrices."""

    blocks_path: str
    layers: tuple[tuple[Weight, ...], ...]

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
        return [w.name for w in self.weights]


def _is_matrix_module(m: nn.Module) -> bool:
    w = getattr(m, "weight", None)
    return isinstance(m, (nn.Linear, Conv1D)) and isinstance(w, torch.Tensor) and w.dim() == 2


def _layer_count(model: nn.Module) -> int | None:
    cfg = getattr(model, "config", None)
    cfg = getattr(cfg, "text_config", None) or cfg
    for key in _LAYER_COUNT_KEYS:
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ModuleList of decoder blocks: length = config layer count, blocks hold matrices."""
    want = _layer_count(model)
    candidates = []
    for path, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) > 0:
            if all(any(_is_matrix_module(s) for s in b.modules()) for b in mod):
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
        f"with {want} entries holding Linear/Conv1D weights (module lists found: {found})"
    )


def discover(model: nn.Module) -> Anatomy:
    """Discover the decoder blocks and their weight matrices in a stable order."""
    path, blocks = find_blocks(model)
    param_names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    layers = []
    seen: set[int] = set()
    for i, block in enumerate(blocks):
        ws = []
        offset = 0
        for _, m in block.named_modules():
            if not _is_matrix_module(m) or id(m) in seen:
                continue
            seen.add(id(m))
            w = Weight(
                name=param_names[id(m.weight)],
                module=m,
                layer=i,
                slot=len(ws),
                offset=offset,
                transposed=isinstance(m, Conv1D) if Conv1D else False,
            )
            offset += m.weight.numel()
            ws.append(w)
        if not ws:
            raise UserError(f"unsupported model: decoder block {i} at {path} has no Linear weights")
        layers.append(tuple(ws))
    return Anatomy(blocks_path=path, layers=tuple(layers))


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
