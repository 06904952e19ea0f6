"""LLMDcos: the cosine of two non-negative activation vectors, per layer.

LLMDcos(i, j) = Σ|a_i||a_j| / (‖a_i‖ ‖a_j‖). From a Gram matrix of |A| vectors it is
G_ij / sqrt(G_ii G_jj); from normalized fingerprints it is their dot product (estimate).
"""

from __future__ import annotations

import torch


def llmdcos(a: torch.Tensor, b: torch.Tensor) -> float:
    """The direct formula on two activation vectors (any shape, signs ignored)."""
    a, b = a.flatten().double().abs(), b.flatten().double().abs()
    den = a.norm() * b.norm()
    return float((a * b).sum() / den) if den > 0 else 0.0


def llmdcos_from_gram(gram: torch.Tensor) -> torch.Tensor:
    """[..., B, B] Gram of |A| vectors -> [..., B, B] LLMDcos (0 where a norm is 0)."""
    d = torch.diagonal(gram, dim1=-2, dim2=-1).clamp(min=0).sqrt()
    return _cosine(gram, d[..., :, None] * d[..., None, :])


def _cosine(dot: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """dot / den, 0 where den (a product of norms) is 0."""
    return torch.where(den > 0, dot / den.clamp(min=torch.finfo(dot.dtype).tiny), torch.zeros_like(dot))


def llmdcos_from_partner(products: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """A pair pass's [N, L] products A_i·A_(i xor 1) and norms ‖A_i‖ -> [N / 2, L] LLMDcos of
    samples 2p and 2p+1 (0 where a norm is 0)."""
    return _cosine(products[0::2].double(), norms[0::2].double() * norms[1::2].double()).float()


def fingerprint_llmdcos(fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """Estimated LLMDcos from normalized fingerprints [..., L, m] -> [..., L]."""
    return (fa.double() * fb.double()).sum(-1).float()


def fingerprint_matrix(fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
    """All pairs: fa [N, L, m], fb [M, L, m] -> [L, N, M] estimated LLMDcos."""
    return torch.einsum("nlm,klm->lnk", fa.double(), fb.double()).float()
