"""Texts -> right-padded token batches.

Right padding keeps every real token at its natural position, so a causal model sees
exactly what it would see unbatched; each sample's D is read at its own last real token.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .errors import UserError

log = logging.getLogger(__name__)


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T] long
    attention_mask: torch.Tensor  # [B, T] long, 1 = real token
    target_mask: torch.Tensor | None = None  # [B, T] bool: continuation tokens to score
    index: list[int] = field(default_factory=list)  # sample ids, in the caller's numbering

    @property
    def lengths(self) -> torch.Tensor:
        return self.attention_mask.sum(1)

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    def to(self, device: torch.device) -> Batch:
        tm = None if self.target_mask is None else self.target_mask.to(device)
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), tm, self.index)


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    n_prompt: int  # tokens before the continuation (== len(ids) when there is none)
    truncated: bool


def encode(
    tokenizer,
    text: str,
    continuation: str | None = None,
    max_length: int | None = None,
    prepend_bos: bool = False,
) -> Encoded:
    """Token ids of `text` (+ `continuation`), at most max_length. The tokenizer adds its special
    tokens; prepend_bos (Anatomy.prepend_bos) puts a BOS in front where it did not."""
    if not isinstance(text, str) or not text.strip():
        raise UserError("empty text: every sample needs at least one non-blank character")
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    bos = getattr(tokenizer, "bos_token_id", None)
    if prepend_bos and bos is not None and (not ids or ids[0] != bos):
        ids = [bos, *ids]
    cont: list[int] = []
    if continuation is not None:
        cont = list(tokenizer(continuation, add_special_tokens=False)["input_ids"])
        if not cont:
            raise UserError(f"empty continuation for text {text[:40]!r}")
    truncated = False
    if max_length is not None and len(ids) + len(cont) > max_length:
        truncated = True
        if cont:  # keep the whole continuation, cut the prompt from the left
            keep = max_length - len(cont)
            if keep < 1:
                raise UserError(f"continuation of {len(cont)} tokens does not fit max_length {max_length}")
            ids = ids[-keep:]
        else:
            ids = ids[:max_length]
    return Encoded(ids + cont, len(ids), truncated)


def collate(encoded: Sequence[Encoded], index: Sequence[int], pad_id: int = 0, with_target: bool = False) -> Batch:
    """Right-pad encoded samples into one batch."""
    T = max(len(e.ids) for e in encoded)
    B = len(encoded)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    tmask = torch.zeros((B, T), dtype=torch.bool) if with_target else None
    for b, e in enumerate(encoded):
        ids[b, : len(e.ids)] = torch.tensor(e.ids, dtype=torch.long)
        mask[b, : len(e.ids)] = 1
        if tmask is not None:
            tmask[b, e.n_prompt : len(e.ids)] = True
    return Batch(ids, mask, tmask, list(index))


def make_batches(
    tokenizer,
    texts: Sequence[str],
    batch_size: int,
    continuations: Sequence[str] | None = None,
    max_length: int | None = None,
    sort_by_length: bool = False,
    prepend_bos: bool = False,
) -> tuple[list[Batch], int]:
    """Encode and batch texts; returns (batches, number of truncated samples).

    Batches follow the texts' order, or, with sort_by_length, group texts of similar length
    (stable sort) so that little compute goes to padding; each batch carries its samples'
    original indices either way."""
    if batch_size < 1:
        raise UserError(f"batch size must be >= 1, got {batch_size}")
    if continuations is not None and len(continuations) != len(texts):
        raise UserError(f"{len(texts)} texts but {len(continuations)} continuations")
    enc = [
        encode(tokenizer, t, None if continuations is None else continuations[i], max_length, prepend_bos)
        for i, t in enumerate(texts)
    ]
    n_trunc = sum(e.truncated for e in enc)
    if n_trunc:
        log.warning("%d of %d samples were longer than %s tokens and were truncated", n_trunc, len(enc), max_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    order = sorted(range(len(enc)), key=lambda i: len(enc[i].ids)) if sort_by_length else list(range(len(enc)))
    batches = []
    for k in range(0, len(order), batch_size):
        idx = order[k : k + batch_size]
        batches.append(collate([enc[i] for i in idx], idx, pad, continuations is not None))
    return batches, n_trunc
