"""The engine against the per-sample autograd oracle, on tiny random models of eight
families (GPT-2 Conv1D, GQA in qwen2/mistral/gemma3), for every target, with padding.

Tolerance: max |engine - oracle| / max |oracle| <= 1e-5 in float32.
"""

import pytest
import torch

import paramact
from oracle import layer_vectors, per_sample_A, rel_err
from paramact.api import ActivationConfig, analyze
from tiny import ANSWERS, FAMILIES, TEXTS, ByteTokenizer, encode_ids, tiny_model

TOL = 1e-5
TARGETS = ["max_logit", "gold_logprob", "lm_loss"]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request):
    return request.param, tiny_model(request.param)


@pytest.mark.parametrize("target", TARGETS)
def test_engine_matches_oracle(family, target):
    name, model = family
    tok = ByteTokenizer()
    texts = TEXTS[:5]  # different lengths: the batch is padded
    conts = ANSWERS[:5] if target == "gold_logprob" else None
    cfg = ActivationConfig(target=target, batch_size=5, sketch_dim=0)
    res = analyze(model, tok, texts, cfg, continuations=conts)
    anatomy = res.anatomy

    per_sample = []
    for i, t in enumerate(texts):
        ids, n_prompt = encode_ids(tok, t, None if conts is None else conts[i])
        per_sample.append(per_sample_A(model, anatomy.weights, ids, target, n_prompt))

    # 1. mean map, per parameter name
    for k, w in enumerate(anatomy.weights):
        ref = sum(s[k] for s in per_sample) / len(texts)
        assert rel_err(res.mean_map[w.name], ref) <= TOL, (name, target, w.name)

    # 2. per-sample per-layer ‖A‖ and ΣA
    vecs = [layer_vectors(anatomy, s) for s in per_sample]  # [N][L] vectors
    ref_norm = torch.tensor([[v.norm() for v in vs] for vs in vecs], dtype=torch.float64)
    ref_sum = torch.tensor([[v.sum() for v in vs] for vs in vecs], dtype=torch.float64)
    assert rel_err(res.norms, ref_norm) <= TOL
    assert rel_err(res.sums, ref_sum) <= TOL

    # 3. LLMDcos of every pair in the batch, against the direct formula on oracle vectors
    (ids, cos), = res.batch_llmdcos
    for L in range(anatomy.n_layers):
        for i in range(len(texts)):
            for j in range(len(texts)):
                direct = paramact.llmdcos(vecs[i][L], vecs[j][L])
                assert abs(float(cos[L, i, j]) - direct) <= TOL, (name, target, L, i, j)


def test_target_values_match_oracle():
    """D itself (not only its gradient) equals the oracle's value per sample."""
    from oracle import target_value

    model, tok = tiny_model("llama"), ByteTokenizer()
    for target in TARGETS:
        conts = ANSWERS[:4] if target == "gold_logprob" else None
        res = analyze(model, tok, TEXTS[:4], ActivationConfig(target=target, batch_size=4, sketch_dim=0), conts)
        for i, t in enumerate(TEXTS[:4]):
            ids, n_prompt = encode_ids(tok, t, None if conts is None else conts[i])
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids])).logits[0]
            ref = float(target_value(logits, torch.tensor(ids), target, n_prompt))
            assert abs(float(res.target_values[i]) - ref) <= 1e-5 * max(1.0, abs(ref)), (target, i)


@pytest.mark.parametrize("batch_size", [2, 5])
def test_pair_similarity_matches_direct_formula(batch_size):
    """pair_similarity: exact per-layer LLMDcos of each pair, whatever the batch size."""
    model, tok = tiny_model("gpt_neox"), ByteTokenizer()
    pairs = [(TEXTS[0], TEXTS[1]), (TEXTS[2], TEXTS[2]), (TEXTS[3], TEXTS[6])]
    got = paramact.pair_similarity(model, tok, pairs, batch_size=batch_size)
    an = paramact.discover(model)
    assert got.shape == (3, an.n_layers)
    for k, (a, b) in enumerate(pairs):
        va = layer_vectors(an, per_sample_A(model, an.weights, encode_ids(tok, a)[0]))
        vb = layer_vectors(an, per_sample_A(model, an.weights, encode_ids(tok, b)[0]))
        for L in range(an.n_layers):
            assert abs(float(got[k, L]) - paramact.llmdcos(va[L], vb[L])) <= TOL
    assert torch.allclose(got[1], torch.ones(an.n_layers))  # a text with itself
