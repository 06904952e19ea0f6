"""The sequential driver: identity at sparsity 0, block outputs, and Wanda against a slow oracle."""

import pytest
import torch

from paramact.anatomy import discover
from paramact.prune.driver import prune_model, sequential, token_batches
from paramact.prune.masks import parse_pattern
from paramact.prune.scores import get_method
from prune_oracle import layer_inputs, oriented, wanda_score
from test_prune_masks import brute_row
from tiny import tiny_model

FAMILIES = ["llama", "gpt2", "qwen2", "opt"]


def calib(n=6, T=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 90, (n, T), generator=g)


def hook_counts(model):
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["wanda", "sparsegpt", "magnitude", "activation"])
def test_sparsity_zero_leaves_logits_bit_identical(family, method):
    model = tiny_model(family)
    ids = calib()
    with torch.no_grad():
        before = model(ids).logits
    hooks, use_cache = hook_counts(model), model.config.use_cache
    L = discover(model).n_layers
    out = prune_model(model, token_batches(ids.tolist(), 4), get_method(method), [0.0] * L, parse_pattern("row"))
    with torch.no_grad():
        after = model(ids).logits
    assert torch.equal(before, after)
    assert out.overall == 0.0 and all(m.all() for m in out.masks().values())
    assert hook_counts(model) == hooks and model.config.use_cache == use_cache and not model.training


@pytest.mark.parametrize("family", [*FAMILIES, "gemma3_text", "gpt_oss"])  # gpt_oss: sliding + full attention
def test_driver_block_outputs_equal_plain_forward(family):
    model = tiny_model(family)
    ids = calib(5, 17)
    with torch.no_grad():
        hs = model(ids, output_hidden_states=True).hidden_states
    got = {}
    sequential(
        model,
        token_batches(ids.tolist(), 2),
        lambda i, w, s: False,
        "norms",
        on_outputs=lambda i, outs: got.__setitem__(i, torch.cat(outs)),
    )
    L = discover(model).n_layers
    for i in range(L - 1):  # hidden_states[i + 1] is the output of block i (the last one is normed by HF)
        assert (got[i] - hs[i + 1]).abs().max() <= 1e-5 * hs[i + 1].abs().max(), i
    assert len(got) == L


def oracle_wanda(model, ids, schedule):
    """Slow and obvious: before pruning block i, a full forward of the partly pruned model gives
    every matrix's inputs; score |W|·‖X_j‖ in float64, brute-force per-row selection."""
    an = discover(model)
    masks = {}
    for i, layer in enumerate(an.layers):
        xs = layer_inputs(model, layer, ids)
        for w in layer:
            keep = brute_row(wanda_score(w, xs[w.name]), schedule[i])
            masks[w.name] = keep
            with torch.no_grad():
                oriented(w)[~keep] = 0
    return masks


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_driver_wanda_equals_sequential_oracle(family):
    ids = calib(6, 24, seed=1)
    schedule = [0.3, 0.5, 0.7]
    a, b = tiny_model(family), tiny_model(family)
    out = prune_model(a, token_batches(ids.tolist(), 4), get_method("wanda"), schedule, parse_pattern("row"))
    ref = oracle_wanda(b, ids, schedule)
    got = out.masks()
    an = discover(a)
    agree = total = 0
    for w in an.weights:
        g = got[w.name].t() if w.transposed else got[w.name]
        assert torch.equal((~g).sum(1), (~ref[w.name]).sum(1))  # exact per-row counts
        agree += int((g == ref[w.name]).sum())
        total += g.numel()
        assert torch.equal(oriented(w) == 0, ~g)  # the weights carry the mask
    assert agree / total >= 0.999, agree / total  # only float near-ties may differ (fp32 vs fp64 norms)
    with torch.no_grad():
        la, lb = a(ids).logits, b(ids).logits
    assert (la - lb).abs().max() <= 1e-3 * lb.abs().max()


def test_measured_sparsity_equals_schedule_per_layer():
    model = tiny_model("llama")
    schedule = [0.25, 0.5, 0.8]
    out = prune_model(model, token_batches(calib().tolist(), 3), get_method("wanda"), schedule, parse_pattern("row"))
    an = discover(model)
    for i, ws in enumerate(an.layers):
        min_cols = min(w.shape_out_in[1] for w in ws)
        assert abs(out.per_layer[i] - schedule[i]) < 1 / min_cols  # floor(cols·s) per row
        zeros = sum(int((w.module.weight == 0).sum()) for w in ws) / an.layer_params(i)
        assert zeros == pytest.approx(out.per_layer[i], abs=1e-12)
    assert out.overall == pytest.approx(sum(out.per_layer) / 3)  # equal-size layers


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
@pytest.mark.parametrize("spec", ["2:4", "4:8"])
def test_nm_through_the_driver(method, spec):
    model = tiny_model("llama")
    p = parse_pattern(spec)
    prune_model(model, token_batches(calib().tolist(), 3), get_method(method), [0.5] * 3, p)
    for w in discover(model).weights:
        W = oriented(w)
        zeros = (W == 0).reshape(W.shape[0], -1, p.m).sum(-1)
        assert (zeros == p.n).all(), w.name


def test_activation_method_ranks_the_mean_map():
    model = tiny_model("llama")
    an = discover(model)
    g = torch.Generator().manual_seed(5)
    amap = {w.name: torch.rand(w.module.weight.shape, generator=g) for w in an.weights}
    out = prune_model(model, [], get_method("activation"), [0.5] * 3, parse_pattern("row"), activation_map=amap)
    got = out.masks()
    for w in an.weights:
        assert torch.equal(got[w.name], brute_row(amap[w.name], 0.5))
