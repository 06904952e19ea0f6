"""Batch size and padding do not change any statistic (<= 1e-5 relative)."""

import pytest

from oracle import rel_err
from paramact.api import ActivationConfig, analyze
from paramact.similarity import fingerprint_matrix
from tiny import TEXTS, ByteTokenizer, tiny_model

TOL = 1e-5


@pytest.fixture(scope="module")
def runs():
    model, tok = tiny_model("qwen2"), ByteTokenizer()
    out = {}
    for bs in (1, 3, 8):
        out[bs] = analyze(model, tok, TEXTS, ActivationConfig(batch_size=bs, sketch_dim=256, sketch_seed=7))
    out["sorted"] = analyze(
        model, tok, TEXTS, ActivationConfig(batch_size=3, sketch_dim=256, sketch_seed=7, sort_by_length=True)
    )
    return out


def test_length_sorted_batches_group_by_length_and_keep_sample_order(runs):
    (ids0, _), *_ = runs["sorted"].batch_llmdcos
    lengths = [len(t.encode()) for t in TEXTS]
    assert sorted(lengths)[:3] == sorted(lengths[i] for i in ids0)  # the three shortest first
    assert [i for ids, _ in runs[3].batch_llmdcos for i in ids] == list(range(len(TEXTS)))


@pytest.mark.parametrize("bs", [3, 8, "sorted"])
def test_batch_size_invariance(runs, bs):
    ref, got = runs[1], runs[bs]  # batch size 1: no padding at all
    for k in ref.mean_map:
        assert rel_err(got.mean_map[k], ref.mean_map[k]) <= TOL
    assert rel_err(got.norms, ref.norms) <= TOL
    assert rel_err(got.sums, ref.sums) <= TOL
    assert rel_err(got.target_values, ref.target_values) <= TOL
    # fingerprints are stored in float16: compare at that precision
    assert rel_err(got.fingerprints.float(), ref.fingerprints.float()) <= 2e-3
    assert [l["count_above"] for l in got.layers] == [l["count_above"] for l in ref.layers]


def test_in_batch_llmdcos_equals_cross_batch_fingerprint_pairs(runs):
    """Exact pairs from the batch-8 Gram agree with fingerprints computed in batches of 1."""
    ((_ids, cos),) = runs[8].batch_llmdcos
    fp = runs[1].fingerprints
    est = fingerprint_matrix(fp, fp)  # [L, N, N]
    assert est.shape == cos.shape
    # a 256-bucket sketch of ~13k-entry layers: loose, but a wrong hash pairing would be far off
    assert (est - cos).abs().mean() < 0.08


def test_long_neighbour_does_not_change_a_sample():
    """Padding invariance: a sample's norms are identical whether its batch mate is long or short."""
    model, tok = tiny_model("llama"), ByteTokenizer()
    cfg = ActivationConfig(batch_size=2, sketch_dim=0)
    a = analyze(model, tok, ["1 + 1 = 2", "short"], cfg)
    b = analyze(model, tok, ["1 + 1 = 2", "x" * 100], cfg)
    assert rel_err(b.norms[0], a.norms[0]) <= TOL
    assert rel_err(b.sums[0], a.sums[0]) <= TOL


def test_model_state_is_restored():
    model, tok = tiny_model("gpt2"), ByteTokenizer()
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    analyze(model, tok, TEXTS[:2], ActivationConfig(batch_size=2, sketch_dim=0))
    assert model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
