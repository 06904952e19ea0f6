"""The taps: paramact's experts implementation computes the model's own forward, everything it
changes is restored (also after an error), and what it cannot follow ends in one line."""

import types

import pytest
import torch
import torch.nn.functional as F
from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

from paramact.anatomy import discover
from paramact.api import ActivationConfig, analyze
from paramact.engine import Engine
from paramact.errors import UserError
from paramact.taps import IMPLEMENTATION, Taps
from tiny import MOE_FAMILIES, TEXTS, ByteTokenizer, tiny_model

IDS = torch.tensor([[1, 5, 9, 14, 3, 77, 21, 8], [1, 60, 2, 33, 33, 4, 90, 12]])


@pytest.mark.parametrize("family", sorted(MOE_FAMILIES))
def test_paramact_experts_forward_is_the_models_forward(family):
    """Logits through paramact's one-expert-at-a-time implementation equal the model's default
    implementation (grouped_mm) within float32 rounding, and the taps see every routed token."""
    model = tiny_model(family)
    an = discover(model)
    with torch.no_grad():
        ref = model(input_ids=IDS).logits
    seen: dict[str, int] = {}

    def on_input(w, x, out, tokens):
        seen[w.key] = seen.get(w.key, 0) + (x.numel() // x.shape[-1] if tokens is None else tokens.numel())

    routes = []
    with Taps(an, on_input, lambda layer, top_k: routes.append((layer, top_k.shape))):
        assert all(g.module.config._experts_implementation == IMPLEMENTATION for g in an.experts)
        with torch.no_grad():
            got = model(input_ids=IDS).logits
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5), float((got - ref).abs().max())
    assert sorted(layer for layer, _ in routes) == an.moe_layers and all(s == (16, 2) for _, s in routes)
    for g in an.experts:  # 16 tokens x top-2 over each layer's up (and down) slices
        up = [k for k in seen if k.startswith(g.names[0] + "[")]
        assert sum(seen[k] for k in up) == 32
    assert all(seen[w.key] == 16 for w in an.weights if w.kind != "expert")  # dense matrices, routers: every token


def test_everything_is_restored_after_an_error():
    model = tiny_model("mixtral")
    cfg = model.config
    before = cfg._experts_implementation
    flags = [p.requires_grad for p in model.parameters()]
    n_hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    with pytest.raises(RuntimeError, match="boom"):
        with Engine(model):
            assert cfg._experts_implementation == IMPLEMENTATION and IMPLEMENTATION in ALL_EXPERTS_FUNCTIONS
            raise RuntimeError("boom")
    assert cfg._experts_implementation == before and IMPLEMENTATION not in ALL_EXPERTS_FUNCTIONS
    assert [p.requires_grad for p in model.parameters()] == flags
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == n_hooks
    res = analyze(model, ByteTokenizer(), TEXTS[:2], ActivationConfig(batch_size=2, sketch_dim=0))
    assert res.expert_tokens is not None and cfg._experts_implementation == before


def test_a_router_paramact_cannot_follow_is_one_line():
    """A router whose forward multiplies by its weight without F.linear is not attributed silently."""
    model = tiny_model("mixtral")
    router = model.model.layers[0].mlp.gate

    def forward(self, hidden_states):
        hidden_states = hidden_states.reshape(-1, self.hidden_dim)
        logits = hidden_states @ self.weight.t()  # not F.linear
        probs = F.softmax(logits.float(), dim=-1)
        top, idx = torch.topk(probs, self.top_k, dim=-1)
        return logits, top / top.sum(-1, keepdim=True), idx

    router.forward = types.MethodType(forward, router)
    with pytest.raises(UserError, match=r"cannot attribute router weight model\.layers\.0\.mlp\.gate\.weight"):
        analyze(model, ByteTokenizer(), TEXTS[:2], ActivationConfig(batch_size=2, sketch_dim=0))
