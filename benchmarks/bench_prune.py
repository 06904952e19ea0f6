"""Prune-time benchmark on SmolLM2-135M: paramact's driver with Wanda vs a straightforward reference.

    python benchmarks/bench_prune.py [--nsamples 16] [--seqlen 256] [--reps 2] [--threads N] [--json out.json]

The reference is the algorithm written plainly in one function (below): catch the inputs of block
0 one sample at a time, then per block a batch-1 forward per sample with hooks summing x² per input
column, |W|·sqrt(mean x²), a per-row sort, zero the lowest floor(cols·s), and a second batch-1
forward per sample through the pruned block. Both run on the same calibration windows, interleaved,
`reps` times each, from the same dense weights; medians. Their masks are compared too.
Absolute times on a shared machine are noise; the ratio (driver / reference, goal <= 1.0) is the result.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
from torch import nn

import paramact
from paramact.data import calibration
from paramact.prune.driver import prune_model, token_batches
from paramact.prune.masks import parse_pattern
from paramact.prune.scores import get_method


class _Caught(Exception):
    pass


@torch.no_grad()
def reference_wanda(model, windows: list[list[int]], sparsity: float) -> dict[str, torch.Tensor]:
    """Wanda, layer by layer, batch 1, for a Llama-layout model (model.model.layers). Returns keep masks."""
    layers = model.model.layers
    inps, kw = [], {}

    def catch(_m, args, kwargs):
        inps.append(args[0] if args else kwargs["hidden_states"])
        kw.update({k: v for k, v in kwargs.items() if k != "hidden_states"})
        raise _Caught

    h = layers[0].register_forward_pre_hook(catch, with_kwargs=True)
    for w in windows:
        try:
            model(torch.tensor([w]), use_cache=False)
        except _Caught:
            pass
    h.remove()
    masks = {}
    for li, layer in enumerate(layers):
        linears = {n: m for n, m in layer.named_modules() if isinstance(m, nn.Linear)}
        sq = {n: torch.zeros(m.in_features, dtype=torch.float64) for n, m in linears.items()}  # order-free sums
        count = {"tokens": 0}

        def hook(name, sq=sq, count=count):
            def f(_m, inp, _out):
                x = inp[0].reshape(-1, inp[0].shape[-1]).float()
                sq[name] += (x * x).sum(0).double()
                if name == "self_attn.q_proj":
                    count["tokens"] += x.shape[0]

            return f

        hooks = [m.register_forward_hook(hook(n)) for n, m in linears.items()]
        for x in inps:
            layer(x, **kw)
        for hk in hooks:
            hk.remove()
        for n, m in linears.items():
            metric = m.weight.abs() * torch.sqrt(sq[n] / count["tokens"]).float()[None, :]
            k = int(metric.shape[1] * sparsity)
            idx = torch.sort(metric, dim=1, stable=True).indices[:, :k]
            keep = torch.ones_like(metric, dtype=torch.bool).scatter_(1, idx, False)
            m.weight[~keep] = 0
            masks[f"model.layers.{li}.{n}.weight"] = keep
        outs = []
        for x in inps:
            o = layer(x, **kw)
            outs.append(o[0] if isinstance(o, tuple) else o)
        inps = outs
    return masks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--batch-size", type=int, default=8, help="driver batch")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, tok = paramact.load_model("smollm2-135m")
    windows, _ = calibration("c4", tok, args.nsamples, args.seqlen, 0)
    an = paramact.discover(model)
    dense = {w.name: w.module.weight.detach().clone() for w in an.weights}

    def restore():
        for w in an.weights:
            w.module.weight.data.copy_(dense[w.name])

    times = {"driver": [], "reference": []}
    masks = {}
    L = an.n_layers
    for rep in range(args.reps):
        for name in ("driver", "reference"):
            restore()
            t = time.perf_counter()
            if name == "driver":
                out = prune_model(
                    model,
                    token_batches(windows, args.batch_size),
                    get_method("wanda"),
                    [args.sparsity] * L,
                    parse_pattern("row"),
                )
                m = out.masks()
            else:
                m = reference_wanda(model, windows, args.sparsity)
            times[name].append(time.perf_counter() - t)
            masks[name] = m
            print(f"rep {rep} {name:9s} {times[name][-1]:.1f} s", file=sys.stderr, flush=True)
    restore()
    agree = sum(int((masks["driver"][k] == masks["reference"][k]).sum()) for k in masks["reference"])
    total = sum(v.numel() for v in masks["reference"].values())
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {
        "what": "prune time, Wanda 50% per-row, SmolLM2-135M, driver (batched) / reference (batch 1, one function)",
        "nsamples": args.nsamples,
        "seqlen": args.seqlen,
        "driver_batch_size": args.batch_size,
        "reps": args.reps,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "seconds": times,
        "median_s": med,
        "ratio": med["driver"] / med["reference"],
        "goal": "ratio <= 1.0",
        "mask_agreement": agree / total,
    }
    print(json.dumps(res, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
