"""Engine benchmark on a mixture-of-experts model: ratios measured side by side in one run.

    python benchmarks/bench_moe.py [--reps 5] [--device cpu|cuda] [--json out.json]

A Mixtral-style model built from a config with random weights (4 layers, 8 experts, top-2,
hidden 256, expert width 512, vocabulary 4096), 8 samples of 128 tokens:

- plain: a training step's work with the model's own experts implementation (transformers'
  default, grouped_mm): forward with full logits, backward with weight gradients;
- engine, mean map: paramact's engine step (forward, backward, per-sample A of every weight,
  the experts one at a time through paramact's experts implementation) feeding the mean map and
  the per-expert usage;
- engine, every reducer: also per-sample norms, sums, in-batch Grams and 65 536-bucket
  fingerprints of every layer.

Absolute times on a shared machine are noise; the ratios are the result. Configurations run
interleaved, `reps` times each after a warm-up; medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from bench_engine import plain_step  # one plain step for every benchmark
from paramact.anatomy import discover
from paramact.api import DEFAULT_SKETCH_DIM
from paramact.batching import Batch
from paramact.engine import Engine
from paramact.experts import ExpertUsage
from paramact.reducers import MeanMap, SampleStats

CONFIG = {
    "vocab_size": 4096,
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "num_local_experts": 8,
    "num_experts_per_tok": 2,
    "max_position_embeddings": 512,
}
B, T = 8, 128


def build(device: str):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model("mixtral", **CONFIG), dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.05)
    return model.to(device).eval()


def batch(device: str) -> Batch:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, CONFIG["vocab_size"], (B, T), generator=g)
    return Batch(ids.to(device), torch.ones(B, T, dtype=torch.long, device=device), None, list(range(B)))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("bench_moe: --device cuda but this machine (or this torch build) has no CUDA device")
    dev = args.device
    model, b = build(dev), batch(dev)
    an = discover(model)
    n_weights = sum(p.numel() for p in an.params().values())

    def run(sinks):
        def f():
            with Engine(model, an) as eng:
                eng.run(b, "max_logit", sinks())

        return f

    fns = {
        "plain": lambda: plain_step(model, b),
        "engine_mean_map": run(lambda: [MeanMap(an), ExpertUsage(an)]),
        "engine_all": run(lambda: [MeanMap(an), SampleStats(an, DEFAULT_SKETCH_DIM), ExpertUsage(an)]),
    }
    times = {k: [] for k in fns}
    for f in fns.values():  # warm-up
        f()
    for _ in range(args.reps):
        for k, f in fns.items():
            sync(dev)
            t = time.perf_counter()
            f()
            sync(dev)
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {
        "device": dev,
        "threads": torch.get_num_threads(),
        "config": CONFIG,
        "batch": [B, T],
        "block_weights": n_weights,
        "reps": args.reps,
        "median_seconds": med,
        "engine_mean_map_over_plain": med["engine_mean_map"] / med["plain"],
        "engine_all_over_plain": med["engine_all"] / med["plain"],
        "goal": "engine step / plain step <= 1.3",
    }
    print(
        f"MoE {CONFIG['num_hidden_layers']} layers x {CONFIG['num_local_experts']} experts top-"
        f"{CONFIG['num_experts_per_tok']}, hidden {CONFIG['hidden_size']}, {B}x{T} tokens, {dev}, "
        f"{res['threads']} threads, medians of {args.reps}:"
    )
    for k, v in med.items():
        print(f"  {k:18s} {v * 1000:8.1f} ms")
    print(f"  engine (mean map + expert usage) / plain: {res['engine_mean_map_over_plain']:.2f}")
    print(f"  engine (every reducer, fingerprints)  / plain: {res['engine_all_over_plain']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
