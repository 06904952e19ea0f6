"""`paramact study prune` end to end on a tiny model: its tables, --config for a sub-subcommand,
and a study killed with SIGKILL between cells that --resume finishes with the same results."""

import json
import subprocess
import sys

import pytest

from data_helpers import shared_dataset
from tiny import save_tiny

# Kills the study at the N-th pruning (mode "kill") or counts the prunings it runs (mode "count").
KILLER = r"""
import atexit, os, signal, sys
import paramact.prune.study as S
mode, arg = sys.argv[1], int(sys.argv[2])
orig, calls = S.run_prune, [0]
def run_prune(*a, **k):
    calls[0] += 1
    if mode == "kill" and calls[0] == arg:
        os.kill(os.getpid(), signal.SIGKILL)
    return orig(*a, **k)
S.run_prune = run_prune
atexit.register(lambda: sys.stderr.write(f"PRUNINGS={calls[0]}\n"))
from paramact.cli import main
sys.exit(main(sys.argv[3:]))
"""

# dense, wanda uniform 50%, wanda owl 50% (Validation 1); wanda activation 50% on c4 and siqa (Validation 2)
STUDY = {
    "methods": ["wanda"],
    "schedules": ["uniform", "owl"],
    "sparsities": [0.5],
    "calibrations": ["c4", "siqa"],
    "v1-tasks": ["wikitext2"],
    "v2-tasks": ["wikitext2", "siqa"],
    "nsamples": 4,
    "seqlen": 32,
    "density": "mass50",
    "schedule-samples": 4,
    "schedule-seqlen": 32,
    "ppl-seqlen": 32,
    "ppl-windows": 3,
    "items": 4,
    "eval-max-length": 120,
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """An uninterrupted study, configured by a YAML file (the command line adds --out)."""
    import yaml

    root = tmp_path_factory.mktemp("study")
    model = save_tiny(root / "model", "llama")
    data = shared_dataset("c4")
    for name in ("siqa", "wikitext2"):
        shared_dataset(name)
    cfg = root / "study.yaml"
    cfg.write_text(yaml.safe_dump({"model": str(model), "data-dir": str(data), **STUDY}))
    ref = root / "ref"
    r = subprocess.run(
        [sys.executable, "-m", "paramact", "--quiet", "study", "prune", "--config", str(cfg), "--out", str(ref)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return cfg, ref, r.stdout


def _stable(res: dict) -> dict:
    """results.json without wall-clock times and the list of cells kept from an interrupted run."""
    res = json.loads(json.dumps(res))
    res.pop("seconds"), res.pop("resumed_cells")
    for r in res["rows"]:
        r.pop("seconds", None), r.pop("prune_seconds", None)
    res["activation_counts"].pop("seconds")
    return res


def test_study_tables_and_config(study):
    _cfg, ref, stdout = study
    res = json.loads((ref / "results.json").read_text())
    saved = json.loads((ref / "config.json").read_text())["study"]
    assert saved["methods"] == ["wanda"] and saved["sparsities"] == [0.5] and saved["calibrations"] == ["c4", "siqa"]
    assert [r["key"] for r in res["rows"]] == [
        "dense",
        "wanda/uniform/0.5/c4",
        "wanda/owl/0.5/c4",
        "wanda/activation/0.5/c4",
        "wanda/activation/0.5/siqa",
    ]
    dense = res["rows"][0]["eval"]["wikitext2"]["ppl"]
    for r in res["rows"][1:]:
        assert r["sparsity_measured"]["overall"] == pytest.approx(0.5, abs=0.02)
        assert r["eval"]["wikitext2"]["ppl"] != dense  # pruning changed the model
    owl = res["schedules"]["owl/0.5"]["schedule"]
    assert sum(owl) / len(owl) == pytest.approx(0.5, abs=1e-9) and max(owl) - min(owl) > 1e-3
    assert (ref / "validation1.md").is_file() and (ref / "validation2.md").is_file()
    assert not (ref / "partial.json").exists() and res["resumed_cells"] == []
    assert "wanda owl 50%" in (ref / "validation1.md").read_text() and "run directory" in stdout


def test_killed_study_resumes_to_identical_results(study, tmp_path):
    """Killed in its second pruning (the third cell): dense and the uniform cell are kept, the
    resumed run prunes the three remaining cells and ends with the uninterrupted run's numbers."""
    cfg, ref, _ = study
    out = tmp_path / "run"
    base = ["--quiet", "study", "prune", "--config", str(cfg), "--out", str(out)]
    r = subprocess.run([sys.executable, "-c", KILLER, "kill", "2", *base], capture_output=True, text=True)
    assert r.returncode == -9, r.stderr[-2000:]
    assert not (out / "results.json").exists()
    assert [c["key"] for c in json.loads((out / "partial.json").read_text())] == ["dense", "wanda/uniform/0.5/c4"]
    r = subprocess.run([sys.executable, "-m", "paramact", *base], capture_output=True, text=True)
    assert r.returncode == 2 and "add --resume" in r.stderr
    other = tmp_path / "other.yaml"
    other.write_text(cfg.read_text().replace("nsamples: 4", "nsamples: 6"))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "paramact",
            "--quiet",
            "study",
            "prune",
            "--config",
            str(other),
            "--out",
            str(out),
            "--resume",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and "cannot resume a different run" in r.stderr
    r = subprocess.run([sys.executable, "-c", KILLER, "count", "0", *base, "--resume"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "PRUNINGS=3" in r.stderr and "kept from the interrupted run" in r.stdout
    res = json.loads((out / "results.json").read_text())
    assert res["resumed_cells"] == ["dense", "wanda/uniform/0.5/c4"]
    assert _stable(res) == _stable(json.loads((ref / "results.json").read_text()))
    assert (out / "validation1.md").read_text() == (ref / "validation1.md").read_text()
