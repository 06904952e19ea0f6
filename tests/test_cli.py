"""`paramact activations` end to end on a tiny model directory, and its bad-input answers."""

import json

import pytest
import torch
from safetensors.torch import load_file

import paramact
from conftest import cli
from oracle import rel_err
from paramact.data import load_texts
from paramact.sketch import read_fingerprints


def test_activations_run_directory(model_dir, data_file, tmp_path):
    out = tmp_path / "run"
    r = cli(
        "--quiet",
        "activations",
        "--model",
        str(model_dir),
        "--data",
        str(data_file),
        "--samples",
        "6",
        "--batch-size",
        "4",
        "--sketch-dim",
        "256",
        "--gammas",
        "1e-3,1e-2,1e-1",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    for f in (
        "config.json",
        "env.json",
        "results.json",
        "mean_map.safetensors",
        "fingerprints.safetensors",
        "samples.safetensors",
    ):
        assert (out / f).is_file(), f
    res = json.loads((out / "results.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    env = json.loads((out / "env.json").read_text())
    assert cfg["source"]["sha256"] and cfg["samples"] == 6 and env["torch"] == torch.__version__
    from importlib.metadata import distributions

    import transformers

    # every installed distribution with its version (the lock can be checked against a run)
    assert env["packages"]["torch"] == torch.__version__ and env["packages"]["transformers"] == transformers.__version__
    assert len(env["packages"]) == len({d.metadata["Name"].lower() for d in distributions() if d.metadata["Name"]})
    model, tok = paramact.load_model(str(model_dir))
    an = paramact.discover(model)
    assert [r_["index"] for r_ in res["layers"]] == list(range(an.n_layers))
    for i, row in enumerate(res["layers"]):
        assert row["params"] == an.layer_params(i)
        counts = [row["count_above"][k] for k in ("0.001", "0.01", "0.1")]
        assert counts == sorted(counts, reverse=True) and 0 <= counts[-1] <= counts[0] <= row["params"]
        assert 0 < row["mass_share_50"] < row["mass_share_90"] <= 1
        assert row["mean_abs"] > 0
    # the saved mean map is the API's map, keyed by HF parameter name
    mm = load_file(str(out / "mean_map.safetensors"))
    assert sorted(mm) == sorted(an.names)
    texts, _ = load_texts(str(data_file), 6, 1)
    ref = paramact.activation_map(model, tok, texts, batch_size=2)
    assert max(rel_err(mm[k], ref[k]) for k in ref) <= 1e-5
    # counts recomputed from the saved map
    layer0 = torch.cat([mm[w.name].flatten() for w in an.layers[0]])
    assert res["layers"][0]["count_above"]["0.01"] == int((layer0 > 0.01).sum())
    fp = read_fingerprints(out / "fingerprints.safetensors")
    ref = paramact.analyze(model, tok, texts, paramact.ActivationConfig(batch_size=3, sketch_dim=256))
    assert fp.shape == (6, an.n_layers, 256) and rel_err(fp, ref.fingerprints.float()) <= 2e-3  # fp16
    per = load_file(str(out / "samples.safetensors"))
    assert rel_err(per["norms"], ref.norms) <= 1e-5 and rel_err(per["sums"], ref.sums) <= 1e-5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "/nonexistent/model", "--data", "pydoc"], "model path not found"),
        (["--model", "no-such-registry-model"], "unknown model 'no-such-registry-model'"),
        (["--data", "/nonexistent/file.txt"], "data file not found"),
        (["--gammas", "0,1e-6"], "positive"),
        (["--target", "nope"], "is not one of"),
        (["--samples", "0"], "got 0"),
        (["--samples", "999"], "only 10"),
        (["--sketch-dim", "1000"], "power of two"),
        (["--batch-size", "0"], "batch size"),
        (["--device", "gpu0"], "--device 'gpu0' is not a device name"),
        (["--stats-device", "meta"], "--stats-device meta holds no data"),
        (["--checkpoint-every", "-3"], "must be >= 0, got -3"),
    ]
    + ([] if torch.cuda.is_available() else [(["--device", "cuda:0"], "has no CUDA device")]),
)
def test_bad_input_is_one_line_and_exit_2(model_dir, data_file, tmp_path, args, message):
    base = {"--model": str(model_dir), "--data": str(data_file), "--samples": "4", "--out": str(tmp_path / "r")}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    flat = [x for kv in base.items() for x in kv]
    r = cli("--quiet", "activations", *flat)
    assert r.returncode == 2, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()  # nothing written, not even an empty run directory


