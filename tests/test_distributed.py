"""torchrun with 2 processes (gloo on CPU) gives the single-process results."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from oracle import rel_err
from tiny import save_tiny


def one_and_two(args: list[str], tmp_path: Path, port: int) -> tuple[Path, Path]:
    """Run `paramact ARGS` in one process into tmp/one and under torchrun with 2 processes
    into tmp/two, every process at one thread (bit-identity holds at equal thread counts);
    both must succeed."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        torchrun = shutil.which("torchrun")
    one, two = tmp_path / "one", tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "paramact", *args, "--out", str(one)], capture_output=True, text=True, env=env
    )
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(
        [
            str(torchrun),
            "--nproc-per-node",
            "2",
            "--master-port",
            str(port),
            "-m",
            "paramact",
            *args,
            "--out",
            str(two),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return one, two


@pytest.mark.parametrize(
    "family, order",
    [("qwen2", []), ("qwen2", ["--sort-by-length"]), ("mixtral", [])],
    ids=["in-order", "length-sorted", "moe"],
)
def test_two_processes_equal_one(tmp_path, family, order):
    model = save_tiny(tmp_path / "model", family)
    data = tmp_path / "data.txt"
    data.write_text("\n\n".join(f"Item {i}: " + "alpha beta gamma " * (1 + i % 4) for i in range(22)))
    args = [
        "--quiet",
        "activations",
        "--model",
        str(model),
        "--data",
        str(data),
        "--samples",
        "22",
        "--batch-size",
        "3",
        "--sketch-dim",
        "256",
        "--checkpoint-every",
        "2",
        *order,
    ]  # 8 batches, uneven split
    one, two = one_and_two(args, tmp_path, 29533 + len(order) + 2 * (family == "mixtral"))
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())  # rank 0 wrote, no scratch
    ma, mb = load_file(str(one / "mean_map.safetensors")), load_file(str(two / "mean_map.safetensors"))
    assert ma.keys() == mb.keys() and max(rel_err(mb[k], ma[k]) for k in ma) <= 1e-6
    for f in ("fingerprints.safetensors", "samples.safetensors"):
        ta, tb = load_file(str(one / f)), load_file(str(two / f))
        assert ta.keys() == tb.keys()
        assert f == "fingerprints.safetensors" or ("expert_tokens" in ta) == (family == "mixtral")
        for k in ta:
            # float64 sums of float32 fingerprints: the summation order differs between 1 and 2 processes
            exact = k not in ("fingerprint_sum", "fingerprint_sq")
            assert torch.equal(ta[k], tb[k]) if exact else rel_err(tb[k], ta[k]) <= 1e-6, (f, k)
    la = json.loads((one / "results.json").read_text())["layers"]
    lb = json.loads((two / "results.json").read_text())["layers"]
    assert [l["count_above"] for l in la] == [l["count_above"] for l in lb]
    for a, b in zip(la, lb):
        assert a["mass_share_50"] == pytest.approx(b["mass_share_50"], abs=1e-6)
        assert a["mean_abs"] == pytest.approx(b["mean_abs"], rel=1e-6)
    cfg = json.loads((two / "config.json").read_text())
    assert cfg["processes"] == 2


def test_findings_two_processes_equal_one(tmp_path):
    """findings under torchrun: each process takes its share of every dataset's batches; rank 0
    alone writes, and the results equal a single process (fingerprints bit-identical)."""
    model = save_tiny(tmp_path / "model", "llama")
    args = [
        "--quiet",
        "findings",
        "--model",
        str(model),
        "--datasets",
        "pydoc,pycode",
        "--samples",
        "7",
        "--batch-size",
        "2",
        "--max-length",
        "24",
        "--sketch-dim",
        "256",
        "--check-samples",
        "4",
        "--save-fingerprints",
    ]
    one, two = one_and_two(args, tmp_path, 29541)
    ra, rb = json.loads((one / "results.json").read_text()), json.loads((two / "results.json").read_text())
    assert torch.allclose(
        torch.tensor(ra["finding3"]["matrix"]), torch.tensor(rb["finding3"]["matrix"]), rtol=1e-6, atol=1e-9
    )
    for name in ("pydoc", "pycode"):
        a, b = ra["finding1"][name]["layers"], rb["finding1"][name]["layers"]
        assert [l["count_above"] for l in a] == [l["count_above"] for l in b]
        ta = load_file(str(one / name / "fingerprints.safetensors"))["fingerprints"]
        assert torch.equal(ta, load_file(str(two / name / "fingerprints.safetensors"))["fingerprints"])
        assert not (two / name / ".shards").exists()
    assert ra["finding2"]["pairs"] == rb["finding2"]["pairs"]
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())


