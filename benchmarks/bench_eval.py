"""Accuracy-evaluation benchmark on SmolLM2-135M: lm-eval's HFLM against the shared-prefix scorer.

    python benchmarks/bench_eval.py [--items 100] [--tasks boolq,piqa,hellaswag,siqa,mmlu] [--reps 1]
                                    [--batch-size 8] [--data-dir DIR] [--json out.json]

Per task, the same item draw (`paramact eval`'s, seed 0; MMLU 5-shot) through lm-evaluation-harness
twice: its HFLM as released, and `--lmeval-scorer shared-prefix` (lm-eval's requests computed by
paramact's forward, a prompt prefix shared by several requests computed once). The two run
interleaved, `reps` times each; medians of wall and process CPU time. Reported per task: the time
ratio HFLM / shared-prefix (the speed-up), the largest difference of any choice's log-likelihood
(nats), and whether the two marked the same items correct. MMLU's saving grows with the items per
subject (its five demonstrations are shared within a subject): 500 items put ~9 in each of 57.
Absolute times on a shared 2-core machine are noise; the ratios are the result.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import paramact
from paramact.data import mc_items
from paramact.evaluation import harness
from paramact.evaluation.tasks import EvalConfig, _harness_task

SCORERS = ("hflm", "shared-prefix")


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--tasks", default="boolq,piqa,hellaswag,siqa,mmlu")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if not harness.available():
        print(f"bench_eval: {harness.INSTALL_HINT}", file=sys.stderr)
        return 2
    model, tok = paramact.load_model("smollm2-135m")
    cfg = EvalConfig(items=args.items, data_dir=args.data_dir)
    report = {"items": args.items, "batch_size": args.batch_size, "reps": args.reps, "tasks": {}}
    for task in args.tasks.split(","):
        items, _ = mc_items(task, args.items, 0, shots=5 if task == "mmlu" else None, data_dir=args.data_dir)
        ht = _harness_task(task, items, cfg)
        wall: dict[str, list[float]] = {s: [] for s in SCORERS}
        cpu: dict[str, list[float]] = {s: [] for s in SCORERS}
        res = {}
        for _ in range(args.reps):
            for s in SCORERS:
                res[s], w, c = timed(
                    lambda s=s, ht=ht: harness.harness_accuracy(model, tok, ht, args.batch_size, 2048, scorer=s)
                )
                wall[s].append(w)
                cpu[s].append(c)
        diff = max(
            abs(x - y) for a, b in zip(res["hflm"]["scores"], res["shared-prefix"]["scores"]) for x, y in zip(a, b)
        )
        row = {
            "seconds": {s: statistics.median(wall[s]) for s in SCORERS},
            "cpu_seconds": {s: statistics.median(cpu[s]) for s in SCORERS},
            "speedup": statistics.median(wall["hflm"]) / statistics.median(wall["shared-prefix"]),
            "cpu_speedup": statistics.median(cpu["hflm"]) / statistics.median(cpu["shared-prefix"]),
            "max_loglik_difference": diff,
            "same_correct_items": res["hflm"]["correct_items"] == res["shared-prefix"]["correct_items"],
            "acc": {s: res[s]["acc"] for s in SCORERS},
        }
        report["tasks"][task] = row
        print(
            f"{task:10s} HFLM {row['seconds']['hflm']:7.1f} s  shared-prefix {row['seconds']['shared-prefix']:7.1f} s"
            f"  speed-up {row['speedup']:.2f}x (CPU {row['cpu_speedup']:.2f}x)  max |d loglik| {diff:.1e}"
            f"  same items correct: {row['same_correct_items']}",
            flush=True,
        )
    tot = {s: sum(r["seconds"][s] for r in report["tasks"].values()) for s in SCORERS}
    report["total_speedup"] = tot["hflm"] / tot["shared-prefix"]
    speed = report["total_speedup"]
    print(f"all tasks: HFLM {tot['hflm']:.0f} s, shared-prefix {tot['shared-prefix']:.0f} s: {speed:.2f}x")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
