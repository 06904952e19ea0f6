"""`paramact findings` end to end: a tiny random model (hermetic) and a few SmolLM2 samples.

The fingerprint matrix and pair values are compared with exact LLMDcos from in-batch Grams."""

import json
import math

import pytest
import torch

from experiment_helpers import cli
from paramact.api import ActivationConfig, analyze
from paramact.context import RunContext
from paramact.data import load_texts
from paramact.errors import UserError
from paramact.experiments.findings import FindingsRun, default_pairs, paired_items, run_findings
from paramact.experiments.layers import DEEP, RANGES, SHALLOW, STS, parse_range
from paramact.models import load_model
from tiny import save_tiny

DATASETS = ["pydoc", "pycode", "humaneval"]
N, MAXLEN, M = 6, 32, 65536


def test_layer_ranges_reproduce_the_paper_at_32_layers_and_scale():
    assert SHALLOW.resolve(32) == (0, 16) and DEEP.resolve(32) == (16, 30) and STS.resolve(32) == (20, 30)
    assert {RANGES[k].resolve(32) for k in ("12-L-2", "12-L", "16-L-2", "16-L", "20-L-2", "20-L")} == {
        (12, 30),
        (12, 32),
        (16, 30),
        (16, 32),
        (20, 30),
        (20, 32),
    }
    assert DEEP.resolve(30) == (15, 28) and STS.resolve(30) == (19, 28)  # SmolLM2
    for L in range(1, 65):
        for r in RANGES.values():
            a, b = r.resolve(L)
            assert 0 <= a < b <= L
    d = DEEP.describe(30)
    assert d["index_base"] == 0 and d["label"].startswith("[15, 28) 0-based = layers 16-28 1-based")
    assert parse_range("0.5:0.75").resolve(8) == (4, 6)
    assert parse_range("19:28").resolve(30) == (19, 28) and parse_range("0:1").resolve(30) == (0, 30)
    with pytest.raises(UserError, match="outside the model: it has 30 layers"):
        parse_range("20:32").resolve(30)
    for bad in ("0.8:0.2", "x", "0.5", "0:1.5", "28:19"):
        with pytest.raises(UserError):
            parse_range(bad)


def test_pairing_never_pairs_an_item_with_itself():
    for n in (2, 3, 6, 64):
        assert all(i != j for i, j in paired_items(n, n, True)) and len(paired_items(n, n, True)) == n
    assert paired_items(4, 6, False) == [(k, k) for k in range(4)]
    assert default_pairs(["boolq", "mmlu", "humaneval", "c4"]) == [
        ("boolq", "boolq"),
        ("mmlu", "mmlu"),
        ("humaneval", "humaneval"),
        ("c4", "c4"),
        ("boolq", "mmlu"),
        ("boolq", "humaneval"),
        ("mmlu", "humaneval"),
    ]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    model_dir = save_tiny(tmp_path_factory.mktemp("tiny") / "llama")
    out = tmp_path_factory.mktemp("findings") / "run"
    rc = cli(
        "findings",
        "--model",
        str(model_dir),
        "--datasets",
        ",".join(DATASETS),
        "--samples",
        str(N),
        "--max-length",
        str(MAXLEN),
        "--batch-size",
        "4",
        "--gammas",
        "1e-3,1e-2",
        "--check-samples",
        "9",
        "--dataset-pairs",
        "pydoc-pydoc,pycode-humaneval",
        "--out",
        str(out),
    )
    assert rc == 0
    return model_dir, out, json.loads((out / "results.json").read_text())


def test_results_contents(tiny_run):
    _, out, res = tiny_run
    L = res["n_layers"]
    assert res["kind"] == "findings" and L == 3 and res["layer_index_base"] == 0
    assert res["datasets"] == DATASETS and res["corpora"] == ["pydoc", "pycode"]
    assert res["ranges"]["deep"]["start"] == 2 and res["ranges"]["shallow"]["stop"] == 2
    for name in DATASETS:
        f1 = res["finding1"][name]
        assert f1["n_samples"] == N and len(f1["layers"]) == L
        assert [r["index"] for r in f1["layers"]] == list(range(L))
        for r in f1["layers"]:
            assert 0 <= r["count_above"]["0.01"] <= r["count_above"]["0.001"] <= r["params"]
            assert 0 < r["mass_share_50"] < r["mass_share_90"] <= 1
        assert (out / name / "results.json").is_file() and (out / name / "samples.safetensors").is_file()
        assert not (out / name / "fingerprints.safetensors").exists()  # used, then removed (--save-fingerprints)
    assert not (out / "pydoc" / "mean_map.safetensors").exists()  # only with --save-maps
    mat = torch.tensor(res["finding3"]["matrix"])
    assert mat.shape == (3, 3) and torch.equal(mat, mat.T)
    assert bool(((mat > 0) & (mat < 1)).all())
    assert len(res["mean_llmdcos"]) == 6 and set(res["finding2"]["summary"]) == set(res["mean_llmdcos"])
    for v in res["finding2"]["summary"].values():
        assert abs(v["drop"] - (v["shallow"] - v["deep"])) < 1e-12
    pairs = res["finding2"]["pairs"]
    assert list(pairs) == ["pydoc|pydoc", "pycode|humaneval"]
    for p in pairs.values():
        assert len(p["per_layer"]) == L and all(len(v) == N for v in p["per_layer"])
    ck = res["finding3"]["check"]
    assert ck["samples_per_dataset"] == dict.fromkeys(DATASETS, 3) and ck["n_pairs"] == 36
    assert torch.equal(torch.tensor(ck["matrix_exact"]), torch.tensor(ck["matrix_exact"]).T)
    assert ck["matrix_error_max"] <= 4 * ck["standard_error_bound"]
    for f in ("finding1_tasks.png", "finding1_corpora.png", "finding2_boxplots.png", "finding3_matrix.png"):
        assert (out / "plots" / f).stat().st_size > 5000
    assert (out / "report.html").is_file()


