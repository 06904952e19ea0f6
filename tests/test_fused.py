"""The fused CPU kernel (paramact.fused: Σ A, ‖A‖² and the count sketch in one sweep of |G| and |W|)
against a float64 torch oracle, its independence of the thread count, and the engine's two paths
(kernel / torch, as on an accelerator) against each other on tiny dense, Conv1D and MoE models."""

import os
import subprocess
import sys

import pytest
import torch

from oracle import rel_err
from paramact import fused
from paramact.api import ActivationConfig, analyze
from paramact.reducers import SampleStats
from tiny import TEXTS, ByteTokenizer, tiny_model


def test_the_kernel_is_installed():
    # numba is a dependency: without it every CPU run silently takes the slower torch path
    assert fused.usable("cpu") and not fused.usable("meta")


def _inputs(B=3, n=37, C=53, m=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    G = torch.rand(B, n, C, generator=g)
    G[-1, : n // 3] = 0  # rows a sample never reached
    W = torch.rand(n, C, generator=g) * 2
    hr, hc = torch.randint(0, m, (n,), generator=g), torch.randint(0, m, (C,), generator=g)
    sr = torch.randint(0, 2, (n,), generator=g).float() * 2 - 1
    sc = torch.randint(0, 2, (C,), generator=g).float() * 2 - 1
    return G, W, (hr, hc, sr, sc), m


def _oracle(G, W, hashes, m):
    """Σ a, Σ a², and s_j = Σ σ(r,c) a[r,c] over h(r,c) = j, in float64, entry by entry of the hash."""
    hr, hc, sr, sc = hashes
    A = G.double() * W.double()
    B = A.shape[0]
    idx = (hr[:, None] + hc[None, :]) % m
    sign = sr.double()[:, None] * sc.double()[None, :]
    sk = torch.zeros(B, m, dtype=torch.float64)
    for j in range(m):
        sk[:, j] = (A * sign * (idx == j)).sum((1, 2))
    flat = A.reshape(B, -1)
    return A.sum((1, 2)), (A * A).sum((1, 2)), sk, flat @ flat.T


def _run(G, W, hashes, m, start, gram=False):
    tot, sq, sk = (t.clone() for t in start)
    g = torch.zeros(G.shape[0], G.shape[0], dtype=torch.float64) if gram else None
    fused.sample_stats(G, W, tot, sq, g, (sk, *hashes))
    return (tot, sq, sk) + ((g,) if gram else ())


@pytest.mark.parametrize("shape", [(3, 37, 53), (1, 5, 1024), (8, 2, 3)])
def test_kernel_matches_the_float64_oracle(shape):
    G, W, hashes, m = _inputs(*shape)
    B = shape[0]
    start = (torch.rand(B, dtype=torch.float64), torch.rand(B, dtype=torch.float64), torch.rand(B, m))
    tot, sq, sk, gram = _run(G, W, hashes, m, start, gram=True)
    o_tot, o_sq, o_sk, o_gram = _oracle(G, W, hashes, m)
    assert rel_err(gram, o_gram) <= 1e-6
    # float32 products and row sums, float64 across rows: ~1e-7 relative
    assert rel_err(tot - start[0], o_tot) <= 1e-6
    assert rel_err(sq - start[1], o_sq) <= 1e-6
    assert rel_err((sk - start[2]).double(), o_sk) <= 1e-5  # float32 buckets, as torch's index_add_
    # without the sketch and the squares: the sums alone (another compiled variant: the same sums to
    # float32 rounding, not bit for bit)
    tot2 = start[0].clone()
    fused.sample_stats(G, W, tot2, torch.zeros_like(tot2))
    assert rel_err(tot2 - start[0], o_tot) <= 1e-6


def test_kernel_is_independent_of_the_thread_count():
    G, W, hashes, m = _inputs(5, 41, 67, 128, seed=3)
    start = (torch.zeros(5, dtype=torch.float64), torch.zeros(5, dtype=torch.float64), torch.zeros(5, m))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run(G, W, hashes, m, start, gram=True)
        torch.set_num_threads(2)
        two = _run(G, W, hashes, m, start, gram=True)
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(one, two))


@pytest.mark.parametrize("family", ["llama", "gpt2", "olmoe"])
def test_engine_kernel_and_torch_paths_agree(family, monkeypatch):
    model, tok = tiny_model(family), ByteTokenizer()
    cfg = ActivationConfig(batch_size=3, sketch_dim=256)
    fast = analyze(model, tok, TEXTS[:5], cfg)
    monkeypatch.setattr(fused, "ENABLED", False)
    slow = analyze(model, tok, TEXTS[:5], cfg)
    assert rel_err(fast.norms, slow.norms) <= 1e-6 and rel_err(fast.sums, slow.sums) <= 1e-6
    # unit-scale values stored in float16 (2^-11 relative) and float32 buckets summed in another order
    assert (fast.fingerprints.float() - slow.fingerprints.float()).abs().max() <= 2e-3
    for (ia, ca), (ib, cb) in zip(fast.batch_llmdcos, slow.batch_llmdcos):
        assert ia == ib and (ca - cb).abs().max() <= 1e-6
    for k in slow.mean_map:
        assert torch.equal(fast.mean_map[k], slow.mean_map[k])
    assert torch.equal(fast.target_values, slow.target_values)


def test_without_grams_the_kernel_never_needs_a(monkeypatch):
    """The findings' reducers (mean map, norms, fingerprints) on a CPU: A = |W|·|G| is never
    written; the per-sample statistics come from the kernel alone."""

    def refuse(self, *args):
        raise AssertionError("SampleStats.update read a formed A")

    monkeypatch.setattr(SampleStats, "update", refuse)
    model, tok = tiny_model("llama"), ByteTokenizer()
    cfg = ActivationConfig(batch_size=2, sketch_dim=64, reducers=("mean_map", "norms", "fingerprints"))
    res = analyze(model, tok, TEXTS[:3], cfg)
    assert res.norms is not None and bool((res.norms > 0).all())


FIRST_LAUNCH = {
    "sample_stats": "fused.usable('cpu')",
    "histogram": "fused.histogram(torch.rand(1000), 1 << 18)",
    "bin_entries": "fused.bin_entries(torch.rand(10), [0], torch.zeros(2, 1 << 18, dtype=torch.int64))",
}


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: a reset to every core changes nothing")
@pytest.mark.parametrize("kernel", FIRST_LAUNCH)
def test_the_first_kernel_launch_keeps_torchs_thread_count(kernel):
    """numba's OpenMP pool, started by a process's first launch, resets the thread count torch shares
    to every core: `--threads 1` was undone for the rest of a run (seen on a study's cells)."""
    lines = ("import torch", "from paramact import fused", "torch.set_num_threads(1)", FIRST_LAUNCH[kernel])
    code = "\n".join([*lines, "print(torch.get_num_threads())"])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1"], out.stderr
