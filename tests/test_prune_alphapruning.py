"""AlphaPruning (Lu et al., NeurIPS 2024): the Hill exponent of each layer's weight spectra, mapped
onto layer sparsities; checked by hand, against a known power law, and against an eigvalsh oracle."""

import math

import numpy as np
import pytest
import torch

from paramact.anatomy import discover
from paramact.errors import UserError
from paramact.prune.allocation import build_schedule, layer_alphas
from paramact.prune.config import ScheduleConfig
from paramact.prune.schedules import alphapruning_schedule, hill_alpha
from tiny import tiny_model


def test_hill_alpha_by_hand():
    # sorted 1, 2, 4, 8: λ_min = 4 (index 4 // 2), tail 4, 8 -> α = 1 + 2 / (ln 1 + ln 2)
    assert hill_alpha([8, 1, 4, 2]) == pytest.approx(1 + 2 / math.log(2), rel=1e-12)
    assert hill_alpha([3, 3, 3, 3]) == math.inf  # no tail at all: the lightest possible
    with pytest.raises(UserError, match="positive median"):
        hill_alpha([0, 0, 0, 1])


def test_hill_alpha_recovers_a_power_law():
    """Eigenvalues drawn from a Pareto density ∝ λ^-3: the estimate is 3 within its standard error."""
    rng = np.random.default_rng(0)
    lam = rng.pareto(2.0, 40_000) + 1.0  # tail index 2: density exponent 3
    n = 20_000  # the upper half
    assert abs(hill_alpha(lam) - 3.0) < 4 * 2.0 / math.sqrt(n)  # se of the Hill estimate ≈ (α − 1)/√n


def test_mapping_by_hand_and_contract():
    got = alphapruning_schedule([2.0, 3.0, 4.0], 0.5, epsilon=0.3)
    assert got == pytest.approx([0.35, 0.5, 0.65], abs=1e-12)  # r = 0.7, 1.0, 1.3; mean r = 1
    got = alphapruning_schedule([5.0, 2.0, 3.0, 2.5], 0.6, epsilon=0.2)
    assert sum(got) / 4 == pytest.approx(0.6, abs=1e-12)
    assert np.argsort(got).tolist() == np.argsort([5.0, 2.0, 3.0, 2.5]).tolist()  # larger α, more sparsity
    assert max(got) / min(got) == pytest.approx(1.2 / 0.8, rel=1e-12)  # the span (1 + ε) / (1 − ε)
    assert alphapruning_schedule([3.0] * 5, 0.5) == pytest.approx([0.5] * 5, abs=1e-15)
    with pytest.raises(UserError, match="ε must be in"):
        ScheduleConfig(name="alphapruning", epsilon=1.0)


@pytest.mark.parametrize("family", ["llama", "mixtral"])
def test_layer_alphas_against_eigvalsh(family):
    model = tiny_model(family, seed=1)
    an = discover(model)
    ref = []
    for layer in an.layers:
        vals = []
        for w in layer:
            W = w.oriented().detach().double()
            lam = torch.linalg.eigvalsh(W.T @ W if W.shape[0] >= W.shape[1] else W @ W.T)  # the nonzero spectrum
            vals.append(hill_alpha(lam.clamp_min(0).numpy()))
        ref.append(sum(vals) / len(vals))
    got = layer_alphas(model)
    assert len(got) == an.n_layers and got == pytest.approx(ref, rel=1e-6)
    s = build_schedule(model, None, ScheduleConfig(name="alphapruning", epsilon=0.25), 0.5)
    assert s.name == "alphapruning" and sum(s.values) / len(s.values) == pytest.approx(0.5, abs=1e-12)
    assert s.meta["layer_alpha"] == pytest.approx(got) and s.meta["epsilon"] == 0.25


def test_atp_by_hand():
    """ATP's arithmetic progression: 4 layers, S = 0.5, δ = 0.1 -> 0.35, 0.45, 0.55, 0.65."""
    from paramact.prune.schedules import atp_schedule

    assert atp_schedule(4, 0.5, 0.1) == pytest.approx([0.35, 0.45, 0.55, 0.65], abs=1e-12)
    assert atp_schedule(5, 0.6, 0.0) == pytest.approx([0.6] * 5, abs=1e-15)
    got = atp_schedule(30, 0.7, 0.02)  # 0.41 ... 0.99: the cap holds, the mean stays exact
    assert max(got) <= 0.99 and sum(got) / 30 == pytest.approx(0.7, abs=1e-12)
    model = tiny_model("llama")
    s = build_schedule(model, None, ScheduleConfig(name="atp", atp_step=0.05), 0.5)
    assert s.values == pytest.approx([0.45, 0.5, 0.55], abs=1e-12) and s.meta == {"step": 0.05}
    with pytest.raises(UserError, match="searched while pruning"):  # no step: only `prune` can search it
        build_schedule(model, None, ScheduleConfig(name="atp"), 0.5)


