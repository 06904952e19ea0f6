"""Schedules: the paper's formula against its hard-coded lists, and the mean/range contract."""

import json
import math

import numpy as np
import pytest

from paramact.errors import UserError
from paramact.prune.paper_lists import IMPLIED_Z, PAPER_LISTS
from paramact.prune.schedules import (
    activation_from_z,
    activation_schedule,
    file_schedule,
    finalize,
    owl_schedule,
    paper_schedule,
    read_schedule_file,
    uniform_schedule,
    zscores,
)


@pytest.mark.parametrize("key", ["llama_7b", "llama2_7b"])
def test_formula_reproduces_paper_lists_from_implied_z(key):
    got = activation_from_z(IMPLIED_Z[key], 0.5, alpha=2.0, beta=0.2)
    ref = PAPER_LISTS[key]
    assert len(got) == len(ref) == 32
    assert max(abs(a - b) for a, b in zip(got, ref)) <= 1e-4  # measured 2.0e-5 (z given to 3 decimals)
    # the same through the counts path: z-scores of the z-scores (population std ~1.0001)
    via_counts = activation_schedule(IMPLIED_Z[key], 0.5)
    assert max(abs(a - b) for a, b in zip(via_counts, ref)) <= 1e-4


def test_other_paper_lists_are_not_the_formula_with_unit_std():
    # the paper's §3.1 lists (paper_lists.py): the 13B and Llama-3 ones come from an unrecoverable
    # variant; they still average 0.5
    for key in ("llama2_13b", "llama3_8b"):
        assert abs(np.mean(PAPER_LISTS[key]) - 0.5) < 1e-12


def test_formula_by_hand_three_layers():
    counts = [10.0, 30.0, 20.0]
    z = (np.array(counts) - 20) / np.sqrt(200 / 3)
    n = 1 / (1 + np.exp(-(z + 2 / np.arange(1, 4))))
    ref = 0.6 + 0.2 * 0.6 * (1 - n * 3 / n.sum())
    assert np.allclose(activation_schedule(counts, 0.6), ref, atol=1e-15, rtol=0)
    assert np.allclose(zscores(counts), z)


def test_more_activated_layers_get_lower_sparsity():
    s = activation_schedule([5, 5, 5, 5, 100, 5, 5, 5], 0.5, alpha=0.0)
    assert np.argmin(s) == 4


def _check(values, target, n):
    assert len(values) == n
    assert abs(np.mean(values) - target) <= 1e-12
    assert all(0.0 <= v < 1.0 for v in values)


@pytest.mark.parametrize("target", [0.0, 0.1, 0.5, 0.7, 0.9, 0.97, 0.995])
def test_every_schedule_has_exact_mean_and_range(target):
    rng = np.random.default_rng(0)
    L = 30
    _check(uniform_schedule(L, target), target, L)
    _check(activation_schedule(rng.normal(size=L) * 1000 + 5000, target), target, L)
    _check(activation_schedule(rng.normal(size=L), target, alpha=2, beta=5.0), target, L)  # forces clipping
    _check(owl_schedule(rng.random(L), target, lam=0.08), target, L)
    _check(owl_schedule(rng.random(L), target, lam=0.6), target, L)  # forces clipping
    for key in PAPER_LISTS:
        _check(paper_schedule(key, L, target)[0], target, L)


def test_finalize_clips_and_renormalises():
    s = finalize([1.5, -0.2, 0.5, 0.5], 0.5)
    _check(s, 0.5, 4)
    assert s[0] == pytest.approx(0.99) and s[1] == pytest.approx(0.01 / 3)  # the deficit goes to the free entries
    with pytest.raises(UserError):
        finalize([0.5, float("nan")], 0.5)
    with pytest.raises(UserError):
        finalize([0.5], 1.0)


def test_constant_counts_leave_only_the_depth_term():
    s = activation_schedule([7, 7, 7, 7], 0.5)
    assert s == sorted(s)  # α/i lowers the first layers' sparsity
    _check(s, 0.5, 4)


def test_paper_schedule_exact_at_its_own_size_and_scaled():
    vals, meta = paper_schedule("llama2_7b", 32, 0.5)
    assert vals == pytest.approx(list(PAPER_LISTS["llama2_7b"]), abs=1e-15)
    vals7, _ = paper_schedule("llama2_7b", 32, 0.7)
    assert np.allclose(np.array(vals7) - 0.7, (np.array(vals) - 0.5) * 0.7 / 0.5)  # deviations ∝ S
    vals30, meta = paper_schedule("llama_7b", 30, 0.5)
    assert "resampled" in meta and len(vals30) == 30
    assert vals30[0] > vals30[5] < vals30[-1]  # the paper's shape survives resampling
    with pytest.raises(UserError, match="llama2_7b"):
        paper_schedule("gpt5", 30, 0.5)


def test_owl_formula_by_hand():
    r = [0.01, 0.03, 0.02, 0.05]
    lam = 0.1
    d = (np.array(r) - 0.01) / 0.04 * 2 * lam
    ref = 0.5 - (d - d.mean())
    assert np.allclose(owl_schedule(r, 0.5, lam), ref, atol=1e-15)
    s = owl_schedule(r, 0.5, lam)
    assert max(s) - min(s) == pytest.approx(2 * lam)
    assert np.argmin(s) == 3  # most outliers -> lowest sparsity
    assert owl_schedule([0.2] * 5, 0.6, lam) == pytest.approx([0.6] * 5)


def test_file_schedule(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps({"schedule": [0.4, 0.6, 0.5]}))
    assert read_schedule_file(p) == [0.4, 0.6, 0.5]
    q = tmp_path / "s.txt"
    q.write_text("0.4, 0.6\n0.5")
    assert read_schedule_file(q) == [0.4, 0.6, 0.5]
    assert file_schedule([0.4, 0.6, 0.5], 3, None) == pytest.approx([0.4, 0.6, 0.5])
    with pytest.raises(UserError, match="3 entries but the model has 4 layers"):
        file_schedule([0.4, 0.6, 0.5], 4, None)
    with pytest.raises(UserError, match="outside"):
        file_schedule([0.4, 1.0, 0.5], 3, None)
    with pytest.raises(UserError, match="mean"):
        file_schedule([0.4, 0.6, 0.5], 3, 0.7)
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1}')
    with pytest.raises(UserError, match="list of numbers"):
        read_schedule_file(bad)
    with pytest.raises(UserError, match="cannot read"):
        read_schedule_file(tmp_path / "missing.json")
    assert math.isclose(np.mean(file_schedule([0.1, 0.2, 0.3], 3, 0.2)), 0.2)
