"""Forward passes that read log-probabilities only where they are needed.

Sequences are right-padded (every real token keeps its position) and sorted by length; the model
returns logits only at the requested positions (`logits_to_keep` with an index tensor), so a batch
never materialises [B, T, vocab] unless the model lacks that argument. Log-softmax in float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..anatomy import input_embeddings, vocab_size
from ..batching import Encoded, collate

LOGIT_BUDGET = 1 << 26  # floats of [B, positions, vocab] per forward (256 MiB in float32)
TOKEN_BUDGET = 8192  # B × longest sequence per forward: bounds the attention and activation memory


@dataclass(frozen=True)
class Request:
    """One sequence and the (position, token) pairs whose log-probabilities are wanted.

    targets[k] = (p, t): log P(token t | ids[:p+1]), i.e. read at position p.
    """

    ids: tuple[int, ...]
    targets: tuple[tuple[int, int], ...]


def _plan(requests: Sequence[Request], batch_size: int, vocab: int) -> list[list[int]]:
    """Batches of request indices, by length, within batch_size and the logit and token budgets."""
    order = sorted(range(len(requests)), key=lambda i: len(requests[i].ids))
    out, cur, cur_pos = [], [], set()
    for i in order:
        pos = cur_pos | {p for p, _ in requests[i].targets}
        n = len(cur) + 1
        if cur and (
            len(cur) >= batch_size or n * len(pos) * vocab > LOGIT_BUDGET or n * len(requests[i].ids) > TOKEN_BUDGET
        ):
            out.append(cur)
            cur, pos = [], {p for p, _ in requests[i].targets}
        cur.append(i)
        cur_pos = pos
    if cur:
        out.append(cur)
    return out


def _forward_at(model, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Logits [B, P, V] at the given sequence positions."""
    try:
        return model(input_ids=ids, attention_mask=mask, logits_to_keep=positions, use_cache=False).logits
    except TypeError:  # a model without logits_to_keep: full logits, then select
        return model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, positions]


def target_logprobs(
    model, requests: Sequence[Request], batch_size: int = 8, pad_id: int = 0, progress=None
) -> list[torch.Tensor]:
    """For each request, the float32 log-probabilities of its targets, in order."""
    device = input_embeddings(model).weight.device
    result: list[torch.Tensor | None] = [None] * len(requests)
    with torch.no_grad():
        for batch in _plan(requests, batch_size, vocab_size(model) or 50000):
            padded = collate(
                [Encoded(list(requests[i].ids), len(requests[i].ids), False) for i in batch], batch, pad_id
            )
            ids, mask = padded.input_ids, padded.attention_mask
            positions = sorted({p for i in batch for p, _ in requests[i].targets})
            where = {p: k for k, p in enumerate(positions)}
            logits = _forward_at(model, ids.to(device), mask.to(device), torch.tensor(positions, device=device))
            logp = torch.log_softmax(logits.float(), dim=-1)
            for b, i in enumerate(batch):
                tg = requests[i].targets
                ps = torch.tensor([where[p] for p, _ in tg], device=logp.device)
                ts = torch.tensor([t for _, t in tg], device=logp.device)
                result[i] = logp[b, ps, ts].cpu()
            if progress is not None:
                progress.update(len(batch))
    return result  # type: ignore[return-value]