def test_atp_candidates_by_hand():
    from paramact.prune.atp import candidate_steps, max_step

    # 5 layers, S = 0.3: the first layer reaches 0 at δ = 0.3 / 2 = 0.15 (the cap side allows 0.345)
    assert max_step(5, 0.3) == pytest.approx(0.15)
    assert max_step(5, 0.8) == pytest.approx(0.19 / 2)
    assert candidate_steps(5, 0.3, 3) == pytest.approx([0.0, 0.05, 0.1])
    assert max_step(1, 0.5) == 0.0


def test_atp_search_picks_the_lowest_held_out_perplexity_and_leaves_the_model_dense():
    """Magnitude pruning of a tiny Llama at each candidate: the recorded perplexities equal an
    independent prune-and-score of each step, the winner is their minimum, the weights are restored."""
    from paramact.evaluation.ppl import window_perplexity
    from paramact.prune.atp import search_step
    from paramact.prune.driver import prune_model
    from paramact.prune.masks import parse_pattern
    from paramact.prune.schedules import atp_schedule
    from paramact.prune.scores import METHODS

    model = tiny_model("llama", seed=4)
    params = discover(model).params()
    dense = {k: p.detach().clone() for k, p in params.items()}
    held = torch.randint(3, 90, (3, 24), generator=torch.Generator().manual_seed(5)).tolist()

    def prune(vals):
        prune_model(model, [], METHODS["magnitude"], vals, parse_pattern("row"))

    step, rec = search_step(model, 0.6, held, prune, grid=4, batch_size=2)
    assert all(torch.equal(p, dense[k]) for k, p in params.items())
    cands = rec["candidates"]
    assert [c["stage"] for c in cands][:4] == ["grid"] * 4 and 5 <= len(cands) <= 6
    assert step == min(cands, key=lambda c: c["ppl"])["step"]
    for c in cands:  # the oracle: prune at that step alone, score, restore
        prune(atp_schedule(3, 0.6, c["step"]))
        assert window_perplexity(model, held, 1)["ppl"] == pytest.approx(c["ppl"], rel=1e-5)
        for k, p in params.items():
            p.data.copy_(dense[k])


def test_atp_held_out_windows_are_not_calibration_windows(smollm2):
    from data_helpers import shared_dataset
    from paramact.prune.config import CalibrationConfig
    from paramact.prune.pipeline import calibration_windows, held_out_windows

    model, tok = smollm2
    cfg = CalibrationConfig(dataset="c4", nsamples=6, seqlen=64, data_dir=str(shared_dataset("c4")))
    windows, _ = calibration_windows(model, tok, cfg)
    held = held_out_windows(model, tok, cfg, 4, windows)
    assert len(held) == 4 and all(len(w) == 64 for w in held)
    assert not {tuple(w) for w in held} & {tuple(w) for w in windows}


@pytest.mark.parametrize("method, modifier", [("wanda", "WandaPruningModifier"), ("sparsegpt", "SparseGPTModifier")])
def test_llmcompressor_recipe(model_dir, tmp_path, method, modifier):
    """`paramact schedule --format llmcompressor`: llm-compressor's documented schema (one
    SparsityModifierBase modifier whose `sparsity` list has one value per layer its `targets`
    match, in order), checked against the model's own module names."""
    import re

    import yaml

    from paramact.cli import main
    from paramact.models import load_model

    out = tmp_path / "s"
    argv = ["--quiet", "schedule", "--model", str(model_dir), "--schedule", "atp", "--atp-step", "0.1"]
    assert main([*argv, "--sparsity", "0.5", "--format", "llmcompressor", "--method", method, "--out", str(out)]) == 0
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    (stage,) = recipe.values()
    ((name, mod),) = stage["sparsity_modifiers"].items()
    assert name == modifier and mod["mask_structure"] == "0:0" and mod["ignore"] == ["re:.*lm_head"]
    assert mod["sparsity"] == pytest.approx([0.4, 0.5, 0.6], abs=1e-6)
    assert ("dampening_frac" in mod) == (method == "sparsegpt")
    (target,) = mod["targets"]
    assert target.startswith("re:")
    model, _ = load_model(str(model_dir))
    matched = [n for n, _ in model.named_modules() if re.fullmatch(target[3:], n)]
    assert matched == [f"model.layers.{i}" for i in range(3)]  # the blocks, in the sparsities' order
    try:  # llm-compressor's own parser, where it is installed (not a dependency of paramact)
        from llmcompressor.recipe import Recipe
    except ImportError:
        return
    Recipe.create_instance(str(out / "recipe.yaml"))
