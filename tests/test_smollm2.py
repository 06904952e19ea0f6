"""Integration on the real SmolLM2-135M-Instruct (30 layers, GQA), fp32 on CPU."""

import torch

from oracle import layer_vectors, oracle_names, per_sample_A, rel_err
from paramact.api import DEFAULT_SKETCH_DIM, ActivationConfig, analyze
from paramact.batching import encode
from paramact.data import load_texts
from paramact.similarity import fingerprint_matrix, llmdcos

TEXTS = ["The capital of France is", "def add(a, b):\n    return a + b\n\nprint(add(2,"]


def test_engine_matches_oracle_on_smollm2(smollm2):
    model, tok = smollm2
    res = analyze(model, tok, TEXTS, ActivationConfig(batch_size=2, sketch_dim=0))  # padded batch
    an = res.anatomy
    assert an.n_layers == 30 and len(an.layers[0]) == 7
    names = oracle_names(model, an.blocks_path, an.n_layers)
    assert sorted(names) == sorted(an.names)  # every block weight is attributed
    per = [per_sample_A(model, names, encode(tok, t).ids) for t in TEXTS]
    worst = max(rel_err(res.mean_map[n], (per[0][n] + per[1][n]) / 2) for n in names)
    assert worst <= 1e-5, worst
    vecs = [layer_vectors(model, an.blocks_path, an.n_layers, p) for p in per]
    ref_norms = torch.tensor([[float(v.norm()) for v in vs] for vs in vecs])
    assert rel_err(res.norms, ref_norms) <= 1e-5
    ((_, cos),) = res.batch_llmdcos
    direct = torch.tensor([llmdcos(vecs[0][L], vecs[1][L]) for L in range(30)])
    assert (cos[:, 0, 1].double() - direct.double()).abs().max() <= 1e-5
    # the model really predicts: D is the logit of " Paris" for the first text
    with torch.no_grad():
        logits = model(**tok(TEXTS[0], return_tensors="pt")).logits[0, -1]
    assert tok.decode(logits.argmax()).strip() == "Paris"
    assert abs(float(res.target_values[0]) - float(logits.max())) <= 1e-4 * abs(float(logits.max()))


def test_default_fingerprint_error_on_real_pairs(smollm2):
    """The documented bound: at the default size, 99% of |fingerprint - exact| ≤ 0.01."""
    model, tok = smollm2
    texts = load_texts("pydoc", 8, 1)[0] + load_texts("pycode", 8, 1)[0]
    res = analyze(model, tok, texts, ActivationConfig(batch_size=16, max_length=96, sketch_dim=DEFAULT_SKETCH_DIM))
    ((_, exact),) = res.batch_llmdcos  # all 120 pairs of the 16 samples, exact
    est = fingerprint_matrix(res.fingerprints, res.fingerprints)
    iu = torch.triu_indices(16, 16, 1)
    err = (est - exact)[:, iu[0], iu[1]].abs().flatten()  # 30 layers x 120 pairs
    assert err.numel() == 3600
    assert float(err.quantile(0.99)) <= 0.01, float(err.quantile(0.99))
    assert float(err.mean()) <= 0.004, float(err.mean())
