"""The engine's GPU numbers in one short run (a few minutes on one GPU): exactness, speed, memory.

    PYTHONPATH=src python benchmarks/gpu_check.py [--json out.json] [--reps 5]

For two models, in float32 on cuda:0: SmolLM2-135M (30 layers, hidden 576; `--smollm2 real` loads the
registry model's trained weights, the default builds its architecture with random weights, which
change neither speed nor memory) and a 1B-class Llama built from a config with random weights
(16 layers, hidden 2048, MLP 8192, 1.2 B parameters). Inputs are random token ids:

1. agreement with a per-sample autograd oracle on 3 padded samples (mean map, per-sample norms);
2. ratios against a plain forward+backward with weight gradients and full logits, 8 x 128 tokens,
   interleaved, medians of `reps`: the engine with the mean map only, with every reducer, and
   `activation_map` as a user calls it;
3. peak GPU memory of `analyze` with every reducer over 16 samples, above the loaded model;
4. the public API on the GPU against the same calls on a CPU copy of the model: every number
   `analyze` returns (mean map, norms, sums, target values, in-batch LLMDcos, fingerprint LLMDcos,
   the density table, the expert table), `pair_similarity`, and `analyze` with the mean map kept on
   the CPU (`stats_device="cpu"`); for SmolLM2 and for the tiny mixture-of-experts families of the
   test suite (fused expert tensors and routers on the GPU).

Without a CUDA device it ends with one line and exit code 2. `--device cpu --small` runs the same
code on the CPU with shrunken models, as a smoke test of the script itself (no GPU numbers).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

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


def build(spec: dict, real: str | None = None):
    """The model of `spec` with random weights, or the registry model `real` (trained weights)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if real is not None:
        import paramact

        model, _ = paramact.load_model(real, device=DEVICE)  # its own tokenizer is not needed: ids
        return model.eval()

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


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| relative to max |b| (absolute where b is all zeros)."""
    scale = float(b.abs().max()) or 1.0
    return float((a - b).abs().max()) / scale


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
    err = max(_rel(res.mean_map[n].double(), ref[n]) for n in names)
    nref = torch.tensor(norms, dtype=torch.float64)
    return {
        "mean_map_max_rel_err": err,
        "norms_max_rel_err": _rel(res.norms.double(), nref),
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


def _numbers(res) -> dict[str, torch.Tensor]:
    """Every number an Analysis gives a user, as float64 CPU tensors keyed by what they are."""
    from paramact.similarity import fingerprint_matrix

    out = {f"mean_map/{k}": v for k, v in res.mean_map.items()}
    for k in ("norms", "sums", "target_values"):
        out[k] = getattr(res, k)
    if res.batch_llmdcos:
        out["batch_llmdcos"] = torch.cat([c.flatten() for _, c in res.batch_llmdcos])
    if res.fingerprints is not None:
        out["fingerprint_llmdcos"] = fingerprint_matrix(res.fingerprints, res.fingerprints)
    rows = [[r["mass_share_50"], r["mass_share_90"], r["mean_abs"], *r["count_above"].values()] for r in res.layers]
    out["density_table"] = torch.tensor(rows)
    experts = [
        [e["mass"], e["mass_share_50"], *e["count_above"].values()] for r in res.expert_layers for e in r["experts"]
    ]
    if experts:
        out["expert_table"] = torch.tensor(experts)
        out["expert_tokens"], out["expert_mass"] = res.expert_tokens, res.expert_mass
    return {k: v.detach().double().cpu() for k, v in out.items() if v is not None}


def parity(model, tok, vocab: int) -> dict:
    """The public API on DEVICE against a CPU copy of the model: the largest relative difference of
    each kind of number (the density table's counts are compared as numbers: a count may move by
    a weight that sits on a threshold)."""
    from paramact.api import ActivationConfig, analyze, pair_similarity

    cpu = copy.deepcopy(model).cpu()
    samples = texts(6, 40, vocab, 4, vary=True)
    cfg = ActivationConfig(batch_size=3, sketch_dim=1 << 12)
    dev, ref = _numbers(analyze(model, tok, samples, cfg)), _numbers(analyze(cpu, tok, samples, cfg))
    out = {k: _rel(dev[k], ref[k]) for k in ref if not k.startswith("mean_map/")}
    out["mean_map"] = max(_rel(dev[k], ref[k]) for k in ref if k.startswith("mean_map/"))
    on_cpu = analyze(model, tok, samples, ActivationConfig(batch_size=3, stats_device="cpu", reducers=("mean_map",)))
    out["mean_map_stats_on_cpu"] = max(_rel(v.double().cpu(), ref[f"mean_map/{k}"]) for k, v in on_cpu.mean_map.items())
    pairs = list(zip(samples[::2], samples[1::2]))
    out["pair_similarity"] = _rel(
        pair_similarity(model, tok, pairs, batch_size=4).double().cpu(),
        pair_similarity(cpu, tok, pairs, batch_size=4).double(),
    )
    return out


def moe_parity() -> dict:
    """parity() for each tiny mixture-of-experts family of the test suite, built on DEVICE."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny import MOE_FAMILIES, VOCAB, tiny_model

    out = {}
    for family in MOE_FAMILIES:
        try:
            out[family] = parity(tiny_model(family).to(DEVICE), Ids(), VOCAB)
        except Exception as e:  # one family's failure is recorded, the others still run
            out[family] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        print(family, json.dumps(out[family]), flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", default=None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true", help="shrink both models to 2 layers (a smoke test)")
    ap.add_argument(
        "--smollm2", choices=("random", "real"), default="random", help="SmolLM2's weights: random, or the trained ones"
    )
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
    smollm2 = ("smollm2-135m", SMOLLM2, "smollm2-135m")  # the registry model, trained weights
    if args.smollm2 == "random" or args.small:
        smollm2 = ("smollm2-135m-arch", SMOLLM2, None)
    for name, spec, registry in (smollm2, ("llama-1b-class", ONE_B, None)):
        if args.small:
            spec = {
                **spec,
                "num_hidden_layers": 2,
                "hidden_size": 128,
                "intermediate_size": 256,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
            }
        model = build(spec, registry)
        res = {
            "params": sum(p.numel() for p in model.parameters()),
            "oracle": oracle_check(model, tok),
            "ratios": ratios(model, tok, args.reps),
            "memory": memory(model, tok),
            "parity_with_cpu": parity(model, tok, model.config.vocab_size) if DEVICE != "cpu" else None,
        }
        out["models"][name] = res
        print(name, json.dumps(res, indent=1), flush=True)
        del model
        if DEVICE.startswith("cuda"):
            torch.cuda.empty_cache()
    out["moe_parity_with_cpu"] = moe_parity() if DEVICE != "cpu" else None
    out["wall_s"] = time.perf_counter() - t0
    print(f"gpu_check: {out['gpu']}, {out['wall_s']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
