"""Token windows and calibration sequences (the paper: §2 for C4/WikiText-2, §3.1, §3.2).

- `document_windows`: the C4 sampler: draw random documents until one is longer than seqlen
  tokens, then a random seqlen window of it.
- `stream_windows`: the WikiText-2 sampler: random seqlen windows of the whole split, its
  rows joined with " ".
- `concat_sequences`: the task calibration sets (MMLU, SIQA, any registered dataset): a
  random start item, then items j = n, n+1, ... (one counter shared by all sequences, as the
  paper's code), joined with "\\n###\\n", until the sequence reaches seqlen tokens; truncated
  to seqlen. MMLU and PIQA items carry their answers, SIQA and HellaSwag items do not and
  always get 100 followers first.
- `calibration`: one entry point by dataset name.

A tokenizer is anything callable like a HF tokenizer: `tok(text, add_special_tokens=False)
["input_ids"]` and `tok.decode(ids)`. Special tokens are never added here: the model side
prepends BOS. (The paper's code tokenized with BOS, so its windows could start with it.)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError
from . import prompts
from .loading import load_split
from .registry import WINDOWED_CORPORA, get_spec
from .sampling import pick


class WordTokenizer:
    """The fallback when no tokenizer is given: whitespace-separated words are the tokens."""

    name_or_path = "whitespace words (no tokenizer given)"

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": text.split()}

    def decode(self, ids: Sequence[Any]) -> str:
        return " ".join(ids)


def encode(tokenizer, text: str) -> list:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def tokenizer_name(tokenizer) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def _check(n: int, seqlen: int) -> None:
    if isinstance(seqlen, bool) or not isinstance(seqlen, int) or seqlen < 1:
        raise UserError(f"seqlen must be a positive integer, got {seqlen!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"number of sequences must be a positive integer, got {n!r}")


def document_windows(docs: Sequence[str], tokenizer, n: int, seqlen: int, seed: int) -> list[list]:
    _check(n, seqlen)
    if not docs:
        raise UserError("no documents to draw windows from")
    rng, short, out = random.Random(seed), set(), []
    while len(out) < n:
        i = rng.randint(0, len(docs) - 1)
        if i in short:
            continue
        ids = encode(tokenizer, docs[i])
        if len(ids) <= seqlen:
            short.add(i)
            if len(short) == len(docs):
                raise UserError(f"no document is longer than seqlen={seqlen} tokens")
            continue
        start = rng.randint(0, len(ids) - seqlen - 1)
        out.append(ids[start : start + seqlen])
    return out


def stream_windows(text: str, tokenizer, n: int, seqlen: int, seed: int) -> list[list]:
    _check(n, seqlen)
    ids = encode(tokenizer, text)
    if len(ids) < seqlen + 1:
        raise UserError(f"the text has {len(ids)} tokens, too few for windows of seqlen={seqlen}")
    rng = random.Random(seed)
    return [ids[s : s + seqlen] for s in (rng.randint(0, len(ids) - seqlen - 1) for _ in range(n))]


def concat_sequences(
    items: Sequence[str], answers: Sequence[str], tokenizer, n: int, seqlen: int, seed: int, followers: int = 0
) -> list[list]:
    """Paper's task calibration. `answers[k]` is appended to item k (use "" for none)."""
    _check(n, seqlen)
    total = len(items)
    starts = pick(total, n, seed, "the calibration split")
    sep, j, out = prompts.CALIBRATION_SEPARATOR, n, []
    for i in starts:
        text, pending = items[i], answers[i]
        for _ in range(followers):
            text += pending + sep + items[j % total]
            pending, j = answers[j % total], j + 1
        ids, added = encode(tokenizer, text), 0
        while len(ids) < seqlen:
            if added > total:
                raise UserError(f"all {total} items together are shorter than seqlen={seqlen} tokens")
            text += pending + sep + items[j % total]
            pending, j, added = answers[j % total], j + 1, added + 1
            ids = encode(tokenizer, text)
        out.append(ids[:seqlen])
    return out


def corpus_windows(
    name: str,
    tokenizer,
    n: int,
    seqlen: int,
    seed: int,
    *,
    split: str | None = None,
    data_dir: str | Path | None = None,
    path: str | Path | None = None,
) -> tuple[list[list], dict]:
    """seqlen-token windows of a windowed corpus (registry.WINDOWED_CORPORA) with their source:
    of its documents (C4) or of the joined split (WikiText-2), as its spec's `windows` says."""
    if name not in WINDOWED_CORPORA:
        raise UserError(f"token windows are for {', '.join(WINDOWED_CORPORA)}, not {name!r}")
    spec = get_spec(name)
    data = load_split(name, spec.split(split, spec.calibration_split), data_dir=data_dir, path=path)
    texts = [r["text"] for r in data.rows]
    by_document = spec.windows == "documents"
    if by_document:
        windows = document_windows(texts, tokenizer, n, seqlen, seed)
    else:
        windows = stream_windows(" ".join(texts), tokenizer, n, seqlen, seed)
    method = {
        "method": "document windows" if by_document else "stream windows (rows joined with ' ')",
        "nsamples": n,
        "seqlen": seqlen,
        "seed": seed,
        "tokenizer": tokenizer_name(tokenizer),
    }
    return windows, {**data.source, "windows": method}


def calibration(
    name: str,
    tokenizer,
    nsamples: int = 128,
    seqlen: int = 2048,
    seed: int = 0,
    *,
    split: str | None = None,
    with_answers: bool | None = None,
    followers: int | None = None,
    data_dir: str | Path | None = None,
    path: str | Path | None = None,
    exclude: Sequence[int] = (),
) -> tuple[list[list], dict]:
    """`nsamples` token sequences of exactly `seqlen` tokens for pruning calibration, and their source.

    C4/WikiText-2 give windows; every other registered dataset gives concatenated items
    (defaults per dataset as in the paper: answers for MMLU/PIQA, 100 followers for SIQA/HellaSwag).
    `exclude`: rows of the split (file order) never used, e.g. the items an evaluation scores when
    calibration has to come from the evaluation's own split.
    """
    if name in WINDOWED_CORPORA:
        if exclude:
            raise UserError(f"{name}: excluding rows applies to item calibration, not to token windows")
        return corpus_windows(name, tokenizer, nsamples, seqlen, seed, split=split, data_dir=data_dir, path=path)
    spec = get_spec(name)
    data = load_split(name, spec.split(split, spec.calibration_split), data_dir=data_dir, path=path)
    skip = set(exclude)
    rows = [r for i, r in enumerate(data.rows) if i not in skip]
    if not rows:
        raise UserError(f"{name}: every row of the calibration split is excluded")
    answers_on = spec.calibration_answers if with_answers is None else with_answers
    follow = spec.calibration_followers if followers is None else followers
    items = [spec.render(r) for r in rows]
    answers = [prompts.answer(name, r) if answers_on else "" for r in rows]
    seqs = concat_sequences(items, answers, tokenizer, nsamples, seqlen, seed, follow)
    method = {
        "method": "concatenated items",
        "separator": prompts.CALIBRATION_SEPARATOR,
        "with_answers": answers_on,
        "followers": follow,
        "nsamples": nsamples,
        "seqlen": seqlen,
        "seed": seed,
        "tokenizer": tokenizer_name(tokenizer),
        "excluded_rows": len(skip & set(range(len(data.rows)))),
    }
    return seqs, {**data.source, "calibration": method}
