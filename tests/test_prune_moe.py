"""Pruning mixture-of-experts models: every expert is a matrix of its own, with statistics from
the tokens routed to it, against slow brute-force references on tiny random MoE models.

The oracle is independent of paramact's taps: it reads each MoE block's routing from the experts
module's own call (hidden_states, top_k_index) in a plain forward of the (partly pruned) model,
and forms an expert's inputs from the tokens routed to it."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from conftest import cli
from paramact.anatomy import discover
from paramact.prune.driver import prune_model, token_batches
from paramact.prune.masks import parse_pattern, unpack_masks
from paramact.prune.scores import get_method
from prune_oracle import forward_with
from test_prune_masks import brute_row
from test_prune_sparsegpt import direct_obs
from tiny import save_tiny, tiny_model


def calib(n=6, T=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, 90, (n, T), generator=g)


def matrix_inputs(model, an, layer, ids) -> dict[str, torch.Tensor]:
    """{Weight.key: [tokens, in] float64 inputs} of every matrix of block `layer`, from a plain forward."""
    xs: dict[str, list[torch.Tensor]] = {}
    hooks = []
    for w in an.layers[layer]:
        if w.kind in ("linear", "conv1d"):
            hooks.append(
                w.module.register_forward_pre_hook(
                    lambda m, a, k=w.key: xs.setdefault(k, []).append(a[0].reshape(-1, a[0].shape[-1]))
                )
            )
    for g in an.experts:
        if g.layer != layer:
            continue
        m = g.module
        router = next(w for w in an.layers[layer] if w.kind == "router")

        def experts_call(_m, args, m=m, router=router):
            hidden, top_k = args[0], args[1]
            xs.setdefault(router.key, []).append(hidden)
            up, down = ("gate_up_proj" if m.has_gate else "up_proj"), "down_proj"
            for e in range(m.num_experts):
                x = hidden[(top_k == e).any(-1)]
                W1 = getattr(m, up)[e]
                h = x @ W1 if m.is_transposed else F.linear(x, W1)
                if m.has_bias:
                    h = h + getattr(m, up + "_bias")[e]
                h = m._apply_gate(h) if m.has_gate else m.act_fn(h)
                xs.setdefault(f"{g_name(an, layer, up)}[{e}]", []).append(x)
                xs.setdefault(f"{g_name(an, layer, down)}[{e}]", []).append(h)

        hooks.append(m.register_forward_pre_hook(experts_call))
    return forward_with(model, ids, hooks, xs)


def g_name(an, layer, attr) -> str:
    return next(w.name for w in an.layers[layer] if w.kind == "expert" and w.attr == attr)


def oracle_wanda(model, ids, schedule):
    """Before pruning block i, a plain forward of the partly pruned model gives every matrix's inputs
    (an expert's: its routed tokens); score |W|·‖X_j‖ in float64; brute-force per-row selection."""
    an = discover(model)
    masks = {}
    for i, layer in enumerate(an.layers):
        xs = matrix_inputs(model, an, i, ids)
        for w in layer:
            X = xs[w.key]
            score = w.oriented().detach().double().abs() * torch.sqrt((X * X).sum(0) / X.shape[0])[None, :]
            keep = brute_row(score, schedule[i])
            masks[w.key] = keep
            with torch.no_grad():
                w.oriented()[~keep] = 0
    return masks


@pytest.mark.parametrize("family", ["mixtral", "gpt_oss", "qwen2_moe"])
def test_wanda_on_experts_equals_sequential_oracle(family):
    ids = calib(6, 16, seed=1)
    a, b = tiny_model(family), tiny_model(family)
    schedule = [0.4, 0.6, 0.5][: discover(a).n_layers]
    out = prune_model(a, token_batches(ids.tolist(), 4), get_method("wanda"), schedule, parse_pattern("row"))
    ref = oracle_wanda(b, ids, schedule)
    got = out.masks()
    an = discover(a)
    assert not out.unreached
    agree = total = 0
    for w in an.weights:
        g = w.oriented(got[w.name])
        assert got[w.name].shape == w.param.shape  # masks keep the parameter's (3-D) shape
        assert torch.equal((~g).sum(1), (~ref[w.key]).sum(1)), w.key  # exact per-row counts
        agree += int((g == ref[w.key]).sum())
        total += g.numel()
        assert torch.equal(w.oriented() == 0, ~g)  # the weights carry the mask
    assert agree / total >= 0.999, agree / total  # only float near-ties may differ (fp32 vs fp64 norms)


def test_sparsegpt_keeps_a_hessian_per_expert():
    """Block 0 of a Mixtral: each expert's slice gets the OBS update of its own routed tokens' Hessian."""
    ids = calib(6, 16, seed=2)
    model, ref_model = tiny_model("mixtral"), tiny_model("mixtral")
    an, ref_an = discover(model), discover(ref_model)
    xs = matrix_inputs(ref_model, ref_an, 0, ids)
    out = prune_model(
        model, token_batches(ids.tolist(), 3), get_method("sparsegpt"), [0.5, 0.0], parse_pattern("row"), blocksize=8
    )
    got = out.masks()
    for w, rw in zip(an.layers[0], ref_an.layers[0]):
        X = xs[w.key]
        H = 2 * X.T @ X / X.shape[0]
        Hd = H + 0.01 * torch.diag(H).mean() * torch.eye(H.shape[0], dtype=H.dtype)
        keep = w.oriented(got[w.name])
        ref = direct_obs(rw.oriented().detach().double(), Hd, keep)
        assert (w.oriented().double() - ref).abs().max() <= 1e-4 * ref.abs().max(), w.key


@pytest.mark.parametrize("method", ["wanda", "sparsegpt"])
def test_an_expert_no_calibration_token_reached_is_pruned_by_magnitude(method):
    """One calibration token: top-2 of 4 experts, so two experts per MoE layer see nothing. They are
    pruned by |W| at the layer's sparsity and listed; the others by the method."""
    model, ref = tiny_model("mixtral"), tiny_model("mixtral")
    ids = torch.tensor([[17]])
    out = prune_model(model, token_batches(ids.tolist(), 1), get_method(method), [0.5, 0.5], parse_pattern("row"))
    an = discover(model)
    assert len(out.unreached) == 2 * 2 * 2  # 2 layers x 2 experts x (gate_up, down)
    got = out.masks()
    for w, rw in zip(an.weights, discover(ref).weights):
        if w.key in out.unreached:
            assert torch.equal(w.oriented(got[w.name]), brute_row(rw.oriented().detach().abs(), 0.5)), w.key
    experts_l0 = {int(k.rsplit("[", 1)[1][:-1]) for k in out.unreached if "layers.0." in k}
    assert len(experts_l0) == 2


def test_schedules_and_masks_count_expert_weights():
    model = tiny_model("qwen2_moe")
    an = discover(model)
    schedule = [0.3, 0.7]
    out = prune_model(
        model, token_batches(calib().tolist(), 3), get_method("magnitude"), schedule, parse_pattern("row")
    )
    for i in range(an.n_layers):
        block = {
            n: p
            for n, p in model.named_parameters()
            if n.startswith(f"model.layers.{i}.") and p.dim() >= 2 and not n.endswith("bias")
        }
        assert out.layer_params[i] == an.layer_params(i) == sum(p.numel() for p in block.values())
        zeros = sum(int((p == 0).sum()) for p in block.values())
        assert zeros / out.layer_params[i] == pytest.approx(out.per_layer[i], abs=1e-12)
        assert abs(out.per_layer[i] - schedule[i]) < 1 / 24  # floor(cols·s) per row, narrowest input 24


def test_activation_score_covers_experts():
    model = tiny_model("gpt_oss")
    an = discover(model)
    g = torch.Generator().manual_seed(5)
    amap = {n: torch.rand(p.shape, generator=g) for n, p in an.params().items()}
    out = prune_model(
        model, [], get_method("activation"), [0.5] * an.n_layers, parse_pattern("row"), activation_map=amap
    )
    got = out.masks()
    for w in an.weights:
        assert torch.equal(w.oriented(got[w.name]), brute_row(w.oriented(amap[w.name]), 0.5)), w.key


def test_prune_command_on_moe_round_trips_masks_and_model(tmp_path):
    """`paramact prune` on a tiny Mixtral: 3-D expert masks in masks.safetensors, a saved model that
    reloads with the same zeros and logits."""
    from transformers import AutoModelForCausalLM

    from data_helpers import shared_dataset

    model_dir = save_tiny(tmp_path / "model", "mixtral")
    out = tmp_path / "run"
    r = cli(
        "--quiet",
        "prune",
        "--model",
        str(model_dir),
        "--data-dir",
        str(shared_dataset("c4")),
        "--method",
        "wanda",
        "--sparsity",
        "0.5",
        "--nsamples",
        "4",
        "--seqlen",
        "32",
        "--batch-size",
        "2",
        "--eval",
        "",
        "--save-model",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    with safe_open(str(out / "masks.safetensors"), "pt") as f:
        masks = unpack_masks({k: f.get_tensor(k) for k in f.keys()}, f.metadata())
    saved = AutoModelForCausalLM.from_pretrained(out / "model")
    params = dict(saved.named_parameters())
    an = discover(saved)
    assert sorted(masks) == sorted(an.names)
    for name, keep in masks.items():
        assert keep.shape == params[name].shape
        assert torch.equal(params[name] != 0, keep), name
    res = json.loads((out / "results.json").read_text())
    assert res["sparsity"]["overall"] == pytest.approx(0.5, abs=0.02)
    assert res["unreached_experts"]["matrices"] == []  # 4 x 32 tokens reach every expert
    assert any("experts.gate_up_proj[3]" in k for k in res["sparsity_per_matrix"])
