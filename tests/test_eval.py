"""Evaluation protocols against direct, unbatched oracles on tiny models."""

import math

import pytest
import torch

import paramact
from paramact.batching import encode
from paramact.data import McItem
from paramact.errors import UserError
from paramact.evaluation import EvalConfig, code_nll, letter_accuracy, loglik_accuracy, parse_tasks, perplexity
from tiny import tiny_model


@pytest.fixture(scope="module")
def tiny(model_dir):
    return paramact.load_model(str(model_dir))


def test_uniform_logits_give_perplexity_equal_to_vocabulary_size():
    model = tiny_model("llama")
    with torch.no_grad():
        model.lm_head.weight.zero_()  # every logit 0: a uniform next-token distribution
    V = model.config.vocab_size
    ids = torch.randint(3, 90, (300,), generator=torch.Generator().manual_seed(0)).tolist()
    res = perplexity(model, ids, seqlen=32, windows=None, batch_size=3)
    assert res["windows"] == 300 // 32 and res["tokens"] == 9 * 32
    assert res["ppl"] == pytest.approx(V, rel=1e-5)
    assert "Wanda" in res["protocol"] and "seqlen=32" in res["protocol"]


@pytest.mark.parametrize("windows, batch", [(None, 1), (None, 4), (3, 2)])
def test_perplexity_equals_direct_cross_entropy(windows, batch):
    model = tiny_model("llama", seed=1)
    ids = torch.randint(3, 90, (250,), generator=torch.Generator().manual_seed(1))
    n = 250 // 40 if windows is None else windows
    nll = 0.0
    with torch.no_grad():
        for w in range(n):  # one window at a time, full logits
            x = ids[w * 40 : (w + 1) * 40][None]
            nll += float(torch.nn.functional.cross_entropy(model(x).logits[0, :-1], x[0, 1:], reduction="sum"))
    ref = math.exp(nll / (n * 39))
    res = perplexity(model, ids.tolist(), 40, windows, batch)
    assert res["ppl"] == pytest.approx(ref, rel=1e-5) and res["windows"] == n


def test_bos_opens_every_window_for_a_model_that_expects_one():
    """Gemma: each window is BOS + seqlen−1 stream tokens (the stream's own head BOS not repeated), every
    stream token predicted once, against a direct per-window cross-entropy; other families: no BOS."""
    from paramact.anatomy import window_bos
    from tiny import ByteTokenizer

    tok = ByteTokenizer()
    model = tiny_model("gemma3_text", seed=2)
    assert window_bos(model, tok) == tok.bos_token_id and window_bos(tiny_model("llama"), tok) is None
    bos = tok.bos_token_id
    body = torch.randint(3, 90, (200,), generator=torch.Generator().manual_seed(2))
    stream = [bos, *body.tolist()]  # a tokenizer that put BOS at the head of the stream
    nll, n = 0.0, 200 // 39
    with torch.no_grad():
        for w in range(n):
            x = torch.cat([torch.tensor([bos]), body[w * 39 : (w + 1) * 39]])[None]
            nll += float(torch.nn.functional.cross_entropy(model(x).logits[0, :-1], x[0, 1:], reduction="sum"))
    res = perplexity(model, stream, 40, None, 2, None, bos)
    assert res["windows"] == n and res["tokens"] == n * 40
    assert res["ppl"] == pytest.approx(math.exp(nll / (n * 39)), rel=1e-5)
    assert "BOS opening every window" in res["protocol"]
    assert perplexity(model, stream, 40, 2, 2, None, bos)["per_window_nll"] == pytest.approx(
        res["per_window_nll"][:2], rel=1e-6
    )
    assert "BOS" not in perplexity(model, stream, 40)["protocol"]


def test_perplexity_refuses_short_text():
    with pytest.raises(UserError, match="fewer than one window"):
        perplexity(tiny_model("llama"), [5] * 10, 32)


def items():
    """Synthetic multiple-choice items: letters are single tokens; continuations of one token each
    (scored from one forward pass of the context) or of several (one sequence per choice)."""
    conts_by_kind = [(" yes", " no"), ("A", "B", "C"), (" A long answer number one", " B", " short C text")]
    out = []
    for k in range(8):
        ctx = f"Question {k}: which is right? " + "filler " * (k * 3) + "\nAnswer:"
        conts = conts_by_kind[k % 3]
        letters = ("no", "yes") if k % 3 == 0 else ("A", "B", "C")
        out.append(
            McItem("toy", "validation", k, ctx, letters, tuple(c.strip() for c in conts), k % len(conts), ctx, conts)
        )
    return out


def oracle_letter(model, tok, its):
    preds = []
    for it in its:
        ids = torch.tensor([encode(tok, it.prompt).ids])
        with torch.no_grad():
            logits = model(ids).logits[0, -1]
        cand = [tok(l, add_special_tokens=False)["input_ids"][-1] for l in it.letters]
        preds.append(int(torch.argmax(logits[cand])))
    return preds


