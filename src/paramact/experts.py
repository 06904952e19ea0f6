"""Per-expert statistics of mixture-of-experts blocks.

Routing is input-dependent parameter activation: each token reaches only its top-k experts,
and an expert no token of a sample reached has A = 0 for that sample. This module counts,
per sample and MoE layer,

- the real (non-padding) tokens routed to each expert (``tokens``), and
- each expert's activation mass, Σ A over its matrices (``mass``),

and summarises them per dataset: token and mass shares per expert (the layer × expert
heatmaps), per-expert density from the mean map, and how far two datasets use the same
experts. Tables index MoE layers by their block index (0-based) and experts by their index
in the fused tensors.
"""

from __future__ import annotations

import torch

from .anatomy import Anatomy, Weight
from .batching import Batch
from .density import Histogram, check_gammas, gamma_key


class ExpertUsage:
    """A streaming reducer (engine Sink): tokens routed to, and activation mass of, every expert."""

    def __init__(self, anatomy: Anatomy):
        self.layers = anatomy.moe_layers  # block index of each MoE layer
        self._row = {layer: j for j, layer in enumerate(self.layers)}
        self.n_experts = max((anatomy.n_experts(i) for i in self.layers), default=0)
        self.index: list[int] = []
        self.token_parts: list[torch.Tensor] = []  # [B, Lm, E] long per batch
        self.mass_parts: list[torch.Tensor] = []  # [B, Lm, E] float64 per batch
        self._tok = self._mass = None

    def begin_batch(self, batch: Batch) -> None:
        shape = (batch.size, len(self.layers), self.n_experts)
        dev = batch.input_ids.device
        self._tok = torch.zeros(shape, dtype=torch.long, device=dev)
        self._mass = torch.zeros(shape, dtype=torch.float64, device=dev)

    def routed(self, layer: int, counts: torch.Tensor) -> None:
        self._tok[:, self._row[layer], : counts.shape[1]] += counts.to(self._tok.device)

    def update(self, w: Weight, rows: slice, A: torch.Tensor) -> None:
        if w.expert is not None:
            self._mass[:, self._row[w.layer], w.expert] += A.sum((1, 2)).to(self._mass.device)  # fp32 per block

    def end_batch(self, batch: Batch) -> None:
        self.index.extend(batch.index)
        self.token_parts.append(self._tok.cpu())
        self.mass_parts.append(self._mass.cpu())
        self._tok = self._mass = None

    def _ordered(self, parts: list[torch.Tensor]) -> torch.Tensor:
        order = torch.argsort(torch.tensor(self.index, dtype=torch.long))
        return torch.cat(parts)[order]

    def tokens(self) -> torch.Tensor:
        """[N, Lm, E] real tokens of each sample routed to each expert (rows in sample-id order)."""
        return self._ordered(self.token_parts)

    def mass(self) -> torch.Tensor:
        """[N, Lm, E] Σ A of each sample over each expert's matrices."""
        return self._ordered(self.mass_parts)

    # -- state: checkpoints and merging shards ----------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"index": torch.tensor(self.index, dtype=torch.long)}
        if self.index:
            state.update(tokens=torch.cat(self.token_parts), mass=torch.cat(self.mass_parts))
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.index = state["index"].tolist()
        self.token_parts = [state["tokens"]] if self.index else []
        self.mass_parts = [state["mass"]] if self.index else []

    def merge(self, other: ExpertUsage) -> None:
        self.index += other.index
        self.token_parts += other.token_parts
        self.mass_parts += other.mass_parts


def _shares(x: torch.Tensor) -> torch.Tensor:
    """Rows of x [Lm, E] divided by their sums (0 where a row sums to 0)."""
    s = x.sum(-1, keepdim=True)
    return torch.where(s > 0, x / s.clamp(min=torch.finfo(x.dtype).tiny), torch.zeros_like(x))


def expert_density(mean_map: dict[str, torch.Tensor], anatomy: Anatomy, gammas) -> list[dict]:
    """Per MoE layer: each expert's parameters, mass (Σ mean |A|), count above each γ and the share
    of its parameters that carries 50% of its mass."""
    gammas = check_gammas(gammas)
    rows = []
    for layer in anatomy.moe_layers:
        by_expert: dict[int, list[torch.Tensor]] = {}
        for w in anatomy.layers[layer]:
            if w.expert is not None:
                by_expert.setdefault(w.expert, []).append(w.select(mean_map[w.name]).flatten().float())
        experts = []
        for e in sorted(by_expert):
            h = Histogram(torch.cat(by_expert[e]))
            counts, (m50,) = h.summary(gammas, (0.5,))
            experts.append(
                {
                    "expert": e,
                    "params": h.v.numel(),
                    "mass": h.total,
                    "count_above": {gamma_key(g): c for g, c in zip(gammas, counts)},
                    "mass_share_50": m50,
                }
            )
        rows.append({"layer": layer, "experts": experts})
    return rows


def usage_summary(tokens: torch.Tensor, mass: torch.Tensor, layers: list[int]) -> dict:
    """One dataset's expert usage: per MoE layer, each expert's share of the routed tokens and of
    the activation mass (each row sums to 1), the tokens per expert, and the share of samples
    that sent at least one token to each expert."""
    tok = tokens.double().sum(0)  # [Lm, E]
    return {
        "layers": list(layers),
        "tokens": tokens.sum(0).tolist(),
        "token_share": _shares(tok).tolist(),
        "mass_share": _shares(mass.double().sum(0)).tolist(),
        "samples_reaching": (tokens > 0).double().mean(0).tolist() if tokens.shape[0] else [],
    }


def usage_similarity(a: dict, b: dict, top: int | None = None) -> dict:
    """How far two datasets use the same experts, per MoE layer: the cosine of their token-share
    vectors and of their mass-share vectors, and the overlap (Jaccard) of their `top` most used
    experts (default: a quarter of the experts, at least 1)."""
    ta, tb = torch.tensor(a["token_share"]), torch.tensor(b["token_share"])
    ma, mb = torch.tensor(a["mass_share"]), torch.tensor(b["mass_share"])
    k = top or max(1, ta.shape[-1] // 4)

    def cos(x, y):
        den = x.norm(dim=-1) * y.norm(dim=-1)
        return torch.where(den > 0, (x * y).sum(-1) / den.clamp(min=1e-300), torch.zeros_like(den)).tolist()

    jac = []
    for x, y in zip(ta, tb):
        sa, sb = set(torch.topk(x, k).indices.tolist()), set(torch.topk(y, k).indices.tolist())
        jac.append(len(sa & sb) / len(sa | sb))
    return {
        "layers": a["layers"],
        "token_cosine": cos(ta, tb),
        "mass_cosine": cos(ma, mb),
        "top": k,
        "top_overlap": jac,
    }
