"""Engine benchmark on SmolLM2-135M: ratios measured side by side in one run.

    python benchmarks/bench_engine.py [--parts abcd] [--reps 5] [--device cpu|cuda] [--json out.json]
                                     [--keep-memory]

(a) per batch (8 samples of 128 tokens), against a plain batched forward+backward with weight
    gradients and full logits (a training step's work):
    - the engine feeding the mean map only, and feeding every reducer (mean map, per-sample norms,
      in-batch Grams, 65 536-bucket fingerprints);
    - the public API as a user calls it, finalization included: `activation_map(...)` and
      `analyze(...)` with every reducer followed by reading `.layers` (the density table);
(b) one mean map: the paper's method (batch 1, full logits, deep copy of grad*weight per
    sample) / paramact.activation_map
(c) 4x4 dataset LLMDcos matrix, 16 samples per dataset: paper's method (a pair of passes
    per sample pair and dataset pair) / paramact (one pass per sample, fingerprints)
(d) peak RSS of a run over 8 vs 64 samples, and of paramact vs the paper's method
(k) CPU only: the fused kernel (paramact.fused) against the torch path it replaces
    (fused.ENABLED = False), the same calls side by side: `analyze` with every reducer on 8 x 128
    tokens, the findings' reducers (mean map, norms, fingerprints) on 16 x 40 tokens, and a pair
    pass over 16 x 24 tokens with the "pairs" reducer against the in-batch Gram (its former method)
Absolute times on a shared 2-core machine are noise; the ratios are the result. Every timed
configuration runs interleaved with its competitors, `reps` times; medians of wall time and of
process CPU time (the latter is immune to time the virtual machine's CPUs were taken away).
--keep-memory runs everything under the allocator setting the command line uses
(paramact.keep_freed_memory); without it, under glibc's defaults, as a Python user who did not opt in.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

import paramact
from paramact.api import DEFAULT_SKETCH_DIM, ActivationConfig, analyze
from paramact.batching import make_batches
from paramact.data import load_texts
from paramact.engine import Engine
from paramact.reducers import MeanMap, SampleStats
from paramact.similarity import fingerprint_matrix

SEQ = 128


def windows(tok, domain: str, n: int, seq: int = SEQ, seed: int = 1) -> list[str]:
    """n texts of exactly `seq` tokens (decoded token windows of the embedded domains)."""
    texts, _ = load_texts(domain, None, seed)
    ids = [i for t in texts for i in tok(t + "\n\n", add_special_tokens=False)["input_ids"]]
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(ids) - seq - 1, (n,), generator=g).tolist()
    out = []
    for s in starts:
        text = tok.decode(ids[s : s + seq])
        out.append(text)
    return out


def kept_params(model):
    """The paper's filter: 2-D, max(shape) <= 15000 (drops embeddings / lm_head)."""
    return [(n, p) for n, p in model.named_parameters() if p.dim() >= 2 and max(p.shape) <= 15000]


def paper_grad_w(model, tok, text):
    """One paper-style pass: batch 1, full logits, D = max logit at the last position,
    then a deep copy of grad * weight for every kept parameter (signed, fp32)."""
    ids = tok(text, return_tensors="pt").input_ids.to(next(model.parameters()).device)
    for p in model.parameters():
        p.requires_grad_(True)
    model.zero_grad(set_to_none=True)
    logits = model(input_ids=ids, use_cache=False).logits
    logits[0, -1, :].max().backward()
    out = [(p.grad * p.detach()).float().clone() for _, p in kept_params(model)]
    model.zero_grad(set_to_none=True)
    return out


def paper_mean_map(model, tok, texts):
    acc = None
    for t in texts:
        v = paper_grad_w(model, tok, t)
        acc = [a.abs() for a in v] if acc is None else [a.add_(b.abs()) for a, b in zip(acc, v)]
    return [a / len(texts) for a in acc]


def paper_pair_llmdcos(model, tok, t1, t2, layer_len: int):
    v1, v2 = paper_grad_w(model, tok, t1), paper_grad_w(model, tok, t2)
    sims = []
    for i in range(0, len(v1), layer_len):
        a = torch.cat([x.flatten() for x in v1[i : i + layer_len]])
        b = torch.cat([x.flatten() for x in v2[i : i + layer_len]])
        sims.append(float((a * b).abs().sum() / a.norm() / b.norm()))
    return sims


def plain_step(model, batch):
    """A training step's work: forward (full logits), backward with weight gradients."""
    for p in model.parameters():
        p.requires_grad_(True)
    model.zero_grad(set_to_none=True)
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    last = batch.attention_mask.sum(1) - 1
    out.logits[torch.arange(batch.size), last].max(-1).values.sum().backward()
    model.zero_grad(set_to_none=True)
    for p in model.parameters():
        p.requires_grad_(False)


