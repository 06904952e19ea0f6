"""Anatomy discovery: blocks, matrices, order, exclusions, unsupported models."""

import pytest
import torch
from torch import nn

from paramact.anatomy import discover
from paramact.errors import UserError
from tiny import FAMILIES, MOE_FAMILIES, tiny_model

EXPECTED = {  # matrices per block, in order (module names' last component)
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gemma3_text": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    "gpt2": ["c_attn", "c_proj", "c_fc", "c_proj"],
    "opt": ["k_proj", "v_proj", "q_proj", "out_proj", "fc1", "fc2"],
    "gpt_neox": ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2"],
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_blocks_and_matrices(family):
    model = tiny_model(family)
    an = discover(model)
    n_layers = getattr(model.config, "num_hidden_layers", None) or model.config.n_layer
    assert an.n_layers == n_layers
    for i, layer in enumerate(an.layers):
        assert [w.name.split(".")[-2] for w in layer] == EXPECTED[family]
        assert all(w.layer == i and w.weight.dim() == 2 for w in layer)
        assert [w.slot for w in layer] == list(range(len(layer)))
        assert layer[-1].offset + layer[-1].numel == an.layer_params(i)
    names = set(an.names)
    # embeddings, lm_head, norms and biases are excluded
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    by_id = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    assert by_id[id(emb)] not in names and by_id[id(head)] not in names
    assert all(n.endswith(".weight") and "norm" not in n and "ln" not in n.split(".")[-2] for n in names)
    assert len(names) == len(an.names)


def test_gpt2_conv1d_is_transposed():
    an = discover(tiny_model("gpt2"))
    c_fc = an.layers[0][2]
    assert c_fc.transposed and c_fc.weight.shape == (32, 128)
    assert c_fc.shape_out_in == (128, 32)


def test_unsupported_model_names_what_is_missing():
    class NoBlocks(nn.Module):
        def __init__(self):
            super().__init__()
            self.config = type("C", (), {"num_hidden_layers": 4})()
            self.body = nn.Sequential(nn.Linear(4, 4), nn.ReLU())

    with pytest.raises(UserError, match="no list of decoder blocks with 4 entries"):
        discover(NoBlocks())


@pytest.mark.parametrize("family", sorted(MOE_FAMILIES))
def test_moe_anatomy_covers_every_block_weight(family):
    """Routers, every expert's slice of the fused tensors, and the dense matrices; biases aside."""
    model = tiny_model(family)
    an = discover(model)
    block_params = {n: p for n, p in model.named_parameters() if n.startswith(an.blocks_path + ".") and p.dim() >= 2}
    weights = {n: p for n, p in block_params.items() if not n.endswith("bias")}
    assert sorted(an.names) == sorted(weights)  # every weight, each once
    assert sorted(an.excluded_biases) == sorted(set(block_params) - set(weights))
    assert an.coverage() == {
        "share": 1.0,
        "attributed_params": sum(p.numel() for p in weights.values()),
        "block_params": sum(p.numel() for p in weights.values()),
        "uncovered": [],
        "excluded_biases": list(an.excluded_biases),
    }
    for g in an.experts:
        slices = [w for w in an.layers[g.layer] if w.kind == "expert"]
        assert len(slices) == 2 * g.n_experts == 8
        routers = [w for w in an.layers[g.layer] if w.kind == "router"]
        assert len(routers) == 1 and routers[0].weight.shape == (4, 32)
        for w in slices:  # an oriented (out, in) view of the stored slice
            out_in = w.oriented().shape
            assert out_in == w.shape_out_in and w.oriented().data_ptr() == w.param[w.expert].data_ptr()
            assert w.transposed == (family == "gpt_oss")
            assert out_in == ((48, 32) if "gate_up" in w.name else (32, 24))
    assert [w.offset for w in an.layers[-1]] == [
        sum(v.numel for v in an.layers[-1][:k]) for k in range(len(an.layers[-1]))
    ]
    assert an.context_length == 128 and an.vocab_size == 97 and not an.prepend_bos


class _Odd(nn.Module):
    """A block part paramact cannot attribute: a 3-D Parameter in a plain module."""

    def __init__(self):
        super().__init__()
        self.table = nn.Parameter(torch.randn(2, 3, 4))

    def forward(self, x):
        return x


def test_uncovered_parameter_is_one_line_or_recorded():
    model = tiny_model("llama")
    model.model.layers[1].odd = _Odd()
    with pytest.raises(
        UserError,
        match=r"cannot attribute 1 block parameter\(s\), first model.layers.1.odd.table "
        r"\[2, 3, 4\] \(_Odd.table\)",
    ):
        discover(model)
    an = discover(model, allow_uncovered=True)
    cov = an.coverage()
    assert cov["uncovered"] == ["model.layers.1.odd.table [2, 3, 4] (_Odd.table)"]
    assert cov["block_params"] == cov["attributed_params"] + 24 and 0 < cov["share"] < 1


def test_model_facts_in_one_place():
    an = discover(tiny_model("gemma3_text"))
    assert an.prepend_bos and an.bos_token_id == 1 and an.context_length == 128 and an.vocab_size == 97
    gpt2 = discover(tiny_model("gpt2"))
    assert not gpt2.prepend_bos and gpt2.context_length == 128


def test_analysis_with_uncovered_parameters_is_opt_in():
    from paramact.api import ActivationConfig, analyze
    from tiny import TEXTS, ByteTokenizer

    model = tiny_model("llama")
    model.model.layers[1].odd = _Odd()
    with pytest.raises(UserError, match="cannot attribute 1 block parameter"):
        analyze(model, ByteTokenizer(), TEXTS[:2], ActivationConfig(batch_size=2, sketch_dim=0))
    res = analyze(model, ByteTokenizer(), TEXTS[:2], ActivationConfig(batch_size=2, sketch_dim=0, allow_uncovered=True))
    assert "model.layers.1.odd.table" not in res.mean_map and res.anatomy.coverage()["share"] < 1
