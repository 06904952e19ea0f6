"""The driver on the real SmolLM2-135M (30 Llama blocks): Wanda block by block against an oracle.

The oracle is teacher-forced: the inputs of block i come from a full forward of the model with the
driver's masks on blocks < i, so each block is compared on its own (mask differences can only come
from float near-ties, never compound through depth).
"""

import pytest
import torch

from paramact.anatomy import discover
from paramact.prune.driver import prune_model, token_batches
from paramact.prune.masks import parse_pattern
from paramact.prune.scores import get_method
from prune_oracle import layer_inputs, wanda_score

pytestmark = pytest.mark.slow


def test_smollm2_wanda_driver_equals_oracle_and_schedule(smollm2):
    model, _ = smollm2
    an = discover(model)
    dense = {w.name: w.module.weight.detach().clone() for w in an.weights}
    ids = torch.randint(100, 40000, (3, 48), generator=torch.Generator().manual_seed(0))
    schedule = [0.3 + 0.4 * i / 29 for i in range(30)]
    try:
        out = prune_model(model, token_batches(ids.tolist(), 2), get_method("wanda"), schedule, parse_pattern("row"))
        got = out.masks()
        for w in an.weights:
            w.module.weight.data.copy_(dense[w.name])
        checked = (0, 1, 15, 29)  # the oracle's float64 sorts are the slow part: four blocks, teacher-forced
        for i, layer in enumerate(an.layers):
            for w in layer:  # every block: exact per-row counts
                k = int(w.shape_out_in[1] * schedule[i] + 1e-9)
                assert ((~got[w.name]).sum(1) == k).all()
            assert abs(out.per_layer[i] - schedule[i]) < 1 / 576  # floor(cols·s) per row, cols >= 576
            if i in checked:
                xs = layer_inputs(model, layer, ids)
                agree = total = 0
                for w in layer:
                    score = wanda_score(w, xs[w.name])
                    k = int(score.shape[1] * schedule[i] + 1e-9)
                    ref = torch.ones_like(score, dtype=torch.bool)
                    ref.scatter_(1, torch.sort(score, dim=1, stable=True).indices[:, :k], False)
                    agree += int((got[w.name] == ref).sum())
                    total += ref.numel()
                assert agree / total >= 0.999, (i, agree / total)
            with torch.no_grad():
                for w in layer:  # the driver's mask: the next block sees the driver's inputs
                    w.module.weight[~got[w.name]] = 0
    finally:
        for w in an.weights:
            w.module.weight.data.copy_(dense[w.name])