def interleaved(fns: dict, reps: int, device: str = "cpu") -> dict:
    """Median wall and CPU seconds of each function, run in turn `reps` times after a warm-up."""
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for f in fns.values():  # warm-up
        f()
    for _ in range(reps):
        for k, f in fns.items():
            _sync(device)
            t, c = time.perf_counter(), time.process_time()
            f()
            _sync(device)
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    out = {k: statistics.median(v) for k, v in wall.items()}
    out["cpu"] = {k: statistics.median(v) for k, v in cpu.items()}
    return out


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _ratios(t: dict, base: str = "plain") -> dict:
    return {k: {"wall": t[k] / t[base], "cpu": t["cpu"][k] / t["cpu"][base]} for k in t if k not in ("cpu", base)}


def part_a(model, tok, reps, device="cpu"):
    """Per batch: the engine's work and the public API's calls, each against a plain training step."""
    texts = windows(tok, "pydoc", 8)
    batch = make_batches(tok, texts, 8)[0][0].to(device)
    an = paramact.discover(model)

    def engine(sinks):
        with Engine(model, an) as eng:
            eng.run(batch, "max_logit", sinks())

    def api_all():
        res = analyze(model, tok, texts, ActivationConfig(batch_size=8), anatomy=an)
        return res.layers  # finalization: the density table over every weight

    t = interleaved(
        {
            "plain": lambda: plain_step(model, batch),
            "engine_mean_map": lambda: engine(lambda: [MeanMap(an)]),
            "engine_all": lambda: engine(lambda: [MeanMap(an), SampleStats(an, DEFAULT_SKETCH_DIM)]),
            "api_activation_map": lambda: paramact.activation_map(model, tok, texts, batch_size=8),
            "api_analyze_all": api_all,
        },
        reps,
        device,
    )
    return {"tokens": list(batch.input_ids.shape), "seconds": t, "over_plain": _ratios(t)}


def part_b(model, tok, reps, device="cpu"):
    texts = windows(tok, "pydoc", 8, seed=2)
    ours = {}
    t = interleaved(
        {
            "paper": lambda: paper_mean_map(model, tok, texts),
            "paramact": lambda: ours.update(m=paramact.activation_map(model, tok, texts, batch_size=8)),
        },
        reps,
        device,
    )
    ref = paper_mean_map(model, tok, texts)
    names = [n for n, _ in kept_params(model)]
    err = max(float((ours["m"][n] - r).abs().max() / r.abs().max()) for n, r in zip(names, ref))
    return {
        "samples": 8,
        "seconds": t,
        "speedup": t["paper"] / t["paramact"],
        "speedup_cpu": t["cpu"]["paper"] / t["cpu"]["paramact"],
        "max_rel_diff_vs_paper": err,
    }


