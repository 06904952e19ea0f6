"""The benchmark scripts stay runnable: the GPU check refuses a machine without CUDA in one line,
and its CPU smoke test (shrunken models) runs end to end with the oracle in agreement."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def run(*args, tmp_path=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), *args], capture_output=True, text=True, env=env
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_check_without_a_gpu_is_one_line():
    r = run()
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        "gpu_check: no CUDA device (torch.cuda.is_available() is False); run it on a GPU machine"
    ]


def test_gpu_check_cpu_smoke_run(tmp_path):
    out = tmp_path / "gpu.json"
    r = run("--device", "cpu", "--small", "--reps", "1", "--json", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    assert set(res["models"]) == {"smollm2-135m-arch", "llama-1b-class"}
    for m in res["models"].values():
        assert m["oracle"]["mean_map_max_rel_err"] <= 1e-5 and m["oracle"]["norms_max_rel_err"] <= 1e-5
        assert set(m["ratios"]["over_plain"]) == {"engine_mean_map", "engine_all", "api_activation_map"}
