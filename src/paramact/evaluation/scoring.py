"""Forward passes that read log-probabilities only where they are needed.

Sequences are right-padded (every real token keeps its position) and sorted by length; the model
returns logits only at the requested positions (`logits_to_keep` with an index tensor), so a batch
never materialises [B, T, vocab] unless the model lacks that argument. Log-softmax in float32.

Shared prefixes are computed once. Identical sequences (the choices of an item whose continuations
are one token each) are one forward. Sequences that share a long prefix before their first read
position (MMLU's five demonstrations within a subject; an item's context before each choice) form a
group: one pass over the prefix fills a key/value cache, and the members' suffixes run as a batch on
a copy of it. The log-probabilities are those of the full forward up to float rounding (the matmul
shapes differ); `share_prefixes=False` runs every sequence whole.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..anatomy import input_embeddings, vocab_size
from ..batching import Encoded, collate

LOGIT_BUDGET = 1 << 26  # floats of [B, positions, vocab] per forward (256 MiB in float32)
TOKEN_BUDGET = 8192  # B × longest sequence (cached prefix included) per forward: attention and activation memory
SHARED_MIN = 16  # tokens: a shorter common prefix is recomputed in every sequence
# tokens a shared prefix must save ((members − 1) × its length) to pay for its extra forward calls (a
# batch-1 prefix pass, the members' own suffix batches): measured on SmolLM2 on 2 CPU cores
SHARED_SAVED = 128


@dataclass(frozen=True)
class Request:
    """One sequence and the (position, token) pairs whose log-probabilities are wanted.

    targets[k] = (p, t): log P(token t | ids[:p+1]), i.e. read at position p.
    """

    ids: tuple[int, ...]
    targets: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Scores:
    """The float32 log-probabilities of a request's targets, and whether each target is the argmax."""

    logprobs: torch.Tensor
    greedy: torch.Tensor


def _plan(requests: Sequence[Request], batch_size: int, vocab: int, past: int = 0) -> list[list[int]]:
    """Batches of request indices, by length, within batch_size and the logit and token budgets
    (`past`: cached tokens every sequence attends to)."""
    order = sorted(range(len(requests)), key=lambda i: len(requests[i].ids))
    out, cur, cur_pos = [], [], set()
    for i in order:
        pos = cur_pos | {p for p, _ in requests[i].targets}
        n = len(cur) + 1
        if cur and (
            len(cur) >= batch_size
            or n * len(pos) * vocab > LOGIT_BUDGET
            or n * (past + len(requests[i].ids)) > TOKEN_BUDGET
        ):
            out.append(cur)
            cur, pos = [], {p for p, _ in requests[i].targets}
        cur.append(i)
        cur_pos = pos
    if cur:
        out.append(cur)
    return out


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for k in range(n):
        if a[k] != b[k]:
            return k
    return n


def prefix_groups(requests: Sequence[Request]) -> list[tuple[int, list[int]]]:
    """(shared prefix length, request indices): runs of the lexicographically sorted sequences.

    A prefix ends at or before every member's first read position (its logits come from the
    suffix pass). A sequence joins the run while the common prefix stays >= SHARED_MIN tokens and
    the tokens the run saves do not shrink (n·q >= (n-1)·P); otherwise it starts a run. A run that
    saves fewer than SHARED_SAVED tokens ((n-1)·P), a run of one among them, is plain sequences
    (prefix length 0)."""
    order = sorted(range(len(requests)), key=lambda i: requests[i].ids)
    runs: list[tuple[int, list[int]]] = []
    for i in order:
        r = requests[i]
        lim = min((p for p, _ in r.targets), default=len(r.ids) - 1)
        if runs:
            shared, cur = runs[-1]
            q = min(shared, lim, _lcp(requests[cur[0]].ids, r.ids))
            if q >= SHARED_MIN and len(cur) * q >= (len(cur) - 1) * shared:
                runs[-1] = (q, [*cur, i])
                continue
        runs.append((lim, [i]))
    return [(p if len(m) > 1 and p >= SHARED_MIN and (len(m) - 1) * p >= SHARED_SAVED else 0, m) for p, m in runs]


def _cache_argument(model) -> str | None:
    """The forward's key/value-cache argument: `cache` (transformers 5), `past_key_values` (older or
    remote code), or None (no cache: shared prefixes are recomputed)."""
    params = inspect.signature(model.forward).parameters
    return next((k for k in ("cache", "past_key_values") if k in params), None)


