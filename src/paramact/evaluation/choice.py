"""Multiple-choice accuracy in two protocols, and HumanEval canonical-solution NLL.

- letter@last-token (the paper, §3.1): one forward pass on the paper's prompt; among the
  answer tokens (`tokenizer(letter).input_ids[-1]`) the one with the highest last-position logit
  is the prediction. Prompts longer than max_length keep their last max_length tokens.
- loglik (lm-eval style): Σ log P(continuation | context) per choice; acc = argmax of the sum,
  acc_norm = argmax of the sum divided by the choice's length in characters (without the
  one-space delimiter, as lm-eval). Items whose
  continuations are all one token are scored from a single forward pass of the context.
- HumanEval: mean negative log-likelihood per token of `canonical_solution` after `prompt`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..batching import encode
from ..data import McItem
from .scoring import Request, target_logprobs

LETTER_PROTOCOL = "letter@last-token (paper)"
LOGLIK_PROTOCOL = "loglik acc/acc_norm (lm-eval)"
CODE_PROTOCOL = "canonical-solution NLL per token"


def binomial_stderr(p: float, n: int) -> float:
    """The standard error of an accuracy over n items, as lm-eval states it (sample s.d. / sqrt(n))."""
    return math.sqrt(p * (1 - p) / (n - 1)) if n > 1 else math.nan


def _pad(tokenizer) -> int:
    p = getattr(tokenizer, "pad_token_id", None)
    return 0 if p is None else int(p)


def answer_token(tokenizer, letter: str) -> int:
    return int(tokenizer(letter, add_special_tokens=False)["input_ids"][-1])


def _left_truncate(ids: list[int], max_length: int | None) -> tuple[list[int], bool]:
    if max_length is None or len(ids) <= max_length:
        return ids, False
    return ids[-max_length:], True


def letter_accuracy(
    model, tokenizer, items: Sequence[McItem], batch_size: int = 8, max_length: int | None = None, progress=None
) -> dict:
    reqs, golds, truncated = [], [], 0
    for it in items:
        ids, cut = _left_truncate(list(encode(tokenizer, it.prompt).ids), max_length)
        truncated += cut
        last = len(ids) - 1
        reqs.append(Request(tuple(ids), tuple((last, answer_token(tokenizer, ltr)) for ltr in it.letters)))
        golds.append(it.gold)
    lps = target_logprobs(model, reqs, batch_size, _pad(tokenizer), progress)
    # argmax of log-softmax over the answer tokens = argmax of their logits; first index wins ties
    preds = [int(torch.argmax(lp)) for lp in lps]
    hits = [int(p == g) for p, g in zip(preds, golds)]
    correct = sum(hits)
    return {
        "acc": correct / len(items),
        "stderr": binomial_stderr(correct / len(items), len(items)),
        "correct": correct,
        "n": len(items),
        "truncated": truncated,
        "correct_items": hits,  # per item, for paired comparisons on the same items
        "protocol": LETTER_PROTOCOL,
        "predictions": preds,
    }


def _choice_requests(tokenizer, item: McItem, max_length: int | None) -> tuple[list[Request], list[list[int]], int]:
    """Requests for one item and, per choice, (request index, first target, number of targets)."""
    ctx = list(encode(tokenizer, item.context).ids)
    conts = [list(tokenizer(c, add_special_tokens=False)["input_ids"]) for c in item.continuations]
    if all(len(c) == 1 for c in conts):
        ids, cut = _left_truncate(ctx, max_length)
        last = len(ids) - 1
        return [Request(tuple(ids), tuple((last, c[0]) for c in conts))], [[0, k, 1] for k in range(len(conts))], cut
    reqs, where, cut_any = [], [], False
    for c in conts:
        keep = None if max_length is None else max(1, max_length - len(c))
        head, cut = _left_truncate(ctx, keep)
        cut_any |= cut
        ids = head + c
        reqs.append(Request(tuple(ids), tuple((len(head) - 1 + k, t) for k, t in enumerate(c))))
        where.append([len(reqs) - 1, 0, len(c)])
    return reqs, where, cut_any


def loglik_accuracy(
    model, tokenizer, items: Sequence[McItem], batch_size: int = 8, max_length: int | None = None, progress=None
) -> dict:
    reqs: list[Request] = []
    plan = []
    truncated = 0
    for it in items:
        r, where, cut = _choice_requests(tokenizer, it, max_length)
        plan.append([(len(reqs) + w[0], w[1], w[2]) for w in where])
        reqs.extend(r)
        truncated += cut
    lps = target_logprobs(model, reqs, batch_size, _pad(tokenizer), progress)
    acc = acc_norm = 0
    scores, hits = [], []
    for it, choices in zip(items, plan):
        sums = [float(lps[r][s : s + n].double().sum()) for r, s, n in choices]
        scores.append(sums)
        normed = [
            v / max(len(c.removeprefix(" ")), 1) for v, c in zip(sums, it.continuations)
        ]  # lm-eval: choice text length
        hits.append(int(max(range(len(sums)), key=lambda k: (sums[k], -k)) == it.gold))
        acc += hits[-1]
        acc_norm += max(range(len(normed)), key=lambda k: (normed[k], -k)) == it.gold
    n = len(items)
    return {
        "acc": acc / n,
        "acc_norm": acc_norm / n,
        "stderr": binomial_stderr(acc / n, n),
        "n": n,
        "truncated": truncated,
        "correct_items": hits,
        "protocol": LOGLIK_PROTOCOL,
        "scores": scores,
    }


def code_nll(
    model, tokenizer, rows: Sequence[dict], batch_size: int = 4, max_length: int | None = None, progress=None
) -> dict:
    """rows: HumanEval problems with `prompt` and `canonical_solution`."""
    reqs = []
    truncated = 0
    for r in rows:
        ctx = list(encode(tokenizer, r["prompt"]).ids)
        sol = list(tokenizer(r["canonical_solution"], add_special_tokens=False)["input_ids"])
        keep = None if max_length is None else max(1, max_length - len(sol))
        head, cut = _left_truncate(ctx, keep)
        truncated += cut
        reqs.append(Request(tuple(head + sol), tuple((len(head) - 1 + k, t) for k, t in enumerate(sol))))
    lps = target_logprobs(model, reqs, batch_size, _pad(tokenizer), progress)
    total = -sum(float(lp.double().sum()) for lp in lps)
    tokens = sum(lp.numel() for lp in lps)
    per_problem = [-float(lp.double().mean()) for lp in lps]
    return {
        "nll": total / tokens,
        "ppl": math.exp(total / tokens),
        "nll_mean_per_problem": sum(per_problem) / len(rows),
        "n": len(rows),
        "tokens": tokens,
        "truncated": truncated,
        "protocol": CODE_PROTOCOL,
    }