def part_c(model, tok, reps, device="cpu", seq=64):
    domains = ["pydoc", "pycode"]
    data = {f"{d}{s}": windows(tok, d, 16, seq, seed=s) for d in domains for s in (1, 2)}  # 4 datasets
    names = list(data)
    an = paramact.discover(model)
    L, layer_len = an.n_layers, len(an.layers[0])
    cfg = ActivationConfig(batch_size=8)

    def ours():
        fps = {k: analyze(model, tok, v, cfg).fingerprints for k, v in data.items()}
        M = torch.zeros(4, 4)
        for i, a in enumerate(names):
            for j, b in enumerate(names):
                m = fingerprint_matrix(fps[a], fps[b])[L // 2 : L - 2]  # deep layers
                M[i, j] = m.diagonal(dim1=1, dim2=2).mean()  # k-th with k-th sample, as the paper
        return M

    def paper():
        M = torch.zeros(4, 4)
        for i, a in enumerate(names):
            for j, b in enumerate(names[i:], i):
                sims = [paper_pair_llmdcos(model, tok, x, y, layer_len) for x, y in zip(data[a], data[b])]
                M[i, j] = M[j, i] = torch.tensor(sims)[:, L // 2 : L - 2].mean()
        return M

    res = {}
    t = interleaved({"paper": lambda: res.update(p=paper()), "paramact": lambda: res.update(o=ours())}, reps, device)
    off = (res["o"] - res["p"]).abs()
    return {
        "datasets": names,
        "samples_per_dataset": 16,
        "seq": seq,
        "seconds": t,
        "speedup": t["paper"] / t["paramact"],
        "passes": {"paper": 10 * 16 * 2, "paramact": 4 * 16},
        "max_abs_diff_offdiag": float(off[~torch.eye(4, dtype=bool)].max()),
    }


_RSS_CHILD = r"""
import resource, sys, torch, paramact
sys.path.insert(0, {bench_dir!r})
from bench_engine import windows, paper_mean_map
from paramact.api import DEFAULT_SKETCH_DIM, ActivationConfig, analyze
from paramact.engine import Engine
from paramact.reducers import MeanMap, SampleStats
torch.set_num_threads(2)
model, tok = paramact.load_model("smollm2-135m")
texts = windows(tok, "pydoc", {n}, 64)
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
open("/proc/self/clear_refs", "w").write("5")  # reset the peak: loading the model is not measured
base = hwm()
if {paper}:
    paper_mean_map(model, tok, texts)
else:
    from paramact.runs import TensorFileWriter
    an = paramact.discover(model)
    w = None
    if {store!r}:
        w = TensorFileWriter({store!r}, "fingerprints", (len(texts), an.n_layers, 1 << 16), torch.float16)
    analyze(model, tok, texts, ActivationConfig(batch_size=8), on_fingerprints=w)
    if w is not None:
        w.close()
print(base, hwm())
"""


def _rss(n, paper=False, store=None):
    from pathlib import Path

    code = _RSS_CHILD.format(bench_dir=str(Path(__file__).parent), n=n, paper=paper, store=store)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    base, peak = map(int, out.stdout.split()[-2:])
    return {"after_load_mb": base / 1024, "peak_mb": peak / 1024, "peak_above_load_mb": (peak - base) / 1024}


def part_d(_model, _tok, _reps, device="cpu"):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        r8 = _rss(8, store=f"{d}/fp8")
        r64 = _rss(64, store=f"{d}/fp64")
    mem = _rss(64)
    paper = _rss(8, paper=True)
    return {
        "paramact_8": r8,
        "paramact_64": r64,
        "paramact_64_fingerprints_in_memory": mem,
        "paper_8": paper,
        "growth_8_to_64": r64["peak_mb"] / r8["peak_mb"] - 1,
        "paramact_over_paper_peak": r8["peak_mb"] / paper["peak_mb"],
        "paramact_over_paper_peak_above_load": r8["peak_above_load_mb"] / paper["peak_above_load_mb"],
    }


def part_k(model, tok, reps, device="cpu"):
    """The fused CPU kernel against the torch path, on the public calls (ratios < 1: the kernel is faster)."""
    from paramact import fused

    an = paramact.discover(model)
    long8, short16, pair16 = windows(tok, "pydoc", 8), windows(tok, "pydoc", 16, 40), windows(tok, "pycode", 16, 24)
    findings = ActivationConfig(batch_size=16, reducers=("mean_map", "norms", "fingerprints"))
    pairs = ActivationConfig(batch_size=16, reducers=("pairs",))

    def call(enabled, texts, cfg):
        def f():
            before, fused.ENABLED = fused.ENABLED, enabled
            try:
                analyze(model, tok, texts, cfg, anatomy=an)
            finally:
                fused.ENABLED = before

        return f

    t = interleaved(
        {
            "all_kernel": call(True, long8, ActivationConfig(batch_size=8)),
            "all_torch": call(False, long8, ActivationConfig(batch_size=8)),
            "findings_kernel": call(True, short16, findings),
            "findings_torch": call(False, short16, findings),
            "pairs_kernel": call(True, pair16, pairs),
            "pairs_torch": call(False, pair16, pairs),
            "grams_torch": call(False, pair16, ActivationConfig(batch_size=16, reducers=("grams",))),
        },
        reps,
        device,
    )
    return {
        "seconds": t,
        "kernel_over_torch": {
            "analyze_every_reducer_8x128": t["all_kernel"] / t["all_torch"],
            "findings_reducers_16x40": t["findings_kernel"] / t["findings_torch"],
            "pair_pass_16x24": t["pairs_kernel"] / t["pairs_torch"],
            "pair_pass_16x24_vs_gram_torch": t["pairs_kernel"] / t["grams_torch"],
        },
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="abcdk")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--keep-memory",
        action="store_true",
        help="call paramact.keep_freed_memory() first, as the command line does (glibc keeps freed memory "
        "mapped; every timed function, the plain step included, runs under the same allocator)",
    )
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("bench_engine: --device cuda but this machine (or this torch build) has no CUDA device")
    if args.device != "cpu":  # peak RSS is a host-memory measure; the fused kernel runs on a CPU only
        args.parts = args.parts.replace("d", "").replace("k", "")
    kept = paramact.keep_freed_memory() if args.keep_memory else False
    torch.manual_seed(0)
    model, tok = paramact.load_model("smollm2-135m", device=args.device)
    parts = {"a": part_a, "b": part_b, "c": part_c, "d": part_d, "k": part_k}
    results = {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": args.device,
        "kept_memory": kept,
    }
    for p in args.parts:
        t = time.perf_counter()
        results[p] = parts[p](model, tok, args.reps if p != "c" else 1, args.device)
        results[p]["wall_s"] = time.perf_counter() - t
        print(p, json.dumps(results[p], indent=1), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
