"""Perplexity, Wanda's protocol: one token stream, non-overlapping windows of an explicit seqlen.

The test text is joined into one string (WikiText-2 test rows with "\\n\\n", as Wanda/SparseGPT;
C4 held-out documents with " "; pydoc paragraphs with "\\n\\n"), tokenized once (BOS first if the
model expects it), cut into floor(tokens/seqlen) windows from the start, each window scored on its
seqlen−1 next-token predictions; ppl = exp(total NLL / predictions) — the same number as Wanda's
exp(mean of the per-window mean NLL). A model that expects a BOS in front of every input (Gemma)
gets windows of BOS + seqlen−1 stream tokens instead, so every window opens as in training, as its
calibration windows do, and every stream token is still predicted once. Its standard error treats
the windows as the sample:
nll_stderr = s.d. of the per-window mean NLL / sqrt(windows), ppl_stderr = ppl · nll_stderr.
`windows` caps how many windows are scored (None: all).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..batching import encode
from ..data import PERPLEXITY_CORPORA, get_spec, load_split
from ..errors import UserError
from .scoring import Request, target_logprobs


def protocol(seqlen: int, windows: int | None, bos: bool = False) -> str:
    return (
        f"ppl non-overlapping seqlen={seqlen} (Wanda)"
        + (", BOS opening every window" if bos else "")
        + (f", first {windows} windows" if windows else "")
    )


@dataclass(frozen=True)
class TokenStream:
    name: str
    ids: tuple[int, ...]
    source: dict


def _documents(name: str, data_dir=None, exclude: Sequence[str] = ()) -> tuple[list[str], dict]:
    """The documents of the corpus's held-out split (registry: DatasetSpec.perplexity) and their source."""
    if name not in PERPLEXITY_CORPORA:
        raise UserError(f"no perplexity corpus {name!r} (corpora: {', '.join(PERPLEXITY_CORPORA)})")
    held_out = get_spec(name).perplexity.split
    if name != "c4":
        data = load_split(name, held_out, data_dir=data_dir)
        return [r["text"] for r in data.rows], dict(data.source)
    try:
        data = load_split("c4", held_out, data_dir=data_dir)
        return [r["text"] for r in data.rows], {**data.source, "held_out": "C4 validation split"}
    except UserError:
        data = load_split("c4", "train", data_dir=data_dir)
    # no validation shard: the train documents from the end of the file order, minus any document
    # a calibration window came from (a snippet of every window is searched in each document)
    docs = [r["text"] for r in reversed(data.rows)]
    kept = [d for d in docs if not any(s in d for s in exclude)]
    note = (
        f"C4 validation split unavailable: train documents in reverse file order, {len(docs) - len(kept)} "
        f"documents holding a calibration window excluded ({len(exclude)} windows checked)"
    )
    return kept, {**data.source, "held_out": note}


def token_stream(
    name: str, tokenizer, tokens_needed: int | None = None, data_dir=None, exclude: Sequence[str] = ()
) -> TokenStream:
    """The corpus as one token stream; with tokens_needed, only a long enough prefix is tokenized."""
    docs, source = _documents(name, data_dir, exclude)
    join = get_spec(name).perplexity.join
    text = join.join(docs)
    if not text.strip():
        raise UserError(f"{name}: the evaluation text is empty")
    chars = len(text) if tokens_needed is None else min(len(text), 8 * tokens_needed + 1024)
    while True:
        ids = encode(tokenizer, text[:chars]).ids
        if tokens_needed is None or chars >= len(text) or len(ids) > tokens_needed + 8:
            break
        chars = min(len(text), chars * 2)
    if chars < len(text):
        ids = ids[:tokens_needed]  # the prefix's last tokens may differ from the full text's: drop them
    source.update(join=repr(join), tokens=len(ids), prefix_chars=chars)
    return TokenStream(name, tuple(int(i) for i in ids), source)


def cut_windows(ids: Sequence[int], seqlen: int, bos: int | None = None) -> list[tuple[int, ...]]:
    """The stream's non-overlapping windows of seqlen tokens; with bos, BOS + seqlen−1 stream tokens
    each (a BOS the tokenizer put at the stream's head is not repeated)."""
    if seqlen < 2:
        raise UserError(f"perplexity seqlen must be >= 2, got {seqlen}")
    if bos is None:
        return [tuple(ids[w * seqlen : (w + 1) * seqlen]) for w in range(len(ids) // seqlen)]
    body = ids[1:] if len(ids) and ids[0] == bos else ids
    step = seqlen - 1
    return [(bos, *body[w * step : (w + 1) * step]) for w in range(len(body) // step)]


def perplexity(
    model,
    ids: Sequence[int],
    seqlen: int,
    windows: int | None = None,
    batch_size: int = 4,
    progress=None,
    bos: int | None = None,
) -> dict:
    cut = cut_windows(ids, seqlen, bos)
    if windows is not None:
        cut = cut[:windows]
    if not cut:
        raise UserError(f"the text has {len(ids)} tokens, fewer than one window of seqlen={seqlen}")
    res = window_perplexity(model, cut, batch_size, progress)
    return {**res, "protocol": protocol(seqlen, windows, bos is not None)}


def window_perplexity(model, windows: Sequence[Sequence[int]], batch_size: int = 4, progress=None) -> dict:
    """Perplexity over given token windows, each scored on its len−1 next-token predictions."""
    if not windows or min(len(w) for w in windows) < 2:
        raise UserError("perplexity needs at least one window of two or more tokens")
    reqs = [Request(tuple(w), tuple((p, int(w[p + 1])) for p in range(len(w) - 1))) for w in windows]
    lps = target_logprobs(model, reqs, batch_size, progress=progress)
    n = len(lps)
    sums = [-float(lp.double().sum()) for lp in lps]  # per window, in float64 once
    per_window = [s / lp.numel() for s, lp in zip(sums, lps)]
    mean = sum(sums) / sum(lp.numel() for lp in lps)
    # the windows as the sample: the standard error of the mean NLL, and of ppl by the delta method
    se = math.sqrt(sum((w - mean) ** 2 for w in per_window) / (n - 1) / n) if n > 1 else math.nan
    return {
        "ppl": math.exp(mean),
        "ppl_stderr": math.exp(mean) * se,
        "nll": mean,
        "nll_stderr": se,
        "per_window_nll": per_window,  # for paired comparisons of two models on the same windows
        "windows": n,
        "seqlen": max(len(w) for w in windows),
        "tokens": sum(len(w) for w in windows),
    }