def test_fingerprint_matrix_agrees_with_exact_pairs(tiny_run):
    """Every item of every dataset in one batch: exact LLMDcos of all pairs, then the same means."""
    model_dir, _, res = tiny_run
    model, tok = load_model(str(model_dir))
    texts = [t for n in DATASETS for t in load_texts(n, N, 1, tokenizer=tok)[0]]
    ((_, exact),) = analyze(
        model, tok, texts, ActivationConfig(batch_size=len(texts), max_length=MAXLEN, reducers=("grams",))
    ).batch_llmdcos
    exact = exact.double()  # [L, 18, 18]
    a, b = DEEP.resolve(3)
    deep = exact[a:b].mean(0)
    se = math.sqrt(2 / M)
    for i, x in enumerate(DATASETS):
        for j, y in enumerate(DATASETS):
            block = deep[i * N : (i + 1) * N, j * N : (j + 1) * N]
            ref = (block.sum() - block.diagonal().sum()) / (N * N - N) if i == j else block.mean()
            assert abs(res["finding3"]["matrix"][i][j] - float(ref)) <= 3 * se, (x, y)
    # Finding 2's paired values: pydoc item k with pydoc item k + 3; pycode k with humaneval k
    got = torch.tensor(res["finding2"]["pairs"]["pydoc|pydoc"]["per_layer"]).double()
    ref = torch.stack([exact[:, k, (k + 3) % N] for k in range(N)], 1)
    assert (got - ref).abs().max() <= 4 * se
    got = torch.tensor(res["finding2"]["pairs"]["pycode|humaneval"]["per_layer"]).double()
    ref = torch.stack([exact[:, N + k, 2 * N + k] for k in range(N)], 1)
    assert (got - ref).abs().max() <= 4 * se
    # the per-layer means of the summary, shallow layers [0, 2)
    blk = exact[:2, 0:N, N : 2 * N].mean((1, 2)).mean()
    assert abs(res["finding2"]["summary"]["pydoc|pycode"]["shallow"] - float(blk)) <= 2 * se


def test_bad_input_is_one_line_exit_2(tiny_run, tmp_path, capsys):
    model_dir = str(tiny_run[0])
    assert cli("findings", "--model", model_dir, "--datasets", "pydoc,pydoc", "--out", str(tmp_path / "a")) == 2
    assert (
        cli(
            "findings",
            "--model",
            model_dir,
            "--datasets",
            "pydoc,pycode",
            "--dataset-pairs",
            "pydoc-boolq",
            "--out",
            str(tmp_path / "b"),
        )
        == 2
    )
    assert (
        cli("findings", "--model", model_dir, "--datasets", "pydoc", "--sketch-dim", "0", "--out", str(tmp_path / "c"))
        == 2
    )
    assert cli("findings", "--model", model_dir, "--datasets", "pydoc", "--out", str(tiny_run[1])) == 2
    assert cli("report", str(tmp_path / "nothing")) == 2
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("paramact: error")]
    assert len(lines) == 5


def test_findings_on_smollm2(smollm2, tmp_path):
    """A few real samples: 30 layers, deep = [15, 28), the matrix checked against exact pairs at the
    default sketch size (documented: 99% of fingerprint errors <= 0.01)."""
    model, tok = smollm2
    run = FindingsRun(
        data=("pydoc", "pycode"), samples=3, check_samples=6, activation=ActivationConfig(batch_size=3, max_length=48)
    )
    res = run_findings(run, RunContext(out=tmp_path / "run"), model, tok)
    assert res["n_layers"] == 30 and res["ranges"]["deep"]["label"].startswith("[15, 28)")
    mat = torch.tensor(res["finding3"]["matrix"])
    assert torch.equal(mat, mat.T) and bool(((mat > 0.05) & (mat < 1)).all())
    ck = res["finding3"]["check"]
    assert ck["n_pairs"] == 15 and ck["sketch_dim"] == 65536
    assert ck["pair_error_p99"] <= 0.01 and ck["matrix_error_max"] <= 0.01, ck
    for name in ("pydoc", "pycode"):
        layers = res["finding1"][name]["layers"]
        assert len(layers) == 30 and all(r["params"] == 3538944 for r in layers)
