"""lm-evaluation-harness as a scorer: its numbers beside paramact's own log-likelihood scorer on the
same items, and the standard errors every number carries."""

import math

import pytest
import torch

from data_helpers import shared_data
from paramact.data import mc_items
from paramact.evaluation import harness, perplexity
from paramact.evaluation.choice import loglik_accuracy
from paramact.evaluation.tasks import EvalConfig, _harness_task
from tiny import tiny_model

needs_lmeval = pytest.mark.skipif(not harness.available(), reason="lm-eval not installed (the lmeval extra)")


def test_perplexity_states_the_standard_error_of_its_windows():
    model = tiny_model("llama", seed=2)
    ids = torch.randint(3, 90, (400,), generator=torch.Generator().manual_seed(3)).tolist()
    res = perplexity(model, ids, 40, None, 3)
    per = []
    with torch.no_grad():  # oracle: one window at a time, full logits
        for w in range(10):
            x = torch.tensor(ids[w * 40 : (w + 1) * 40])[None]
            per.append(float(torch.nn.functional.cross_entropy(model(x).logits[0, :-1], x[0, 1:])))
    mean = sum(per) / 10
    sd = math.sqrt(sum((v - mean) ** 2 for v in per) / 9)
    assert res["nll"] == pytest.approx(mean, rel=1e-6)
    assert res["nll_stderr"] == pytest.approx(sd / math.sqrt(10), rel=1e-4)
    assert res["ppl_stderr"] == pytest.approx(math.exp(mean) * sd / math.sqrt(10), rel=1e-4)


def test_rows_take_the_fields_lm_eval_reads():
    assert harness.lmeval_row("boolq", {"label": "False"})["label"] == 0
    assert harness.lmeval_row("boolq", {"label": "True"})["label"] == 1
    h = harness.lmeval_row(
        "hellaswag", {"ctx": "A man. he", "ctx_a": None, "ctx_b": None, "endings": ("x",), "label": "0"}
    )
    assert (h["ctx_a"], h["ctx_b"], h["endings"], h["label"]) == ("A man. he", "", ["x"], "0")
    kept = harness.lmeval_row("hellaswag", {"ctx": "c", "ctx_a": "a", "ctx_b": "b", "endings": [], "label": 1})
    assert (kept["ctx_a"], kept["ctx_b"]) == ("a", "b")
    m = harness.lmeval_row("mmlu", {"choices": ("a", "b", "c", "d"), "answer": "2", "subject": "x"})
    assert m["choices"] == ["a", "b", "c", "d"] and m["answer"] == 2


def test_mmlu_is_split_by_subject_and_keeps_the_draw_order():
    rows = [{"subject": s, "question": "q", "choices": ["a"] * 4, "answer": 0} for s in "xyxzy"]
    demos = [{"subject": s, "question": "d", "choices": ["a"] * 4, "answer": 1} for s in "xxyyzz"]
    ht = harness.harness_task("mmlu", rows, demos, shots=2)
    assert [p[0] for p in ht.parts] == ["mmlu_x", "mmlu_y", "mmlu_z"]
    assert [p[3] for p in ht.parts] == [(0, 2), (1, 4), (3,)]
    assert ht.size == 5
    with pytest.raises(Exception, match="fewer than 3 shots"):
        harness.harness_task("mmlu", rows, demos, shots=3)


@pytest.mark.slow
@needs_lmeval
@pytest.mark.parametrize("task, n", [("boolq", 8), ("piqa", 12), ("siqa", 12), ("hellaswag", 8), ("mmlu", 4)])
def test_lm_eval_and_paramacts_loglik_scorer_agree(smollm2, task, n):
    """The same items through lm-eval 0.4's HFLM and through paramact's scorer: every choice's
    log-likelihood within 1e-3 nats (float32 sums over different batch shapes), the same accuracy
    (no item has two choices closer than the tolerance, checked)."""
    model, tok = smollm2
    data = str(shared_data())
    cfg = EvalConfig(items=n, data_dir=data)
    items, _ = mc_items(task, n, 0, shots=5 if task == "mmlu" else None, data_dir=data)
    ours = loglik_accuracy(model, tok, items)
    theirs = harness.harness_accuracy(model, tok, _harness_task(task, items, cfg))
    assert theirs["n"] == n and "lm-eval" in theirs["protocol"]
    for a, b in zip(ours["scores"], theirs["scores"], strict=True):
        assert len(a) == len(b)
        assert max(abs(x - y) for x, y in zip(a, b)) < 1e-3
        top = sorted(a, reverse=True)
        assert len(top) < 2 or top[0] - top[1] > 2e-3
    assert theirs["acc"] == ours["acc"] and theirs["correct_items"] == ours["correct_items"]
    assert sum(theirs["correct_items"]) == round(theirs["acc"] * n)
    if "acc_norm" in theirs:
        assert theirs["acc_norm"] == ours["acc_norm"]
    assert theirs["stderr"] == pytest.approx(math.sqrt(ours["acc"] * (1 - ours["acc"]) / (n - 1)))


