"""The engine against the per-sample autograd oracle, on tiny random models of eight dense
families (GPT-2 Conv1D, GQA in qwen2/mistral/gemma3) and six mixture-of-experts families
(fused experts: Mixtral, Qwen3-MoE, OLMoE, gpt-oss with its transposed experts and biases;
shared experts: Qwen2-MoE, DeepSeek-V3 with a dense first block), for every target, with padding.

The oracle differentiates whole parameters (3-D expert tensors included) one sample at a time;
a layer's vector is every block parameter with >= 2 dims that is not a bias.
Tolerance: max |engine - oracle| / max |oracle| <= 1e-5 in float32.
"""

import pytest
import torch

import paramact
from oracle import layer_vectors, oracle_names, per_sample_A, rel_err
from paramact.api import ActivationConfig, analyze
from tiny import ANSWERS, FAMILIES, MOE_FAMILIES, TEXTS, ByteTokenizer, encode_ids, tiny_model

TOL = 1e-5
TARGETS = ["max_logit", "gold_logprob", "lm_loss"]


@pytest.fixture(scope="module", params=sorted(FAMILIES) + sorted(MOE_FAMILIES))
def family(request):
    return request.param, tiny_model(request.param)


def oracle(model, anatomy, texts, target, conts):
    """Per sample: {name: A} and the per-layer vectors."""
    names = oracle_names(model, anatomy.blocks_path, anatomy.n_layers)
    tok, per, vecs = ByteTokenizer(), [], []
    for i, t in enumerate(texts):
        ids, n_prompt = encode_ids(tok, t, None if conts is None else conts[i])
        A = per_sample_A(model, names, ids, target, n_prompt)
        per.append(A)
        vecs.append(layer_vectors(model, anatomy.blocks_path, anatomy.n_layers, A))
    return names, per, vecs


@pytest.mark.parametrize("target", TARGETS)
def test_engine_matches_oracle(family, target):
    name, model = family
    tok = ByteTokenizer()
    texts = TEXTS[:5]  # different lengths: the batch is padded
    conts = ANSWERS[:5] if target == "gold_logprob" else None
    cfg = ActivationConfig(target=target, batch_size=5, sketch_dim=0)
    res = analyze(model, tok, texts, cfg, continuations=conts)
    anatomy = res.anatomy
    names, per_sample, vecs = oracle(model, anatomy, texts, target, conts)

    # 0. every block weight is attributed (coverage 1), fused experts keep their 3-D shape
    assert sorted(names) == sorted(anatomy.names) and anatomy.coverage()["share"] == 1.0
    # 1. mean map, per parameter name
    for n in names:
        ref = sum(s[n] for s in per_sample) / len(texts)
        assert res.mean_map[n].shape == ref.shape
        assert rel_err(res.mean_map[n], ref) <= TOL, (name, target, n)

    # 2. per-sample per-layer ‖A‖ and ΣA
    ref_norm = torch.tensor([[v.norm() for v in vs] for vs in vecs], dtype=torch.float64)
    ref_sum = torch.tensor([[v.sum() for v in vs] for vs in vecs], dtype=torch.float64)
    assert rel_err(res.norms, ref_norm) <= TOL
    assert rel_err(res.sums, ref_sum) <= TOL

    # 3. LLMDcos of every pair in the batch, against the direct formula on oracle vectors
    ((_ids, cos),) = res.batch_llmdcos
    for L in range(anatomy.n_layers):
        for i in range(len(texts)):
            for j in range(len(texts)):
                direct = paramact.llmdcos(vecs[i][L], vecs[j][L])
                assert abs(float(cos[L, i, j]) - direct) <= TOL, (name, target, L, i, j)


