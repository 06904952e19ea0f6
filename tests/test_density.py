"""Per-layer density measures against hand-computed values and a sort-based reference."""

import pytest
import torch

from paramact.anatomy import discover
from paramact.density import check_gammas, layer_density, mass_shares
from paramact.errors import UserError
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
    from paramact.experts import expert_density

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
    """The CPU pass (fused.bin_sums) against torch's two bincounts: every count identical, float64
    bin masses summed in another order (1e-12), and the same density rows and shares."""
    from paramact import fused

    g = torch.Generator().manual_seed(5)
    v = torch.rand(300_001, generator=g) ** 20
    v[:100] = 0
    key = (v.view(torch.int32) >> 13).clamp_(min=0)
    mass, count = fused.bin_sums(key, v)
    assert torch.equal(count, torch.bincount(key))
    assert torch.allclose(mass, torch.bincount(key, weights=v.double()), rtol=1e-12, atol=0)
    model = tiny_model("olmoe")
    an = discover(model)
    mm = {w.name: torch.rand(w.weight.shape, generator=g) ** 6 * 1e-4 for w in an.weights}
    fast = (layer_density(mm, an), mass_shares(v, (0.1, 0.5, 0.9, 0.99)))
    monkeypatch.setattr(fused, "ENABLED", False)
    slow = (layer_density(mm, an), mass_shares(v, (0.1, 0.5, 0.9, 0.99)))
    assert fast[1] == slow[1] == sort_reference(v, (0.1, 0.5, 0.9, 0.99))
    for a, b in zip(fast[0], slow[0]):
        assert a["mean_abs"] == pytest.approx(b["mean_abs"], rel=1e-12)
        assert {k: x for k, x in a.items() if k != "mean_abs"} == {k: x for k, x in b.items() if k != "mean_abs"}