def test_sts_two_processes_equal_one(tmp_path):
    """sts under torchrun: the pairs' batches are shared, rank 0 writes the same numbers."""
    from experiment_helpers import sts_data_dir

    model = save_tiny(tmp_path / "model", "llama")
    data = sts_data_dir(tmp_path / "data")
    args = [
        "--quiet",
        "sts",
        "--model",
        str(model),
        "--samples",
        "10",
        "--data-dir",
        str(data),
        "--batch-size",
        "4",
        "--no-baselines",
    ]  # 5 batches of 2 pairs: an uneven split
    one, two = one_and_two(args, tmp_path, 29547)
    ta, tb = load_file(str(one / "pairs.safetensors")), load_file(str(two / "pairs.safetensors"))
    assert torch.equal(ta["gold"], tb["gold"]) and torch.equal(ta["llmdcos"], tb["llmdcos"])
    ra, rb = json.loads((one / "results.json").read_text()), json.loads((two / "results.json").read_text())
    assert ra["spearman"] == rb["spearman"] and ra["per_layer_rho"] == rb["per_layer_rho"]


PRUNE_SMALL = ["--nsamples", "6", "--seqlen", "32", "--batch-size", "2"]  # 3 calibration batches: 2 + 1


@pytest.mark.parametrize(
    "method, schedule",
    [
        (
            "wanda",
            ["--schedule", "activation", "--density", "mass50", "--schedule-samples", "5", "--schedule-seqlen", "32"],
        ),
        ("sparsegpt", ["--schedule", "owl", "--pattern", "matrix"]),
    ],
    ids=["wanda-activation", "sparsegpt-owl"],
)
def test_prune_two_processes_equal_one(tmp_path, method, schedule):
    """prune under torchrun: each process collects its share of the calibration batches (and of the
    schedule's engine samples); the summed statistics give the single-process schedule and masks."""
    from safetensors import safe_open

    from data_helpers import shared_dataset
    from paramact.prune.masks import unpack_masks

    model = save_tiny(tmp_path / "model", "llama")
    args = [
        "--quiet",
        "prune",
        "--model",
        str(model),
        "--data-dir",
        str(shared_dataset("c4")),
        "--method",
        method,
        "--sparsity",
        "0.6",
        *schedule,
        *PRUNE_SMALL,
        "--save-model",
    ]
    one, two = one_and_two(args, tmp_path, 29551 + len(method))
    sa, sb = json.loads((one / "schedule.json").read_text()), json.loads((two / "schedule.json").read_text())
    assert sa["schedule"] == pytest.approx(sb["schedule"], rel=1e-6, abs=1e-9)
    assert sa["schedule"] != pytest.approx([0.6] * 3, abs=1e-4)  # the statistics shaped it
    masks = []
    for run in (one, two):
        with safe_open(str(run / "masks.safetensors"), "pt") as f:
            masks.append(unpack_masks({k: f.get_tensor(k) for k in f.keys()}, f.metadata()))
    assert masks[0].keys() == masks[1].keys()
    for k in masks[0]:
        assert torch.equal(masks[0][k], masks[1][k]), k
    wa, wb = load_file(str(one / "model" / "model.safetensors")), load_file(str(two / "model" / "model.safetensors"))
    assert max(rel_err(wb[k], wa[k]) for k in wa) <= 1e-5  # SparseGPT's updates: sums in another order
    assert json.loads((two / "config.json").read_text())["processes"] == 2
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())


def test_prune_too_few_batches_for_the_processes(tmp_path):
    model = save_tiny(tmp_path / "model", "llama")
    torchrun = Path(sys.executable).with_name("torchrun")
    from data_helpers import shared_dataset

    r = subprocess.run(
        [
            str(torchrun),
            "--nproc-per-node",
            "2",
            "--master-port",
            "29561",
            "-m",
            "paramact",
            "--quiet",
            "prune",
            "--model",
            str(model),
            "--data-dir",
            str(shared_dataset("c4")),
            "--nsamples",
            "2",
            "--seqlen",
            "32",
            "--batch-size",
            "2",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert r.returncode != 0  # torchrun prints its own summary of the failed workers; paramact's is one line
    assert "paramact: error: 1 calibration batches cannot be shared by 2 processes" in r.stderr
    assert "exitcode  : 2" in r.stderr and "paramact/prune" not in r.stderr
    assert not (tmp_path / "out" / "results.json").exists()
