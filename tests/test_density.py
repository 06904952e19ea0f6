"""Per-layer density measures against hand-computed values and a sort-based reference."""

import pytest
import torch

from paramact.anatomy import discover
from paramact.density import Histogram, check_gammas, layer_density, mass_shares
from paramact.errors import UserError
from paramact.experts import expert_density
from tiny import tiny_model


def sort_reference(v, fractions):
    s = torch.sort(v.flatten().double(), descending=True).values
    cum = torch.cumsum(s, 0)
    return [min(int(torch.searchsorted(cum, f * cum[-1])) + 1, len(s)) / len(s) for f in fractions]


def test_mass_shares_by_hand():
    v = torch.tensor([5.0, 3.0, 1.0, 1.0, 0.0])  # total 10: 50% needs {5}, 90% needs {5, 3, 1}
    assert mass_shares(v) == [1 / 5, 3 / 5]
    assert mass_shares(torch.ones(4)) == [2 / 4, 4 / 4]
    assert mass_shares(torch.zeros(7)) == [0.0, 0.0]


@pytest.mark.parametrize("power", [1, 8, 40])
def test_mass_shares_equal_full_sort(power):
    g = torch.Generator().manual_seed(power)
    v = torch.rand(200_000, generator=g) ** power  # from flat to extremely heavy-tailed
    v[:1000] = 0
    assert mass_shares(v, (0.1, 0.5, 0.9, 0.99)) == sort_reference(v, (0.1, 0.5, 0.9, 0.99))


def test_layer_density_counts_by_hand():
    model = tiny_model("llama")
    an = discover(model)
    mm = {w.name: torch.zeros(w.weight.shape) for w in an.weights}
    first = an.layers[1][0].name
    mm[first].view(-1)[:10] = torch.tensor([1e-7, 3e-6, 3e-6, 1e-5, 1e-5, 1e-5, 1e-4, 1e-4, 1e-4, 1e-4])
    rows = layer_density(mm, an, (2e-6, 5e-6, 2e-5))
    assert rows[1]["count_above"] == {"2e-06": 9, "5e-06": 7, "2e-05": 4}
    assert rows[0]["count_above"] == {"2e-06": 0, "5e-06": 0, "2e-05": 0}
    total = 1e-7 + 6e-6 + 3e-5 + 4e-4
    assert rows[1]["mean_abs"] == pytest.approx(total / an.layer_params(1), rel=1e-6)
    assert rows[1]["mass_share_50"] == pytest.approx(3 / an.layer_params(1))  # half of 4.361e-4 needs three 1e-4
    # the model-wide mean is total / all params: exactly the ten non-zero entries exceed it
    assert rows[1]["share_above_model_mean"] == pytest.approx(10 / an.layer_params(1))


def test_density_makes_every_tensor_on_its_inputs_device():
    """A GPU stand-in: with the default device set to meta, a tensor made without device= would
    meet the CPU inputs on another device and fail (as a CPU-made tensor meets CUDA inputs, seen on
    an H200: torch.searchsorted refused the mix). Inputs on the CPU give the same numbers."""
    v = torch.rand(50_000, generator=torch.Generator().manual_seed(0)) ** 8
    model = tiny_model("mixtral")
    an = discover(model)
    mm = {w.name: torch.rand(w.weight.shape, generator=torch.Generator().manual_seed(1)) * 1e-4 for w in an.weights}
    want = (mass_shares(v, (0.1, 0.5, 0.9)), layer_density(mm, an), expert_density(mm, an, (2e-6, 2e-5)))
    with torch.device("meta"):
        got = (mass_shares(v, (0.1, 0.5, 0.9)), layer_density(mm, an), expert_density(mm, an, (2e-6, 2e-5)))
    assert got == want


@pytest.mark.parametrize("bad", [(0.0,), (-1e-6,), (float("nan"),), (float("inf"),), ()])
def test_bad_gammas(bad):
    with pytest.raises(UserError):
        check_gammas(bad)


def test_density_kernel_and_torch_paths_agree(monkeypatch):
    """The CPU passes (fused.histogram, fused.bin_entries) against torch's bincounts and masks: every
    count and entry identical, float64 bin masses summed in another order (1e-12), and the same
    density rows and shares."""
    from paramact import fused

    g = torch.Generator().manual_seed(5)
    v = torch.rand(300_001, generator=g) ** 20
    v[:100] = 0
    key = (v.view(torch.int32) >> 13).clamp_(min=0)
    nb = int(key.max()) + 1
    mass, count = fused.histogram(v, nb)
    assert torch.equal(count.sum(0), torch.bincount(key))
    assert torch.allclose(mass.sum(0), torch.bincount(key, weights=v.double()), rtol=1e-12, atol=0)
    assert count[0].sum() == 150_000  # two fixed halves, whatever the thread count
    keys = sorted({0, int(key[100_000]), int(key[200_000]), nb - 1})
    assert len(keys) == 4
    for k, got in zip(keys, fused.bin_entries(v, keys, count)):
        assert torch.equal(torch.sort(got).values, torch.sort(v[key == k]).values) and len(got) > 0
    model = tiny_model("olmoe")
    an = discover(model)
    mm = {w.name: torch.rand(w.weight.shape, generator=g) ** 6 * 1e-4 for w in an.weights}
    fast = (layer_density(mm, an), mass_shares(v, (0.1, 0.5, 0.9, 0.99)), expert_density(mm, an, (2e-6, 2e-5)))
    monkeypatch.setattr(fused, "ENABLED", False)
    slow = (layer_density(mm, an), mass_shares(v, (0.1, 0.5, 0.9, 0.99)), expert_density(mm, an, (2e-6, 2e-5)))
    assert fast[1] == slow[1] == sort_reference(v, (0.1, 0.5, 0.9, 0.99))
    for a, b in zip(fast[0], slow[0]):
        assert a["mean_abs"] == pytest.approx(b["mean_abs"], rel=1e-12)
        assert {k: x for k, x in a.items() if k != "mean_abs"} == {k: x for k, x in b.items() if k != "mean_abs"}
    for a, b in zip(fast[2], slow[2]):
        for x, y in zip(a["experts"], b["experts"]):
            assert x["mass"] == pytest.approx(y["mass"], rel=1e-12)
            assert {k: z for k, z in x.items() if k != "mass"} == {k: z for k, z in y.items() if k != "mass"}


@pytest.mark.parametrize("kernel", [True, False])
def test_counts_above_equal_direct_compares(monkeypatch, kernel):
    """Counts from the histogram (whole bins above the threshold's bin, compares inside it) equal
    float32 compares over every entry, for thresholds that are entries themselves, their float32
    neighbours, zero, and values above every entry."""
    from paramact import fused

    monkeypatch.setattr(fused, "ENABLED", kernel)
    v = torch.rand(200_000, generator=torch.Generator().manual_seed(3)) ** 12 * 1e-3
    v[:50] = 0
    picks = v[torch.tensor([60, 999, 123_456, 199_999])]
    ts = [0.0, 2e-6, 5e-6, 2e-5, float(v.max()), 1.0]
    for p in picks:
        ts += [float(p), float(torch.nextafter(p, torch.tensor(0.0))), float(torch.nextafter(p, torch.tensor(1.0)))]
    counts, _ = Histogram(v).summary(ts)
    assert counts == [int(torch.count_nonzero(v > t)) for t in ts]


def test_non_finite_mean_map_is_one_clear_error():
    v = torch.rand(1000)
    v[3] = float("nan")
    with pytest.raises(UserError, match="non-finite"):
        mass_shares(v)
