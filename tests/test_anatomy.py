"""Anatomy discovery: blocks, matrices, order, exclusions, unsupported models."""

import pytest
from torch import nn

from paramact.anatomy import discover
from paramact.errors import UserError
from tiny import FAMILIES, tiny_model

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