def _forward_at(model, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache=None) -> torch.Tensor:
    """Logits [B, P, V] at the given positions of `ids` (after the cached tokens, if any)."""
    kw = {"use_cache": False} if cache is None else {"use_cache": True, _cache_argument(model): cache}
    try:
        return model(input_ids=ids, attention_mask=mask, logits_to_keep=positions, **kw).logits
    except TypeError:  # a model without logits_to_keep: full logits, then select
        return model(input_ids=ids, attention_mask=mask, **kw).logits[:, positions]


def _prefix_cache(model, ids: Sequence[int], device):
    """The key/value cache after `ids` (batch 1), or None where the model keeps none."""
    name = _cache_argument(model)
    if name is None:
        return None
    x = torch.tensor([list(ids)], device=device)
    try:
        out = model(input_ids=x, use_cache=True, logits_to_keep=1)
    except TypeError:
        out = model(input_ids=x, use_cache=True)
    cache = getattr(out, name, None)
    return cache if hasattr(cache, "batch_repeat_interleave") else None


def _score_batches(model, requests, batches, pad_id, device, put, cache=None, past: int = 0) -> None:
    for batch in batches:
        padded = collate([Encoded(list(requests[i].ids), len(requests[i].ids), False) for i in batch], batch, pad_id)
        ids, mask = padded.input_ids.to(device), padded.attention_mask.to(device)
        positions = sorted({p for i in batch for p, _ in requests[i].targets})
        where = {p: k for k, p in enumerate(positions)}
        cached = None
        if cache is not None:
            cached = copy.deepcopy(cache)
            cached.batch_repeat_interleave(len(batch))
            mask = torch.cat([torch.ones(len(batch), past, dtype=mask.dtype, device=device), mask], 1)
        logits = _forward_at(model, ids, mask, torch.tensor(positions, device=device), cached)
        logp = torch.log_softmax(logits.float(), dim=-1)
        best = logp.argmax(-1)
        for b, i in enumerate(batch):
            tg = requests[i].targets
            ps = torch.tensor([where[p] for p, _ in tg], device=logp.device)
            ts = torch.tensor([t for _, t in tg], device=logp.device)
            put(i, Scores(logp[b, ps, ts].cpu(), (best[b, ps] == ts).cpu()))


def _merge(requests: Sequence[Request]) -> tuple[list[Request], list[int]]:
    """Identical sequences as one request with the union of their targets; each request's index there."""
    where: dict[tuple[int, ...], int] = {}
    targets: list[set] = []
    for r in requests:
        if r.ids not in where:
            where[r.ids] = len(targets)
            targets.append(set())
        targets[where[r.ids]].update(r.targets)
    return [Request(ids, tuple(sorted(targets[k]))) for ids, k in where.items()], [where[r.ids] for r in requests]


def target_scores(
    model, requests: Sequence[Request], batch_size: int = 8, pad_id: int = 0, progress=None, share_prefixes: bool = True
) -> list[Scores]:
    """For each request, its targets' float32 log-probabilities and argmax flags, in order."""
    device = input_embeddings(model).weight.device
    vocab = vocab_size(model) or 50000
    merged, of = _merge(requests)
    users = [0] * len(merged)
    for k in of:
        users[k] += 1
    got: list[Scores | None] = [None] * len(merged)

    def put(k: int, s: Scores) -> None:
        got[k] = s
        if progress is not None:
            progress.update(users[k])

    groups = prefix_groups(merged) if share_prefixes else [(0, list(range(len(merged))))]
    plain = [i for p, m in groups if not p for i in m]
    with torch.no_grad():
        for shared, members in (g for g in groups if g[0]):
            cache = _prefix_cache(model, merged[members[0]].ids[:shared], device)
            if cache is None:  # a model that keeps no cache: its members run whole
                plain += members
                continue
            part = [
                Request(merged[i].ids[shared:], tuple((p - shared, t) for p, t in merged[i].targets)) for i in members
            ]
            batches = _plan(part, batch_size, vocab, shared)
            _score_batches(model, part, batches, pad_id, device, lambda j, s, m=members: put(m[j], s), cache, shared)
        part = [merged[i] for i in plain]
        _score_batches(model, part, _plan(part, batch_size, vocab), pad_id, device, lambda j, s: put(plain[j], s))
    out = []
    for r, k in zip(requests, of):
        pos = {t: n for n, t in enumerate(merged[k].targets)}
        idx = [pos[t] for t in r.targets]
        out.append(Scores(got[k].logprobs[idx], got[k].greedy[idx]))  # type: ignore[union-attr]
    return out


def target_logprobs(
    model, requests: Sequence[Request], batch_size: int = 8, pad_id: int = 0, progress=None, share_prefixes: bool = True
) -> list[torch.Tensor]:
    """For each request, the float32 log-probabilities of its targets, in order."""
    return [s.logprobs for s in target_scores(model, requests, batch_size, pad_id, progress, share_prefixes)]
