"""Masks: brute-force oracles for row / matrix / N:M selection, bit-packed round trips."""

import pytest
import torch

from paramact.errors import UserError
from paramact.prune.collect import InputStats
from paramact.prune.masks import count_pruned, keep_mask, pack_masks, parse_pattern, unpack_masks
from paramact.prune.scores import MatrixContext, wanda_score


def brute_row(score: torch.Tensor, s: float) -> torch.Tensor:
    """Per row: prune the floor(cols·s) lowest scores, ties to the lower column index."""
    rows, cols = score.shape
    k = int(cols * s + 1e-9)
    keep = torch.ones(rows, cols, dtype=torch.bool)
    for r in range(rows):
        order = sorted(range(cols), key=lambda j: (float(score[r, j]), j))
        for j in order[:k]:
            keep[r, j] = False
    return keep


@pytest.mark.parametrize("s", [0.0, 0.3, 0.5, 0.7, 0.95])
def test_wanda_mask_equals_brute_force_per_row(s):
    g = torch.Generator().manual_seed(1)
    W = torch.randn(12, 40, generator=g)
    X = torch.randn(300, 40, generator=g) * torch.linspace(0.1, 3, 40)
    st = InputStats("norms")
    st.add(X[:100])
    st.add(X[100:])  # two batches accumulate like one
    norm = torch.sqrt((X * X).sum(0) / X.shape[0])
    assert torch.allclose(st.col_norm(), norm, rtol=1e-6)
    score = wanda_score(W, MatrixContext("w", st))
    oracle = brute_row(W.abs() * norm[None, :], s)
    assert torch.equal(keep_mask(score, s, parse_pattern("row")), oracle)
    assert int((~oracle).sum()) == 12 * int(40 * s + 1e-9)


def test_row_mask_ties_break_by_position():
    score = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 1.0, 1.0, 0.0]])
    keep = keep_mask(score, 0.5, parse_pattern("row"))
    assert keep.tolist() == [[False, False, True, True], [True, False, True, False]]


def test_matrix_mask_counts_over_the_whole_matrix():
    g = torch.Generator().manual_seed(2)
    score = torch.rand(9, 11, generator=g)
    keep = keep_mask(score, 0.4, parse_pattern("matrix"))
    k = int(99 * 0.4)
    assert int((~keep).sum()) == k
    assert float(score[~keep].max()) <= float(score[keep].min())  # every pruned score below every kept one


@pytest.mark.parametrize("spec", ["2:4", "4:8", "1:4", "3:8"])
def test_nm_mask_has_exactly_n_zeros_per_group(spec):
    p = parse_pattern(spec)
    g = torch.Generator().manual_seed(3)
    score = torch.rand(7, 32, generator=g)
    keep = keep_mask(score, 0.5, p).reshape(7, 32 // p.m, p.m)
    assert ((~keep).sum(-1) == p.n).all()
    groups = score.reshape(7, -1, p.m)
    # the pruned entries are the N smallest of each group
    for r in range(7):
        for q in range(groups.shape[1]):
            pruned = sorted(groups[r, q][~keep[r, q]].tolist())
            assert pruned == sorted(groups[r, q].tolist())[: p.n]


@pytest.mark.parametrize("bad", ["4:2", "2:2", "0:4", "a:b", "blocks", "2:4:8"])
def test_bad_patterns_are_user_errors(bad):
    with pytest.raises(UserError):
        parse_pattern(bad)


def test_nm_needs_width_multiple_of_m():
    with pytest.raises(UserError, match="multiple of 8"):
        keep_mask(torch.rand(3, 12), 0.5, parse_pattern("4:8"))


def test_count_pruned_is_robust_to_float_rounding():
    assert count_pruned(10, 0.7) == 7 and count_pruned(576, 0.5) == 288 and count_pruned(3, 0.0) == 0


def test_packed_masks_round_trip(tmp_path):
    from safetensors import safe_open

    from paramact.runs import read_tensors, write_tensors

    g = torch.Generator().manual_seed(4)
    masks = {
        "a.weight": torch.rand(5, 13, generator=g) > 0.5,
        "b.weight": torch.rand(1, 1, generator=g) > 2,
        "c.weight": torch.ones(8, 8, dtype=torch.bool),
    }
    tensors, meta = pack_masks(masks)
    assert all(t.dtype == torch.uint8 for t in tensors.values())
    assert tensors["a.weight"].numel() == (65 + 7) // 8  # one bit per weight
    write_tensors(tmp_path / "m.safetensors", tensors, meta)
    with safe_open(str(tmp_path / "m.safetensors"), "pt") as f:
        meta2 = f.metadata()
    back = unpack_masks(read_tensors(tmp_path / "m.safetensors"), meta2)
    assert sorted(back) == sorted(masks)
    for k in masks:
        assert torch.equal(back[k], masks[k])


@pytest.mark.parametrize("k", [0, 1, 5, 17, 29, 30])
def test_selection_equals_a_stable_sort_with_many_ties(k):
    from paramact.prune.masks import lowest_keep as _lowest

    g = torch.Generator().manual_seed(k)
    score = torch.randint(0, 4, (50, 30), generator=g).float()  # heavy ties
    keep = torch.ones_like(score, dtype=torch.bool)
    if k:
        keep.scatter_(1, torch.sort(score, dim=1, stable=True).indices[:, :k], False)
    assert torch.equal(_lowest(score, k), keep)