def oracle_loglik(model, tok, its):
    acc = acc_norm = 0
    scores = []
    for it in its:
        sums = []
        ctx = encode(tok, it.context).ids
        for c in it.continuations:
            cont = tok(c, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([ctx + cont])
            with torch.no_grad():
                lp = torch.log_softmax(model(ids).logits[0].double(), -1)
            sums.append(sum(float(lp[len(ctx) - 1 + k, t]) for k, t in enumerate(cont)))
        scores.append(sums)
        acc += max(range(len(sums)), key=lambda k: sums[k]) == it.gold
        norm = [s / len(c.strip()) for s, c in zip(sums, it.continuations)]
        acc_norm += max(range(len(norm)), key=lambda k: norm[k]) == it.gold
    return acc / len(its), acc_norm / len(its), scores


@pytest.mark.parametrize("batch", [1, 3, 8])
def test_letter_scoring_equals_unbatched_oracle(tiny, batch):
    model, tok = tiny
    its = items()
    res = letter_accuracy(model, tok, its, batch_size=batch)
    preds = oracle_letter(model, tok, its)
    assert res["predictions"] == preds and res["n"] == 8
    assert res["acc"] == sum(p == it.gold for p, it in zip(preds, its)) / 8
    assert res["protocol"] == "letter@last-token (paper)"


@pytest.mark.parametrize("batch", [1, 4])
def test_loglik_equals_unbatched_oracle(tiny, batch):
    model, tok = tiny
    its = items()
    res = loglik_accuracy(model, tok, its, batch_size=batch)
    acc, acc_norm, scores = oracle_loglik(model, tok, its)
    assert (res["acc"], res["acc_norm"]) == (acc, acc_norm)
    for got, ref in zip(res["scores"], scores):
        assert got == pytest.approx(ref, abs=1e-4)
    assert "lm-eval" in res["protocol"]


def test_letter_scoring_keeps_the_last_tokens_of_long_prompts(tiny):
    model, tok = tiny
    it = items()[7]
    res = letter_accuracy(model, tok, [it], max_length=20)
    assert res["truncated"] == 1
    ids = encode(tok, it.prompt).ids[-20:]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1]
    cand = [tok(l, add_special_tokens=False)["input_ids"][-1] for l in it.letters]
    assert res["predictions"] == [int(torch.argmax(logits[cand]))]


def test_code_nll_equals_direct(tiny):
    model, tok = tiny
    rows = [
        {"prompt": 'def f(x):\n    """double"""\n', "canonical_solution": "    return 2 * x\n"},
        {"prompt": "def g():\n", "canonical_solution": "    pass\n"},
    ]
    total = count = 0
    for r in rows:
        ctx = encode(tok, r["prompt"]).ids
        sol = tok(r["canonical_solution"], add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([ctx + sol])).logits[0].double(), -1)
        total -= sum(float(lp[len(ctx) - 1 + k, t]) for k, t in enumerate(sol))
        count += len(sol)
    res = code_nll(model, tok, rows, batch_size=2)
    assert res["nll"] == pytest.approx(total / count, rel=1e-5) and res["tokens"] == count
    assert res["ppl"] == pytest.approx(math.exp(total / count), rel=1e-5)


def test_task_names_and_config_are_checked():
    assert parse_tasks("wikitext2, boolq,mmlu:loglik") == ["wikitext2", "boolq", "mmlu:loglik"]
    with pytest.raises(UserError, match="unknown evaluation task"):
        parse_tasks("wikitext2,squad")
    with pytest.raises(UserError):
        EvalConfig(ppl_seqlen=1)
    with pytest.raises(UserError):
        EvalConfig(items=0)
    with pytest.raises(UserError, match="unknown lm-eval scorer 'fast'"):
        EvalConfig(lmeval_scorer="fast")


def test_batches_respect_the_memory_budgets(monkeypatch):
    from paramact.evaluation import scoring

    model = tiny_model("llama", seed=2)
    g = torch.Generator().manual_seed(3)
    reqs = []
    for n in (5, 40, 12, 90, 33, 7, 64):
        ids = tuple(torch.randint(3, 90, (n,), generator=g).tolist())
        reqs.append(scoring.Request(ids, tuple((p, ids[p + 1]) for p in range(0, n - 1, 3))))
    free = scoring.target_logprobs(model, reqs, batch_size=8)
    monkeypatch.setattr(scoring, "TOKEN_BUDGET", 100)
    monkeypatch.setattr(scoring, "LOGIT_BUDGET", 40 * 97)
    plan = scoring._plan(reqs, 8, 97)
    assert sorted(i for b in plan for i in b) == list(range(len(reqs)))
    for b in plan:
        longest = max(len(reqs[i].ids) for i in b)
        positions = {p for i in b for p, _ in reqs[i].targets}
        assert len(b) == 1 or (len(b) * longest <= 100 and len(b) * len(positions) * 97 <= 40 * 97)
    tight = scoring.target_logprobs(model, reqs, batch_size=8)
    for a, b in zip(free, tight):
        assert torch.allclose(a, b, atol=1e-5)
