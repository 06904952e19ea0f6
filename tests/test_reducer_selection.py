"""Each call computes only the reducers its result needs, and every subset gives the numbers the
full analysis gives."""

import dataclasses

import pytest
import torch

import paramact
from oracle import rel_err
from paramact import fused
from paramact.api import REDUCERS, ActivationConfig, analyze, pair_pass
from paramact.errors import UserError
from paramact.experts import ExpertUsage
from paramact.reducers import MeanMap, SampleStats
from tiny import TEXTS, ByteTokenizer, tiny_model


@pytest.fixture
def spy(monkeypatch):
    """Counts the A blocks each reducer reads."""
    calls = {"mean": 0, "stats": 0, "experts": 0}

    def wrap(cls, key, method="update"):
        orig = getattr(cls, method)

        def update(self, w, rows, *tensors):
            if key != "stats" or self.active:
                calls[key] += 1
            return orig(self, w, rows, *tensors)

        monkeypatch.setattr(cls, method, update)

    wrap(MeanMap, "mean", "update_abs_grad")
    wrap(SampleStats, "stats")  # A itself (on an accelerator, or without the fused kernel)
    wrap(SampleStats, "stats", "update_abs_grad")  # |G| and |W| (the fused CPU kernel)
    wrap(ExpertUsage, "experts")
    return calls


def test_activation_map_reads_a_only_for_the_mean_map(spy):
    model, tok = tiny_model("mixtral"), ByteTokenizer()
    paramact.activation_map(model, tok, TEXTS[:4], batch_size=2)
    assert spy["mean"] > 0 and spy["stats"] == 0 and spy["experts"] == 0


def test_pair_similarity_reads_a_only_for_the_pair_products(spy):
    model, tok = tiny_model("llama"), ByteTokenizer()
    paramact.pair_similarity(model, tok, [(TEXTS[0], TEXTS[1])])
    assert spy["mean"] == 0 and spy["stats"] > 0


@pytest.mark.parametrize(
    "subset", [("mean_map",), ("norms",), ("grams",), ("fingerprints",), ("experts",), ("mean_map", "fingerprints")]
)
def test_every_subset_gives_the_full_analysis_numbers(subset):
    model, tok = tiny_model("olmoe"), ByteTokenizer()
    full = analyze(model, tok, TEXTS[:5], ActivationConfig(batch_size=3, sketch_dim=256))
    part = analyze(model, tok, TEXTS[:5], ActivationConfig(batch_size=3, sketch_dim=256, reducers=subset))
    assert torch.equal(part.target_values, full.target_values)
    assert bool(part.mean_map) == ("mean_map" in subset)
    for k in part.mean_map:
        assert torch.equal(part.mean_map[k], full.mean_map[k])
    has_norms = any(r in subset for r in ("norms", "grams", "fingerprints"))
    assert (part.norms is not None) == has_norms
    if has_norms:
        assert rel_err(part.norms, full.norms) <= 1e-6 and rel_err(part.sums, full.sums) <= 1e-6
    assert bool(part.batch_llmdcos) == ("grams" in subset)
    for (ia, ca), (ib, cb) in zip(part.batch_llmdcos, full.batch_llmdcos):
        assert ia == ib and torch.equal(ca, cb)
    assert (part.fingerprints is not None) == ("fingerprints" in subset)
    if part.fingerprints is not None:
        assert (part.fingerprints.float() - full.fingerprints.float()).abs().max() <= 1e-3
    assert (part.expert_tokens is not None) == ("experts" in subset)
    if part.expert_tokens is not None:
        assert torch.equal(part.expert_tokens, full.expert_tokens)


@pytest.mark.parametrize("kernel", [True, False])
def test_pair_products_equal_the_gram_entries(kernel, monkeypatch):
    """The "pairs" reducer (one product per sample, with its partner) gives the pair entries of the
    in-batch Gram, through the fused CPU kernel and through torch (as on an accelerator)."""
    monkeypatch.setattr(fused, "ENABLED", kernel)
    model, tok = tiny_model("olmoe"), ByteTokenizer()
    texts, cfg = pair_pass([(TEXTS[i], TEXTS[i + 1]) for i in range(0, 6, 2)], 4, "max_logit")
    res = analyze(model, tok, texts, cfg)
    full = analyze(model, tok, texts, dataclasses.replace(cfg, reducers=("grams",)))
    expect = torch.empty_like(res.pair_llmdcos)
    for ids, cos in full.batch_llmdcos:
        for j in range(0, len(ids), 2):
            expect[ids[j] // 2] = cos[:, j, j + 1]
    assert res.pair_llmdcos.shape == (3, model.config.num_hidden_layers) and full.pair_llmdcos is None
    assert rel_err(res.pair_llmdcos, expect) <= 1e-6 and rel_err(res.norms, full.norms) <= 1e-6
    assert not res.batch_llmdcos


def test_pairs_need_whole_pairs_in_a_batch():
    model, tok = tiny_model("llama"), ByteTokenizer()
    with pytest.raises(UserError, match="a pair pass needs both texts of each pair side by side in one batch"):
        analyze(model, tok, TEXTS[:3], ActivationConfig(batch_size=3, reducers=("pairs",)))


def test_unknown_reducer_is_one_line():
    with pytest.raises(UserError, match="unknown reducer 'gram'; choose among: " + ", ".join(REDUCERS)):
        ActivationConfig(reducers=("gram",))
