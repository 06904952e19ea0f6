"""Shared prompt prefixes computed once (evaluation.scoring): against one full forward per request."""

import pytest
import torch

from paramact.evaluation import scoring
from paramact.evaluation.scoring import SHARED_MIN, Request, prefix_groups, target_scores
from tiny import tiny_model


def _oracle(model, r: Request) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One request alone, full logits, log-softmax in float64: (log-probs, argmax flags, top-2 gap)."""
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=torch.tensor([r.ids])).logits[0].double(), -1)
    rows = torch.stack([lp[p] for p, _ in r.targets])
    top = rows.topk(2, -1).values
    ts = torch.tensor([t for _, t in r.targets])
    return rows[torch.arange(len(ts)), ts], rows.argmax(-1) == ts, top[:, 0] - top[:, 1]


def _requests(seed: int) -> list[Request]:
    """Items as a harness asks for them: per group a long shared prompt (demonstrations), per item a
    question, per choice a continuation of 1 or 3 tokens; one-token choices repeat the same sequence."""
    g = torch.Generator().manual_seed(seed)

    def toks(n):
        return torch.randint(3, 90, (n,), generator=g).tolist()

    reqs = []
    for n_pre, n_items in ((70, 3), (40, 2), (36, 1), (5, 2)):
        pre = toks(n_pre)
        for _ in range(n_items):
            q = pre + toks(6)
            for c in range(3):
                cont = toks(1 if c < 2 else 3)
                ids = q + cont
                reqs.append(Request(tuple(ids[:-1]), tuple((len(q) - 1 + k, t) for k, t in enumerate(cont))))
    order = torch.randperm(len(reqs), generator=g).tolist()
    return [reqs[i] for i in order]


@pytest.mark.parametrize("family", ["llama", "gemma3_text", "gpt2", "mixtral", "qwen3_moe", "gpt_oss"])
@pytest.mark.parametrize("batch", [1, 3])
def test_shared_prefixes_give_the_log_probs_of_a_full_forward(family, batch, monkeypatch):
    """Every target's log-probability within 1e-5 of its request run alone (float32 against float64,
    other matmul shapes), every argmax flag equal where the top two logits are 1e-4 apart; gemma3 and
    gpt-oss keep a sliding window (4 tokens) far shorter than the shared prefixes. The cached path
    must run: counted (every group shares, whatever it saves)."""
    model = tiny_model(family, seed=4)
    reqs = _requests(5)
    monkeypatch.setattr(scoring, "SHARED_SAVED", 0)
    calls = []
    real = scoring._prefix_cache
    monkeypatch.setattr(scoring, "_prefix_cache", lambda *a: calls.append(len(a[1])) or real(*a))
    got = target_scores(model, reqs, batch_size=batch)
    assert sorted(calls) == [40, 41, 70]  # the lone item after 36 tokens: its choices share up to their read (41)
    for r, s in zip(reqs, got, strict=True):
        lp, greedy, gap = _oracle(model, r)
        assert s.logprobs.dtype == torch.float32 and s.logprobs.shape == (len(r.targets),)
        assert torch.allclose(s.logprobs.double(), lp, atol=1e-5, rtol=0)
        assert torch.equal(s.greedy[gap > 1e-4], greedy[gap > 1e-4])


def test_without_a_cache_every_sequence_runs_whole(monkeypatch):
    """A model that returns no key/value cache: the shared groups fall back to full sequences."""
    model = tiny_model("llama", seed=4)
    reqs = _requests(6)
    monkeypatch.setattr(scoring, "_prefix_cache", lambda *a: None)
    for r, s in zip(reqs, target_scores(model, reqs, batch_size=4), strict=True):
        assert torch.allclose(s.logprobs.double(), _oracle(model, r)[0], atol=1e-5, rtol=0)


def test_prefix_groups_by_hand(monkeypatch):
    """Sorted runs; a prefix stops at a member's first read position; a newcomer joins while the run
    keeps >= SHARED_MIN tokens and does not save fewer tokens than before (n·q >= (n−1)·P); a run
    that saves fewer than SHARED_SAVED tokens ((n−1)·P) runs plain."""
    monkeypatch.setattr(scoring, "SHARED_SAVED", 0)
    base = list(range(3, 3 + 70))

    def req(ids, first):
        return Request(tuple(ids), ((first, 1),))

    a = req([*base, 90, 91], 71)  # reads at 71: may share up to 71 tokens
    b = req([*base, 92, 93], 71)  # 70 in common with a: a run of 2 at P = 70
    c = req(base[:50] + [94] * 30, 60)  # 50 in common: 2·50 >= 1·70, joins (P = 50)
    d = req(base[:40] + [95] * 30, 60)  # 3·40 >= 2·50, joins (P = 40)
    e = req(base[:36] + [96] * 30, 60)  # 4·36 >= 3·40, joins (P = 36)
    f = req([1] * 40 + [2], 39)  # shares nothing: alone, runs whole
    g = req(base[:33] + [97] * 30, SHARED_MIN - 1)  # reads before SHARED_MIN: shares nothing
    # sorted: f, a, b, c, d, e, g
    assert prefix_groups([a, b, c, d, e, f, g]) == [(0, [5]), (36, [0, 1, 2, 3, 4]), (0, [6])]
    late = req(base[:60] + [98] * 5, 64)  # after a run of [a, b] at P = 70: 2·60 >= 70, joins at 60
    assert prefix_groups([a, b, late]) == [(60, [0, 1, 2])]
    tight = [req([*base, 90 + k], 70) for k in range(4)] + [req([*base[:34], 99], 34)]
    # four at P = 70, then one sharing 34: 4·34 < 3·70, a run of its own (of one: plain)
    assert prefix_groups(tight) == [(70, [0, 1, 2, 3]), (0, [4])]
    monkeypatch.setattr(scoring, "SHARED_SAVED", 128)
    assert prefix_groups([a, b, late]) == [(0, [0, 1, 2])]  # saves 2·60 = 120 tokens: not worth a pass
    assert prefix_groups(tight) == [(70, [0, 1, 2, 3]), (0, [4])]  # saves 3·70 = 210
    for shared, members in prefix_groups([a, b, c, d, e, f, g, late, *tight]):
        assert shared == 0 or (shared >= SHARED_MIN and (len(members) - 1) * shared >= 128)
        for i in members:
            assert shared <= min(p for p, _ in ([a, b, c, d, e, f, g, late, *tight][i]).targets)


def test_a_forward_without_a_cache_argument_shares_nothing():
    """A model whose forward takes no key/value cache (remote code, say): no prefix pass is tried."""
    llama = tiny_model("llama", seed=4)

    class NoCache(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = llama

        def forward(self, input_ids, attention_mask=None, use_cache=False):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)

    assert scoring._cache_argument(llama) == "cache" and scoring._cache_argument(NoCache()) is None
    assert scoring._prefix_cache(NoCache(), list(range(3, 40)), torch.device("cpu")) is None
    assert scoring._prefix_cache(llama, list(range(3, 40)), torch.device("cpu")).get_seq_length() == 37