@pytest.mark.slow
@needs_lmeval
def test_the_shared_prefix_scorer_gives_hflms_numbers(smollm2):
    """lm-eval's own requests, once through HFLM and once through paramact's shared-prefix forward:
    three MMLU items of one subject (their 5-shot demonstrations shared, computed once) and four
    HellaSwag items (each context shared by its four endings). Every choice's log-likelihood within
    1e-4 nats of HFLM's, the same correct items; the protocol names the scorer."""
    from paramact.data import load_split
    from paramact.evaluation import scoring

    model, tok = smollm2
    data = str(shared_data())
    test = load_split("mmlu", "test", data_dir=data).rows
    subject = test[0]["subject"]
    rows = [r for r in test if r["subject"] == subject][:3]
    demos = load_split("mmlu", "dev", data_dir=data).rows
    hs = load_split("hellaswag", "validation", data_dir=data).rows[:4]
    real = scoring._prefix_cache
    shares = []
    for ht in (harness.harness_task("mmlu", rows, demos, shots=5), harness.harness_task("hellaswag", hs)):
        shared = []
        hflm = harness.harness_accuracy(model, tok, ht, max_length=2048)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(scoring, "_prefix_cache", lambda *a, s=shared: s.append(len(a[1])) or real(*a))
            mp.setattr(scoring, "SHARED_SAVED", 0)  # every shared context, however short
            fast = harness.harness_accuracy(model, tok, ht, max_length=2048, scorer="shared-prefix")
        assert fast["protocol"].startswith(hflm["protocol"][:-1]) and "shared-prefix" in fast["protocol"]
        for a, b in zip(hflm["scores"], fast["scores"], strict=True):
            assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-4
        assert fast["correct_items"] == hflm["correct_items"] and fast.get("acc_norm") == hflm.get("acc_norm")
        shares.append(shared)
    assert len(shares[0]) == 1 and shares[0][0] > 300  # MMLU: the demonstrations, computed once
    assert shares[1] and min(shares[1]) >= scoring.SHARED_MIN  # HellaSwag: contexts shared by their endings


@pytest.mark.slow
@needs_lmeval
def test_lmeval_tasks_run_through_eval_command(tmp_path):
    from conftest import cli

    data = str(shared_data())
    r = cli(
        "--quiet",
        "eval",
        "--model",
        "smollm2-135m",
        "--tasks",
        "piqa:lmeval,piqa:loglik",
        "--items",
        "6",
        "--data-dir",
        data,
        "--out",
        str(tmp_path / "ev"),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "%|" not in r.stderr, r.stderr[-2000:]  # --quiet: lm-eval's own progress bars off too
    import json

    ev = json.loads((tmp_path / "ev" / "results.json").read_text())["eval"]
    assert ev["piqa:lmeval"]["protocol"].startswith("lm-eval 0.4")
    assert ev["piqa:loglik"]["protocol"] == "loglik acc/acc_norm (lm-eval)"
    assert ev["piqa:lmeval"]["acc"] == ev["piqa:loglik"]["acc"] and ev["piqa:lmeval"]["n"] == 6


def test_the_command_line_needs_lm_eval_only_for_its_tasks(tmp_path, model_dir):
    """Without the lmeval extra every command still starts (the study's default tasks name lm-eval
    tasks: a config checks names only); a study that needs lm-eval says so in one line, exit 2,
    before it loads the model or writes anything. Seen on a machine without lm-eval: every command,
    `models fetch` too, ended in a traceback."""
    import os

    from conftest import cli

    hidden = tmp_path / "site" / "lm_eval"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('lm-eval hidden by the test')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])}
    for args in (("models", "list"), ("study", "prune", "--help")):
        r = cli(*args, env=env)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    out = tmp_path / "study"
    r = cli("study", "prune", "--model", str(model_dir), "--out", str(out), env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].endswith(harness.INSTALL_HINT) and not out.exists()
    r = cli(
        "study",
        "prune",
        "--model",
        "no/such-model",
        "--v1-tasks",
        "wikitext2",
        "--v2-tasks",
        "c4",
        "--out",
        str(out),
        env=env,
    )
    assert r.returncode == 2 and "lm-eval" not in r.stderr  # perplexity tasks need no extra: it goes on


def test_lmeval_tasks_need_the_extra(monkeypatch):
    from paramact.errors import UserError
    from paramact.evaluation import parse_tasks

    monkeypatch.setattr(harness, "available", lambda: False)
    with pytest.raises(UserError, match=r"boolq:lmeval: lm-eval is not installed: pip install 'paramact\[lmeval\]'"):
        parse_tasks("wikitext2,boolq:lmeval")
    assert parse_tasks("boolq:loglik") == ["boolq:loglik"]  # paramact's own scorer needs nothing more