def test_empty_data_file(model_dir, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    r = cli("--quiet", "activations", "--model", str(model_dir), "--data", str(empty), "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "empty dataset" in r.stderr


def test_finished_run_is_not_overwritten(model_dir, data_file, tmp_path):
    out = tmp_path / "done"
    out.mkdir()
    (out / "results.json").write_text("{}")
    r = cli("--quiet", "activations", "--model", str(model_dir), "--data", str(data_file), "--out", str(out))
    assert r.returncode == 2 and "already holds a finished run" in r.stderr


@pytest.mark.parametrize(
    "command",
    [["activations", "--data", "pydoc"], ["findings"], ["sts"], ["prune"], ["study", "prune"]],
    ids=lambda c: " ".join(c),
)
def test_resume_of_a_finished_run_is_a_no_op(tmp_path, command):
    """A requeued job (--resume on a finished run) exits 0 before loading anything (the model
    named here does not exist) and leaves every file as it was."""
    out = tmp_path / "done"
    out.mkdir()
    (out / "results.json").write_text('{"done": 1}')
    (out / "config.json").write_text("{}")
    r = cli("--quiet", *command, "--model", "no-such-org/no-such-model", "--out", str(out), "--resume")
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == f"paramact: {out} holds a finished run (results.json); nothing to resume"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "results.json"]
    assert (out / "results.json").read_text() == '{"done": 1}'


def test_models_list():
    r = cli("models", "list")
    assert r.returncode == 0 and "smollm2-135m" in r.stdout and "gemma3-270m" in r.stdout


def test_model_loading_errors(tmp_path, data_file):
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    t5 = tmp_path / "t5"
    t5.mkdir()
    (t5 / "config.json").write_text('{"model_type": "t5", "d_model": 8, "num_layers": 1, "num_heads": 1, "d_kv": 8}')
    for model, message in [(empty, "holds no config.json"), (t5, "cannot load model")]:
        r = cli("--quiet", "activations", "--model", str(model), "--data", str(data_file), "--out", str(tmp_path / "r"))
        assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_non_finite_gradients_are_refused():
    """float16 overflow shows up as inf/NaN: one clear error, not silent garbage."""
    from paramact.api import ActivationConfig, analyze
    from paramact.errors import UserError
    from tiny import ByteTokenizer, tiny_model

    model = tiny_model("llama")
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[0, 0] = float("inf")
    with pytest.raises(UserError, match="non-finite"):
        analyze(model, ByteTokenizer(), ["some text", "more text"], ActivationConfig(batch_size=2, sketch_dim=0))


def test_corrupt_checkpoint_on_resume(model_dir, data_file, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "checkpoint.safetensors").write_bytes(b"garbage")
    r = cli(
        "--quiet",
        "activations",
        "--model",
        str(model_dir),
        "--data",
        str(data_file),
        "--samples",
        "4",
        "--out",
        str(out),
        "--resume",
    )
    assert r.returncode == 2 and "corrupt checkpoint" in r.stderr and "Traceback" not in r.stderr


def test_long_texts_are_truncated_with_a_warning_and_recorded(model_dir, data_file, tmp_path):
    out = tmp_path / "r"
    r = cli(
        "--quiet",
        "activations",
        "--model",
        str(model_dir),
        "--data",
        str(data_file),
        "--samples",
        "4",
        "--max-length",
        "8",
        "--sketch-dim",
        "0",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["n_truncated"] == 4 and res["max_length"] == 8
    assert "4 of 4 samples were longer than 8 tokens and were truncated" in r.stderr


def test_gold_logprob_scores_each_items_gold_answer(model_dir, tmp_path):
    """`--target gold_logprob` on a task dataset: each prompt is scored on its own gold answer
    (load_answers, aligned with load_texts); D per sample equals log p(answer | prompt) computed
    here with one plain forward per sample (left-truncated to the context, answer kept)."""
    from data_helpers import shared_dataset
    from paramact.data import load_answers, load_split
    from paramact.data.prompts import ANSWER_TOKENS

    data = shared_dataset("boolq")
    texts, source = load_texts("boolq", 5, 1, data_dir=data)
    answers = load_answers("boolq", 5, 1, data_dir=data)
    rows = load_split("boolq", source["split"], data_dir=data).rows
    assert answers == [ANSWER_TOKENS["boolq"][int(rows[i]["label"])] for i in source["indices"]]
    assert len(set(answers)) == 2  # both answers occur: the alignment is tested, not a constant
    out = tmp_path / "r"
    r = cli(
        "--quiet",
        "activations",
        "--model",
        str(model_dir),
        "--data",
        "boolq",
        "--data-dir",
        str(data),
        "--samples",
        "5",
        "--data-seed",
        "1",
        "--target",
        "gold_logprob",
        "--batch-size",
        "2",
        "--sketch-dim",
        "0",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    got = load_file(str(out / "samples.safetensors"))["target_values"]
    model, tok = paramact.load_model(str(model_dir))
    ctx = model.config.max_position_embeddings
    for i, (text, ans) in enumerate(zip(texts, answers)):
        cont = tok(ans, add_special_tokens=False)["input_ids"]
        ids = tok(text, add_special_tokens=True)["input_ids"][-(ctx - len(cont)) :] + cont
        with torch.no_grad():
            logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
        want = sum(float(logp[len(ids) - len(cont) - 1 + j, t]) for j, t in enumerate(cont))
        assert float(got[i]) == pytest.approx(want, rel=1e-4, abs=1e-5), i
    r = cli(
        "--quiet",
        "activations",
        "--model",
        str(model_dir),
        "--data",
        "pydoc",
        "--target",
        "gold_logprob",
        "--out",
        str(tmp_path / "p"),
    )
    assert r.returncode == 2 and "gold answers come with the registry's question-answer datasets" in r.stderr
    assert not (tmp_path / "p").exists()


def test_findings_and_sts_refuse_answer_targets(model_dir, tmp_path):
    for args, message in (
        (["findings", "--datasets", "pydoc,pycode"], "findings compares corpora too"),
        (["sts", "--pairs", "4"], "sentence pairs have none"),
    ):
        r = cli("--quiet", *args, "--model", str(model_dir), "--target", "gold_logprob", "--out", str(tmp_path / "o"))
        assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / "o").exists()
