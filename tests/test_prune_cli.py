"""`paramact prune | schedule | eval` end to end on a tiny model, and their one-line errors."""

import json

import pytest
import torch
from safetensors import safe_open

import paramact
from conftest import cli
from data_helpers import shared_dataset
from paramact.cli import main
from paramact.prune.masks import unpack_masks
from paramact.runs import read_tensors

SMALL = ["--nsamples", "4", "--seqlen", "32", "--batch-size", "2"]
EVAL = ["--ppl-seqlen", "32", "--ppl-windows", "3", "--items", "4", "--eval-max-length", "120"]


@pytest.fixture(scope="module")
def data_dir():
    return str(shared_dataset("c4"))


def test_prune_run_directory_and_saved_model(model_dir, data_dir, tmp_path):
    out = tmp_path / "run"
    r = cli(
        "--quiet",
        "prune",
        "--model",
        str(model_dir),
        "--data-dir",
        data_dir,
        "--method",
        "wanda",
        "--schedule",
        "activation",
        "--schedule-samples",
        "4",
        "--schedule-seqlen",
        "32",
        "--density",
        "mass50",
        "--sparsity",
        "0.6",
        *SMALL,
        "--eval",
        "wikitext2,c4",
        *EVAL,
        "--save-model",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    for f in ("config.json", "env.json", "schedule.json", "masks.safetensors", "table.md", "results.json"):
        assert (out / f).is_file(), f
    res = json.loads((out / "results.json").read_text())
    sched = json.loads((out / "schedule.json").read_text())
    assert sched["name"] == "activation" and abs(sum(sched["schedule"]) / 3 - 0.6) < 1e-12
    assert res["sparsity"]["per_layer"] and 0.5 < res["sparsity"]["overall"] < 0.6
    assert res["sparsity"]["max_abs_error_vs_schedule"] < 1 / 32  # floor(cols·s) per row, cols >= 32
    assert set(res["eval"]) == {"wikitext2", "c4"} and res["eval"]["wikitext2"]["ppl"] > 1
    assert "Wanda" in res["eval"]["wikitext2"]["protocol"]
    assert "calibration window" in res["eval"]["c4"]["source"]["held_out"]
    assert res["calibration"]["config"]["nsamples"] == 4 and res["calibration"]["config"]["seqlen"] == 32
    # masks: bit-packed, and exactly the zeros of the saved model
    with safe_open(str(out / "masks.safetensors"), "pt") as f:
        meta = f.metadata()
    masks = unpack_masks(read_tensors(out / "masks.safetensors"), meta)
    model, _ = paramact.load_model(str(out / "model"))
    an = paramact.discover(model)
    assert sorted(masks) == sorted(an.names)
    for w in an.weights:
        assert torch.equal(masks[w.name], w.module.weight != 0)
    # the saved model reloads and gives the same perplexity
    r = cli(
        "--quiet",
        "eval",
        "--model",
        str(out / "model"),
        "--data-dir",
        data_dir,
        "--tasks",
        "wikitext2",
        *EVAL,
        "--out",
        str(tmp_path / "ev"),
    )
    assert r.returncode == 0, r.stderr
    ev = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert ev["eval"]["wikitext2"]["ppl"] == pytest.approx(res["eval"]["wikitext2"]["ppl"], rel=1e-6)


def test_schedule_command_prints_and_saves(model_dir, tmp_path, capsys):
    rc = main(
        [
            "--quiet",
            "schedule",
            "--model",
            str(model_dir),
            "--schedule",
            "paper",
            "--paper-model",
            "llama2_7b",
            "--sparsity",
            "0.5",
            "--out",
            str(tmp_path / "s"),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert "layer   0" in printed and "mean 0.500000" in printed
    s = json.loads((tmp_path / "s" / "schedule.json").read_text())
    assert len(s["schedule"]) == 3 and abs(sum(s["schedule"]) / 3 - 0.5) < 1e-12 and "resampled" in s


def test_owl_schedule_and_sparsegpt_2_4(model_dir, data_dir, tmp_path, capsys):
    rc = main(
        [
            "--quiet",
            "schedule",
            "--model",
            str(model_dir),
            "--data-dir",
            data_dir,
            "--schedule",
            "owl",
            "--sparsity",
            "0.7",
            *SMALL,
        ]
    )
    assert rc == 0 and "schedule owl: target 0.7, mean 0.700000" in capsys.readouterr().out
    rc = main(
        [
            "--quiet",
            "prune",
            "--model",
            str(model_dir),
            "--data-dir",
            data_dir,
            "--method",
            "sparsegpt",
            "--pattern",
            "2:4",
            *SMALL,
            "--out",
            str(tmp_path / "nm"),
        ]
    )
    assert rc == 0
    res = json.loads((tmp_path / "nm" / "results.json").read_text())
    assert res["sparsity"]["per_layer"] == [0.5, 0.5, 0.5] and res["eval"] == {}


@pytest.mark.parametrize(
    "args, message",
    [
        (["prune", "--sparsity", "1.0"], "sparsity must be a number in [0, 1)"),
        (["prune", "--sparsity", "-0.1"], "sparsity must be a number in [0, 1)"),
        (["prune", "--pattern", "4:2"], "0 < N < M"),
        (["prune", "--pattern", "2:4", "--schedule", "activation"], "use --schedule uniform"),
        (["prune", "--pattern", "2:4", "--sparsity", "0.7"], "means sparsity 0.5"),
        (["prune", "--schedule", "paper"], "needs --paper-model"),
        (["prune", "--schedule", "paper", "--paper-model", "gpt9"], "no paper list"),
        (["prune", "--schedule", "file", "--schedule-file", "LEN2"], "2 entries but the model has 3 layers"),
        (["prune", "--schedule", "file", "--schedule-file", "LEN3", "--sparsity", "0.3"], "has mean 0.500000"),
        (["prune", "--eval", "wikitext2,squad"], "unknown evaluation task 'squad'"),
        (["prune", "--nsamples", "0"], "calibration samples must be a positive integer"),
        (["prune", "--seqlen", "1000"], "exceeds the model's context length 128"),
        (["prune", "--density", "gamma:x", "--schedule", "activation"], "density"),
        (["prune", "--damp", "0"], "damp"),
        (["prune", "--method", "nope"], "--method: 'nope' is not one of"),
        (["schedule", "--schedule", "owl", "--owl-m", "0"], "M > 0"),
        (["eval", "--tasks", "bogus"], "unknown evaluation task"),
        (["eval", "--tasks", "wikitext2", "--ppl-seqlen", "4096"], "exceeds the model's context length"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(model_dir, tmp_path, capsys, args, message):
    files = {"LEN2": tmp_path / "two.json", "LEN3": tmp_path / "three.txt"}
    files["LEN2"].write_text("[0.4, 0.6]")
    files["LEN3"].write_text("0.4 0.6 0.5")
    args = [str(files[a]) if a in files else a for a in args]
    out = tmp_path / "out"
    rc = main(["--quiet", args[0], "--model", str(model_dir), *args[1:], "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()  # no half-written run, not even an empty directory


def test_out_required_and_single_process_commands(model_dir, tmp_path, capsys, monkeypatch):
    """--out may come from --config, so its absence is checked by the command; eval and study hold
    one model and refuse to be split over torchrun processes."""
    assert main(["prune", "--model", str(model_dir)]) == 2
    assert capsys.readouterr().err.strip() == "paramact: error: prune needs --out (on the command line or in --config)"
    monkeypatch.setenv("WORLD_SIZE", "2")
    for args in (["eval", "--tasks", "wikitext2"], ["study", "prune"]):
        assert main([*args, "--model", str(model_dir), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err.strip()
        assert "runs in one process; under torchrun use `paramact prune`" in err and len(err.splitlines()) == 1
        assert not (tmp_path / "o").exists()
