"""The engine's GPU numbers in one short run (a few minutes on one GPU): exactness, speed, memory.

    PYTHONPATH=src python benchmarks/gpu_check.py [--json out.json] [--reps 5]

For two models built from configs with random weights (weights do not change exactness, speed or
memory): SmolLM2-135M's architecture (30 layers, hidden 576) and a 1B-class Llama (16 layers,
hidden 2048, MLP 8192, 1.2 B parameters), in float32 on cuda:0:

1. agreement with a per-sample autograd oracle on 3 padded samples (mean map, per-sample norms);
2. ratios against a plain forward+backward with weight gradients and full logits, 8 x 128 tokens,
   interleaved, medians of `reps`: the engine with the mean map only, with every reducer, and
   `activation_map` as a user calls it;
3. peak GPU memory of `analyze` with every reducer over 16 samples, above the loaded model.

Without a CUDA device it ends with one line and exit code 2. `--device cpu --small` runs the same
code on the CPU with shrunken models, as a smoke test of the script itself (no GPU numbers).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from bench_engine import plain_step  # one plain step for every benchmark

SMOLLM2 = {
    "model_type": "llama",
    "vocab_size": 49152,
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": True,
}
ONE_B = {
    "model_type": "llama",
    "vocab_size": 32000,
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "max_position_embeddings": 4096,
}


class Ids:
    """A stand-in tokenizer over random token ids (texts are strings of space-separated ids)."""

    bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [int(t) for t in text.split()]}


DEVICE = "cuda"


def _sync() -> None:
    if DEVICE.startswith("cuda"):
        torch.cuda.synchronize()


def build(spec: dict):
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = dict(spec)
    cfg = AutoConfig.for_model(spec.pop("model_type"), **spec)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.02)
    return model.to(DEVICE).eval()


def texts(n: int, length: int, vocab: int, seed: int, vary: bool = False) -> list[str]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        k = length - (7 * i if vary else 0)
        out.append(" ".join(str(t) for t in torch.randint(3, vocab, (k,), generator=g).tolist()))
    return out


def oracle_check(model, tok) -> dict:
    from paramact.api import ActivationConfig, analyze

    samples = texts(3, 40, model.config.vocab_size, 1, vary=True)  # different lengths: a padded batch
    res = analyze(model, tok, samples, ActivationConfig(batch_size=3, sketch_dim=0, reducers=("mean_map", "norms")))
    names = res.anatomy.names
    params = dict(model.named_parameters())
    ref = {n: torch.zeros_like(params[n], dtype=torch.float64) for n in names}
    norms = []
    for t in samples:
        ids = torch.tensor([tok(t)["input_ids"]], device=DEVICE)
        ps = [params[n] for n in names]
        for p in ps:
            p.requires_grad_(True)
        grads = torch.autograd.grad(model(input_ids=ids).logits[0, -1].max(), ps)
        for p in ps:
            p.requires_grad_(False)
        A = {n: (g.double() * p.detach().double()).abs() for n, g, p in zip(names, grads, ps)}
        for n in names:
            ref[n] += A[n] / len(samples)
        norms.append([float(torch.cat([A[w.name].flatten() for w in layer]).norm()) for layer in res.anatomy.layers])
    err = max(float((res.mean_map[n].double() - ref[n]).abs().max() / ref[n].abs().max()) for n in names)
    nref = torch.tensor(norms, dtype=torch.float64)
    return {
        "mean_map_max_rel_err": err,
        "norms_max_rel_err": float((res.norms.double() - nref).abs().max() / nref.abs().max()),
    }


def ratios(model, tok, reps: int) -> dict:
    import paramact
    from paramact.api import DEFAULT_SKETCH_DIM
    from paramact.batching import make_batches
    from paramact.engine import Engine
    from paramact.reducers import MeanMap, SampleStats

    samples = texts(8, 128, model.config.vocab_size, 2)
    batch = make_batches(tok, samples, 8)[0][0].to(DEVICE)
    an = paramact.discover(model)

    def engine(sinks):
        with Engine(model, an) as eng:
            eng.run(batch, "max_logit", sinks())

    fns = {
        "plain": lambda: plain_step(model, batch),
        "engine_mean_map": lambda: engine(lambda: [MeanMap(an)]),
        "engine_all": lambda: engine(lambda: [MeanMap(an), SampleStats(an, DEFAULT_SKETCH_DIM)]),
        "api_activation_map": lambda: paramact.activation_map(model, tok, samples, batch_size=8),
    }
    times = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(reps):
        for k, f in fns.items():
            _sync()
            t = time.perf_counter()
            f()
            _sync()
            times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"median_seconds": med, "over_plain": {k: v / med["plain"] for k, v in med.items() if k != "plain"}}


def memory(model, tok) -> dict | None:
    from paramact.api import ActivationConfig, analyze

    if not DEVICE.startswith("cuda"):
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    analyze(model, tok, texts(16, 128, model.config.vocab_size, 3), ActivationConfig(batch_size=8))
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return {
        "model_gb": weights / 2**30,
        "peak_above_model_gb": (peak - base) / 2**30,
        "peak_above_model_over_weights": (peak - base) / weights,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", default=None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="shrink both models to 2 layers (a smoke test)")
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device
    if DEVICE.startswith("cuda") and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device (torch.cuda.is_available() is False); run it on a GPU machine", file=sys.stderr
        )
        return 2
    t0 = time.perf_counter()
    gpu = torch.cuda.get_device_name(0) if DEVICE.startswith("cuda") else "none (CPU smoke test)"
    out = {"gpu": gpu, "torch": torch.__version__, "models": {}}
    tok = Ids()
    for name, spec in (("smollm2-135m-arch", SMOLLM2), ("llama-1b-class", ONE_B)):
        if args.small:
            spec = {
                **spec,
                "num_hidden_layers": 2,
                "hidden_size": 128,
                "intermediate_size": 256,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
            }
        model = build(spec)
        res = {
            "params": sum(p.numel() for p in model.parameters()),
            "oracle": oracle_check(model, tok),
            "ratios": ratios(model, tok, args.reps),
            "memory": memory(model, tok),
        }
        out["models"][name] = res
        print(name, json.dumps(res, indent=1), flush=True)
        del model
        if DEVICE.startswith("cuda"):
            torch.cuda.empty_cache()
    out["wall_s"] = time.perf_counter() - t0
    print(f"gpu_check: {out['gpu']}, {out['wall_s']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
