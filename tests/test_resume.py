"""Crash and resume: a run killed with SIGKILL at three different points and resumed with
--resume ends with the same files as a run that never stopped."""

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tiny import save_tiny

KILLER = r"""
import os, signal, sys
import paramact.engine as E, paramact.runs as R, paramact.experiments.activations as A, paramact.experiments.sts as S
mode, arg = sys.argv[1], int(sys.argv[2])
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
if mode == "batch":            # in the middle of the job, before any checkpoint
    orig_run, calls = E.Engine.run, [0]
    def run(self, *a, **k):
        calls[0] += 1
        if calls[0] == arg:
            die()
        return orig_run(self, *a, **k)
    E.Engine.run = run
elif mode == "checkpoint":     # right after a checkpoint was written
    orig_save = R.Checkpoint.save
    def save(self, next_batch, parts):
        orig_save(self, next_batch, parts)
        if next_batch == arg:
            die()
    R.Checkpoint.save = save
elif mode == "count":          # no kill: report how many batches this process ran
    import atexit
    orig_run, calls = E.Engine.run, [0]
    def run(self, *a, **k):
        calls[0] += 1
        return orig_run(self, *a, **k)
    E.Engine.run = run
    atexit.register(lambda: sys.stderr.write(f"BATCHES_RUN={calls[0]}\n"))
elif mode == "final":          # while the final files are written (activations: mean map done, rest not)
    for module, name in ((A, "samples.safetensors"), (S, "pairs.safetensors")):
        def write(path, *a, _orig=module.write_tensors, _name=name, **k):
            if path.name == _name:
                die()
            return _orig(path, *a, **k)
        module.write_tensors = write
from paramact.cli import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    model = save_tiny(root / "model", "llama")
    data = root / "data.txt"
    data.write_text("\n\n".join(f"Sample {i}: " + "the cat sat on the mat " * (1 + i % 5) for i in range(24)))
    args = [
        "--quiet",
        "activations",
        "--model",
        str(model),
        "--data",
        str(data),
        "--samples",
        "24",
        "--batch-size",
        "2",
        "--checkpoint-every",
        "3",
        "--sketch-dim",
        "256",
    ]
    ref = root / "ref"
    r = subprocess.run([sys.executable, "-m", "paramact", *args, "--out", str(ref)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return args, ref


def _same_run(a, b):
    ra, rb = json.loads((a / "results.json").read_text()), json.loads((b / "results.json").read_text())
    assert ra["layers"] == rb["layers"]
    for f in ("mean_map.safetensors", "samples.safetensors", "fingerprints.safetensors"):
        ta, tb = load_file(str(a / f)), load_file(str(b / f))
        assert ta.keys() == tb.keys()
        for k in ta:
            assert torch.equal(ta[k], tb[k]), (f, k)
    assert not (b / "checkpoint.safetensors").exists()
    assert not list(b.glob("*.partial"))


@pytest.mark.parametrize("mode, arg, rerun", [("batch", 2, 12), ("checkpoint", 6, 6), ("final", 0, 3)])
def test_killed_run_resumes_to_identical_results(setup, tmp_path, mode, arg, rerun):
    """12 batches, checkpoints after 3, 6 and 9: the resumed process runs only what is left."""
    args, ref = setup
    out = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-c", KILLER, mode, str(arg), *args, "--out", str(out)], capture_output=True, text=True
    )
    assert r.returncode == -9, (r.returncode, r.stderr[-2000:])
    assert not (out / "results.json").exists()  # a killed run never looks complete
    again = subprocess.run([sys.executable, "-m", "paramact", *args, "--out", str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "--out" in again.stderr  # refuses to mix without --resume
    r = subprocess.run(
        [sys.executable, "-c", KILLER, "count", "0", *args, "--out", str(out), "--resume"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"BATCHES_RUN={rerun}" in r.stderr
    _same_run(ref, out)


def test_resume_refuses_a_different_configuration(setup, tmp_path):
    args, _ = setup
    out = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-c", KILLER, "checkpoint", "3", *args, "--out", str(out)], capture_output=True, text=True
    )
    assert r.returncode == -9
    other = [a if a != "256" else "512" for a in args]
    r = subprocess.run(
        [sys.executable, "-m", "paramact", *other, "--out", str(out), "--resume"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "cannot resume a different run" in r.stderr


def test_killed_findings_run_resumes_to_identical_results(setup, tmp_path):
    """findings over two datasets (3 batches each, a checkpoint after every batch), killed in the
    second dataset's second batch: the resumed run skips the finished dataset, runs the last two
    batches and the exact check, and ends with the uninterrupted run's files."""
    model = setup[0][setup[0].index("--model") + 1]
    args = [
        "--quiet",
        "findings",
        "--model",
        model,
        "--datasets",
        "pydoc,pycode",
        "--samples",
        "6",
        "--batch-size",
        "2",
        "--max-length",
        "24",
        "--sketch-dim",
        "256",
        "--check-samples",
        "4",
        "--checkpoint-every",
        "1",
        "--save-fingerprints",
    ]
    ref, out = tmp_path / "ref", tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "paramact", *args, "--out", str(ref)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(
        [sys.executable, "-c", KILLER, "batch", "5", *args, "--out", str(out)], capture_output=True, text=True
    )
    assert r.returncode == -9, r.stderr[-2000:]
    assert not (out / "results.json").exists() and (out / "pydoc" / "results.json").exists()
    r = subprocess.run(
        [sys.executable, "-c", KILLER, "count", "0", *args, "--out", str(out), "--resume"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "BATCHES_RUN=3" in r.stderr
    ra, rb = json.loads((ref / "results.json").read_text()), json.loads((out / "results.json").read_text())
    assert ra == rb
    for name in ("pydoc", "pycode"):
        for f in ("samples.safetensors", "fingerprints.safetensors"):
            ta, tb = load_file(str(ref / name / f)), load_file(str(out / name / f))
            assert all(torch.equal(ta[k], tb[k]) for k in ta), (name, f)
        assert not (out / name / "checkpoint.safetensors").exists()
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()}
    r = subprocess.run(
        [sys.executable, "-m", "paramact", *args, "--out", str(out), "--resume"], capture_output=True, text=True
    )  # a requeued job: finished, exit 0, nothing rewritten
    assert r.returncode == 0 and "finished run" in r.stderr and "nothing to resume" in r.stderr
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in out.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("mode, arg, rerun", [("batch", 2, 5), ("checkpoint", 4, 1), ("final", 0, 1)])
def test_killed_sts_run_resumes_to_identical_results(setup, tmp_path, mode, arg, rerun):
    """sts over 10 pairs in 5 batches, a checkpoint after batches 2 and 4: killed before the first
    checkpoint, right after the second, and while pairs.safetensors is written."""
    from experiment_helpers import sts_data_dir

    model = setup[0][setup[0].index("--model") + 1]
    data = sts_data_dir(tmp_path / "data")
    args = [
        "--quiet",
        "sts",
        "--model",
        model,
        "--samples",
        "10",
        "--data-dir",
        str(data),
        "--batch-size",
        "4",
        "--no-baselines",
        "--checkpoint-every",
        "2",
    ]
    ref, out = tmp_path / "ref", tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "paramact", *args, "--out", str(ref)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(
        [sys.executable, "-c", KILLER, mode, str(arg), *args, "--out", str(out)], capture_output=True, text=True
    )
    assert r.returncode == -9, r.stderr[-2000:]
    assert not (out / "results.json").exists()
    r = subprocess.run(
        [sys.executable, "-c", KILLER, "count", "0", *args, "--out", str(out), "--resume"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"BATCHES_RUN={rerun}" in r.stderr
    assert json.loads((ref / "results.json").read_text()) == json.loads((out / "results.json").read_text())
    ta, tb = load_file(str(ref / "pairs.safetensors")), load_file(str(out / "pairs.safetensors"))
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
    assert not (out / "checkpoint.safetensors").exists()


PRUNE_KILLER = r"""
import atexit, os, signal, sys
import paramact.prune.resume as P, paramact.prune.outputs as O, paramact.prune.scores as SC
mode, arg = sys.argv[1], int(sys.argv[2])
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
orig_save, saves = P.BlockCheckpoint.save, [0]
def save(self, i, *a, **k):
    orig_save(self, i, *a, **k)
    saves[0] += 1
    if mode == "block" and i == arg:   # right after block `arg` was checkpointed
        die()
P.BlockCheckpoint.save = save
if mode == "first":                    # inside the first block's pruning, before any checkpoint
    SC.ObsMethod.prune = lambda self, *a, **k: die()
if mode == "final":                    # while the run's files are written (schedule.json done)
    orig_write = O.write_tensors
    def write(path, *a, **k):
        if path.name == "masks.safetensors":
            die()
        return orig_write(path, *a, **k)
    O.write_tensors = write
atexit.register(lambda: sys.stderr.write(f"BLOCKS_PRUNED={saves[0]}\n"))
from paramact.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _stable_prune(path):
    res = json.loads((path / "results.json").read_text())
    res.pop("seconds"), res.pop("resumed_blocks")
    assert res.pop("saved_model") == str(path / "model")
    return res


@pytest.mark.parametrize("mode, arg, restored", [("first", 0, 0), ("block", 1, 2), ("final", 0, 3)])
def test_killed_prune_resumes_to_identical_results(setup, tmp_path, mode, arg, restored):
    """SparseGPT (it rewrites weights) with an OWL schedule on 3 blocks, killed inside the first
    block, right after block 1 was checkpointed, and while masks.safetensors is written: the
    resumed run restores the checkpointed blocks, prunes the rest and ends with the masks,
    weights and numbers of an uninterrupted run."""
    from data_helpers import shared_dataset

    model = setup[0][setup[0].index("--model") + 1]
    args = [
        "--quiet",
        "prune",
        "--model",
        model,
        "--data-dir",
        str(shared_dataset("c4")),
        "--method",
        "sparsegpt",
        "--schedule",
        "owl",
        "--sparsity",
        "0.6",
        "--nsamples",
        "4",
        "--seqlen",
        "32",
        "--batch-size",
        "2",
        "--save-model",
    ]
    ref, out = tmp_path / "ref", tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "paramact", *args, "--out", str(ref)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not (ref / "checkpoint").exists()
    r = subprocess.run(
        [sys.executable, "-c", PRUNE_KILLER, mode, str(arg), *args, "--out", str(out)], capture_output=True, text=True
    )
    assert r.returncode == -9, r.stderr[-2000:]
    assert not (out / "results.json").exists()
    again = subprocess.run([sys.executable, "-m", "paramact", *args, "--out", str(out)], capture_output=True, text=True)
    assert again.returncode == 2 and "add --resume" in again.stderr
    r = subprocess.run(
        [sys.executable, "-c", PRUNE_KILLER, "count", "0", *args, "--out", str(out), "--resume"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"BLOCKS_PRUNED={3 - restored}" in r.stderr
    assert json.loads((out / "results.json").read_text())["resumed_blocks"] == restored
    assert _stable_prune(out) == _stable_prune(ref)
    for f in ("masks.safetensors", "model/model.safetensors"):
        ta, tb = load_file(str(ref / f)), load_file(str(out / f))
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), f
    assert not (out / "checkpoint").exists()


def test_block_checkpoint_round_trip_and_refusals(tmp_path):
    from paramact.errors import UserError
    from paramact.prune.resume import BlockCheckpoint

    masks = {"a": torch.rand(3, 10) > 0.5}
    weights = {"a": torch.randn(3, 10)}
    ck = BlockCheckpoint(tmp_path / "ck", "key1", resume=True)
    assert ck.n_done(3) == 0 and ck.load_schedule() is None
    ck.save(0, masks, weights, {"pruned": 0.5})
    ck.save_schedule({"schedule": [0.1, 0.2, 0.3]})
    assert ck.n_done(3) == 1 and ck.load_schedule() == {"schedule": [0.1, 0.2, 0.3]}
    m, w, numbers = ck.load(0)
    assert torch.equal(m["a"], masks["a"]) and torch.equal(w["a"], weights["a"]) and numbers == {"pruned": 0.5}
    assert BlockCheckpoint(tmp_path / "ck", "key1", resume=False).n_done(3) == 0  # without --resume: nothing restored
    with pytest.raises(UserError, match="belongs to a different configuration"):
        BlockCheckpoint(tmp_path / "ck", "key2", resume=True).load(0)
    (tmp_path / "ck" / "block0000.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="corrupt pruning checkpoint"):
        ck.load(0)
    BlockCheckpoint(tmp_path / "ck", "key1", resume=True, writer=False).clear()  # a reader never deletes
    assert (tmp_path / "ck").is_dir()
    ck.clear()
    assert not (tmp_path / "ck").exists()
