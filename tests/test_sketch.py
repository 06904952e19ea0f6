"""Count-sketch fingerprints: unbiased, with the variance the theory predicts.

For a, b >= 0 and m buckets, Var(s(a)·s(b)) = (1/m) Σ_{k≠l} (a_k² b_l² + a_k b_k a_l b_l)
under a random hash. The test draws all pairs of 12 samples over every layer of a tiny
model and checks z = (estimate - exact) / predicted_sd has mean ≈ 0 and sd ≈ 1.
"""

import itertools

import torch

from paramact.api import ActivationConfig, analyze
from paramact.batching import make_batches
from paramact.engine import Engine
from paramact.similarity import fingerprint_matrix, llmdcos, llmdcos_from_gram
from tiny import ByteTokenizer, tiny_model

TEXTS = [f"sample number {i}: " + "abcdefghij"[: (i % 7) + 3] * (i % 4 + 1) for i in range(12)]


class Capture:
    """Test sink: keeps every sample's full layer vector (what paramact never does)."""

    def __init__(self, anatomy):
        self.anatomy = anatomy
        self.vecs = {}

    def begin_batch(self, batch):
        self._parts = {}

    def update(self, w, rows, A):  # row blocks arrive in order
        self._parts.setdefault(w.layer, []).append(A.reshape(A.shape[0], -1).double().clone())

    def end_batch(self, batch):
        for layer, parts in self._parts.items():
            full = torch.cat(parts, 1)
            for b, i in enumerate(batch.index):
                self.vecs[(i, layer)] = full[b]


def _exact_vectors(model, tok):
    from paramact.anatomy import discover

    anatomy = discover(model)
    cap = Capture(anatomy)
    batches, _ = make_batches(tok, TEXTS, 4)
    with Engine(model, anatomy) as eng:
        for b in batches:
            eng.run(b, "max_logit", [cap])
    return anatomy, cap.vecs


def test_sketch_is_unbiased_with_predicted_variance():
    """Over 16 hash seeds: pooled z has sd ≈ 1, and the seed-averaged estimate is unbiased.

    (Within one seed the pair errors are strongly correlated, so bias is judged across seeds.)
    """
    model, tok = tiny_model("llama", seed=3), ByteTokenizer()
    m, seeds = 512, 16
    anatomy, vecs = _exact_vectors(model, tok)
    pairs = [(L, i, j) for L in range(anatomy.n_layers) for i in range(len(TEXTS)) for j in range(i + 1, len(TEXTS))]
    exact, sd = [], []
    for L, i, j in pairs:
        a, b = vecs[(i, L)], vecs[(j, L)]
        a, b = a / a.norm(), b / b.norm()
        ab, aa_bb = float(a @ b), float((a * a) @ (b * b))
        exact.append(llmdcos(a, b))
        sd.append(((1.0 - 2 * aa_bb + ab * ab) / m) ** 0.5)
    exact, sd = torch.tensor(exact, dtype=torch.float64), torch.tensor(sd, dtype=torch.float64)
    est = torch.empty(seeds, len(pairs), dtype=torch.float64)
    for s in range(seeds):
        fp = analyze(model, tok, TEXTS, ActivationConfig(batch_size=4, sketch_dim=m, sketch_seed=s)).fingerprints
        mat = fingerprint_matrix(fp, fp).double()
        est[s] = torch.stack([mat[L, i, j] for L, i, j in pairs])
    z = (est - exact) / sd
    assert 0.8 < float(z.std()) < 1.2, float(z.std())
    # seed-averaged error per pair ~ N(0, 1/seeds) in z units: its mean over pairs is near 0
    zbar = z.mean(0)
    assert abs(float(zbar.mean())) < 0.25, float(zbar.mean())
    assert float(zbar.abs().max()) < 4.5 / seeds**0.5


def test_sketch_is_deterministic_per_seed_and_differs_across_seeds():
    model, tok = tiny_model("gpt2"), ByteTokenizer()

    def run(seed):
        return analyze(model, tok, TEXTS[:3], ActivationConfig(batch_size=3, sketch_dim=128, sketch_seed=seed))

    a, b, c = run(5).fingerprints, run(5).fingerprints, run(6).fingerprints
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_gram_llmdcos_equals_direct_formula():
    g = torch.Generator().manual_seed(0)
    X = torch.rand(6, 1000, generator=g, dtype=torch.float64) ** 4  # non-negative, heavy-tailed
    X[2] = 0  # a zero vector: LLMDcos defined as 0
    cos = llmdcos_from_gram(X @ X.T)
    for i in range(6):
        for j in range(6):
            assert abs(float(cos[i, j]) - llmdcos(X[i], X[j])) < 1e-12
    # signs are ignored by definition: LLMDcos of signed vectors uses |a|
    assert abs(llmdcos(-X[0], X[1]) - llmdcos(X[0], X[1])) < 1e-12


def test_sketch_equals_its_hash_entry_by_entry():
    """The vectorized sketch of uneven row blocks, against s_h += sigma a built one entry at a time
    (float64) from the documented hash h = (hr[r] + hc[c]) mod m, sigma = sr[r]·sc[c], drawn here
    from the seed as the first version drew them (fingerprints stay comparable across versions)."""
    from paramact.anatomy import discover
    from paramact.sketch import CountSketch, _seed_for

    model = tiny_model("llama", seed=1)
    anatomy = discover(model)
    m = 64
    sk = CountSketch(anatomy, m, seed=7)
    w = max(anatomy.weights, key=lambda w: w.numel)
    R, C = w.weight.shape
    A = torch.rand(3, R, C, generator=torch.Generator().manual_seed(0))
    out = sk.zeros(3, A.device)[w.layer]
    cuts = [0, 1, R // 3, R // 3 + 1, R]  # a one-row block, then most of the matrix
    for r0, r1 in itertools.pairwise(cuts):
        sk.add(out, w, slice(r0, r1), A[:, r0:r1])
    g = torch.Generator().manual_seed(_seed_for(7, w.layer, w.slot))
    hr, hc = torch.randint(0, m, (R, 1), generator=g), torch.randint(0, m, (1, C), generator=g)
    sr = torch.randint(0, 2, (R, 1), generator=g) * 2 - 1
    sc = torch.randint(0, 2, (1, C), generator=g) * 2 - 1
    assert torch.equal(sk._params[w.key][0], hr) and torch.equal(sk._params[w.key][1], hc)
    ref = torch.zeros(3, m, dtype=torch.float64)
    for r in range(R):
        for c in range(C):
            ref[:, int(hr[r, 0] + hc[0, c]) % m] += float(sr[r, 0] * sc[0, c]) * A[:, r, c].double()
    assert float((out.double() - ref).abs().max()) < 1e-5
    # the hash is the seed's: the same for another instance, different for another seed
    assert torch.equal(CountSketch(anatomy, m, seed=7)._params[w.key][0], hr)
    assert not torch.equal(CountSketch(anatomy, m, seed=8)._params[w.key][0], hr)