@pytest.mark.parametrize("family", sorted(MOE_FAMILIES))
def test_expert_statistics_match_oracle(family):
    """Per sample and expert: the activation mass equals the oracle's Σ A over the expert's slices,
    and the routed-token counts equal a direct count of the router's top-k over real tokens."""
    model, tok = tiny_model(family), ByteTokenizer()
    texts = TEXTS[:5]
    res = analyze(model, tok, texts, ActivationConfig(batch_size=3, sketch_dim=0))  # two padded batches
    an = res.anatomy
    _names, per, _ = oracle(model, an, texts, "max_logit", None)
    assert res.expert_tokens.shape == res.expert_mass.shape == (5, len(an.experts), 4)
    routed: dict[int, list[torch.Tensor]] = {}

    def record(layer):
        def hook(_m, args):  # the experts' call: (hidden_states, top_k_index, top_k_weights)
            routed.setdefault(layer, []).append(args[1])

        return hook

    handles = [g.module.register_forward_pre_hook(record(g.layer)) for g in an.experts]
    try:
        for t in texts:
            with torch.no_grad():
                model(input_ids=torch.tensor([encode_ids(tok, t)[0]]))
    finally:
        for h in handles:
            h.remove()
    for j, g in enumerate(an.experts):
        for i in range(len(texts)):
            top = routed[g.layer][i]  # [T, k] this sample's routing, unpadded
            direct = torch.bincount(top.flatten(), minlength=g.n_experts)
            assert torch.equal(res.expert_tokens[i, j], direct), (family, g.layer, i)
            for e in range(g.n_experts):
                ref = sum(float(per[i][n][e].sum()) for n in g.names)
                assert abs(float(res.expert_mass[i, j, e]) - ref) <= TOL * max(ref, 1e-12) + 1e-12
    # every real token reaches k = 2 experts in every MoE layer
    assert (res.expert_tokens.sum(-1) == 2 * torch.tensor([len(encode_ids(tok, t)[0]) for t in texts])[:, None]).all()


@pytest.mark.parametrize("family", ["mixtral", "gpt_oss"])
def test_moe_batch_size_and_padding_invariance(family):
    """Batch size 1, 2 and 5 (every sample padded differently) give the same statistics."""
    model, tok = tiny_model(family), ByteTokenizer()
    runs = [analyze(model, tok, TEXTS[:5], ActivationConfig(batch_size=b, sketch_dim=0)) for b in (1, 2, 5)]
    for r in runs[1:]:
        for k in runs[0].mean_map:
            assert rel_err(r.mean_map[k], runs[0].mean_map[k]) <= TOL
        assert rel_err(r.norms, runs[0].norms) <= TOL
        assert torch.equal(r.expert_tokens, runs[0].expert_tokens)
        assert rel_err(r.expert_mass, runs[0].expert_mass) <= TOL


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
    names = oracle_names(model, an.blocks_path, an.n_layers)
    assert got.shape == (3, an.n_layers)
    for k, (a, b) in enumerate(pairs):
        va = layer_vectors(model, an.blocks_path, an.n_layers, per_sample_A(model, names, encode_ids(tok, a)[0]))
        vb = layer_vectors(model, an.blocks_path, an.n_layers, per_sample_A(model, names, encode_ids(tok, b)[0]))
        for L in range(an.n_layers):
            assert abs(float(got[k, L]) - paramact.llmdcos(va[L], vb[L])) <= TOL
    assert torch.allclose(got[1], torch.ones(an.n_layers))  # a text with itself


def test_padded_expert_layout_equals_segments(monkeypatch):
    """Accelerators form an expert's per-sample gradients in one padded batched product, a CPU in one
    exact-size product per sample: the same statistics (the padded path, forced here on the CPU)."""
    import paramact.engine as engine

    model, tok = tiny_model("olmoe"), ByteTokenizer()
    cfg = ActivationConfig(batch_size=5, sketch_dim=256)
    seg = analyze(model, tok, TEXTS[:5], cfg)
    monkeypatch.setattr(engine, "PADDED_ON_CPU", True)
    pad = analyze(model, tok, TEXTS[:5], cfg)
    for k in seg.mean_map:
        assert rel_err(pad.mean_map[k], seg.mean_map[k]) <= 1e-6
    assert rel_err(pad.norms, seg.norms) <= 1e-6 and rel_err(pad.fingerprints.float(), seg.fingerprints.float()) <= 1e-3
    assert torch.equal(pad.expert_tokens, seg.expert_tokens)


def test_matrices_reading_one_input_share_its_padding_copy(monkeypatch):
    """In the masked layout of a padded batch q/k/v (and gate/up) read one input tensor: it is masked once per forward
    (4 copies per llama block, not 7), and the statistics equal those of one copy per matrix."""
    import paramact.engine as engine

    model, tok = tiny_model("llama"), ByteTokenizer()
    cfg = ActivationConfig(batch_size=5, sketch_dim=256)
    monkeypatch.setattr(engine, "PADDED_ON_CPU", True)  # the masked layout accelerators use
    copies = []
    real_where = torch.where

    def counting_where(cond, *args, **kw):
        if args and cond.dim() == 3 and cond.shape[-1] == 1:  # the engine's [B, T, 1] input mask
            copies.append(cond.shape)
        return real_where(cond, *args, **kw)

    monkeypatch.setattr(engine.torch, "where", counting_where)
    shared = analyze(model, tok, TEXTS[:5], cfg)
    n_layers = shared.anatomy.n_layers
    # 4 distinct inputs per block (attention input, o_proj input, MLP input, down_proj input),
    # and _dense masks the 7 output gradients
    assert len(copies) == n_layers * (4 + 7)
    copies.clear()
    own = engine.Engine._masked_input

    def forgetful(self, x, valid):  # no input is remembered: one copy per matrix
        self._last_input = None
        return own(self, x, valid)

    monkeypatch.setattr(engine.Engine, "_masked_input", forgetful)
    separate = analyze(model, tok, TEXTS[:5], cfg)
    assert len(copies) == n_layers * (7 + 7)
    for k in shared.mean_map:
        assert torch.equal(shared.mean_map[k], separate.mean_map[k])
    assert torch.equal(shared.norms, separate.norms) and torch.equal(shared.fingerprints, separate.fingerprints)


@pytest.mark.parametrize("family", ["llama", "gpt2", "opt"])
def test_right_padded_batches_on_a_cpu_use_exact_size_products(monkeypatch, family):
    """On a CPU a right-padded batch makes no masked copies: each sample's gradient is one product
    over its own real tokens. The statistics equal the masked batched layout's (accelerators')."""
    import paramact.engine as engine

    model, tok = tiny_model(family), ByteTokenizer()
    cfg = ActivationConfig(batch_size=5, sketch_dim=256)
    masks = []
    real_where = torch.where

    def counting_where(cond, *args, **kw):
        if args and cond.dim() == 3 and cond.shape[-1] == 1:  # the engine's [B, T, 1] masks
            masks.append(cond.shape)
        return real_where(cond, *args, **kw)

    monkeypatch.setattr(engine.torch, "where", counting_where)
    exact = analyze(model, tok, TEXTS[:5], cfg)
    assert masks == []
    monkeypatch.setattr(engine, "PADDED_ON_CPU", True)
    masked = analyze(model, tok, TEXTS[:5], cfg)
    assert len(masks) > 0  # the batch is padded: the masked layout did copy
    for k in exact.mean_map:
        assert rel_err(exact.mean_map[k], masked.mean_map[k]) <= 1e-6
    assert rel_err(exact.norms, masked.norms) <= 1e-6
    assert rel_err(exact.fingerprints.float(), masked.fingerprints.float()) <= 1e-3


def test_a_left_padded_batch_falls_back_to_masking():
    """Segments need each sample's real tokens first; a left-padded batch is masked instead."""
    import paramact.engine as engine

    eng = engine.Engine(tiny_model("llama"))
    eng._valid = torch.tensor([[True, True, False], [True, True, True]])
    assert eng._right_padded_segments() == [(0, 2), (3, 3)]
    eng._valid = torch.tensor([[False, True, True], [True, True, True]])
    assert eng._right_padded_segments() is None


def test_an_input_changed_in_place_is_copied_again():
    import paramact.engine as engine

    eng = engine.Engine(tiny_model("llama"))
    eng._padded = True
    valid = torch.tensor([[True, True, False]])
    x = torch.ones(1, 3, 4)
    first = eng._masked_input(x, valid)
    assert eng._masked_input(x, valid) is first  # the same input: its copy is shared
    x.add_(1)  # changed in place after the first matrix read it
    again = eng._masked_input(x, valid)
    assert again is not first and torch.equal(again[0, :2], torch.full((2, 4), 2.0))
    assert torch.equal(again[0, 2], torch.zeros(4)) and torch.equal(first[0, :2], torch.ones(2, 4))
    assert eng._masked_input(torch.ones(1, 3, 4), valid) is not again  # another tensor, equal values
