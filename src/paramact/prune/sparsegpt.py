"""SparseGPT (Frantar & Alistarh 2023): prune with the optimal-brain-surgeon weight update.

Minimise ‖XWᵀ − XŴᵀ‖² row by row with H = 2XᵀX/n. Columns are processed left to right; when
column j is pruned (or kept), the error of every row is spread over the columns to its right with
the inverse Hessian of the columns still free, H_F⁻¹ = inverse of H restricted to columns ≥ j.
All those inverses come from one upper Cholesky factor U of H⁻¹ (row j of U, divided by U_jj,
is row j of H_F⁻¹ restricted to F), so the whole matrix costs one Cholesky inverse. Columns go in
blocks of `blocksize`: inside a block the update is applied column by column, to the right of
the block once per block (lazy batch update).

The mask is chosen block by block from w²/[U_jj]² of the already-updated weights:
- row:    each row prunes its share of the block; per-block counts are the differences of
          floor(k·end/cols), so every row prunes exactly floor(cols·s) in total;
- matrix: the same over the whole block (floor(numel·s) in total);
- N:M:    the N lowest of every group of M columns, chosen when the group starts.
Computed in float64.
"""

from __future__ import annotations

import torch

from ..errors import UserError
from .masks import Pattern, count_pruned


def inverse_hessian_factor(H: torch.Tensor, damp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, dead): the upper Cholesky factor of (H + λI)⁻¹ with λ = damp·mean(diag H), in float64,
    and the mask of dead input columns (never active; their H row is replaced by the identity)."""
    H = H.to(torch.float64).clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    lam = damp * torch.mean(torch.diag(H))
    H.diagonal().add_(lam)
    try:
        L = torch.linalg.cholesky(H)
        Hinv = torch.cholesky_inverse(L)
        U = torch.linalg.cholesky(Hinv, upper=True)
    except torch.linalg.LinAlgError as e:
        raise UserError(f"the calibration Hessian is not positive definite even with damping {damp}; "
                        "use more calibration samples or a larger damping") from e
    return U, dead


def _block_counts(total: int, cols: int, start: int, end: int) -> int:
    return int(total * end // cols) - int(total * start // cols)


def _select(scores: torch.Tensor, k_per_row: int | None, k_total: int | None) -> torch.Tensor:
    """Keep mask of a [rows, b] block: the k lowest per row, or the k lowest of the block."""
    keep = torch.ones_like(scores, dtype=torch.bool)
    if k_per_row:
        keep.scatter_(1, torch.sort(scores, dim=1, stable=True).indices[:, :k_per_row], False)
    elif k_total:
        flat = keep.view(-1)
        flat[torch.sort(scores.reshape(-1), stable=True).indices[:k_total]] = False
    return keep


def sparsegpt_prune(W: torch.Tensor, H: torch.Tensor, sparsity: float, pattern: Pattern,
                    blocksize: int = 128, damp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """(new W, keep mask) for a [out, in] weight and its [in, in] Hessian. W is not modified."""
    rows, cols = W.shape
    if pattern.kind == "nm":
        if cols % pattern.m:
            raise UserError(f"{pattern} pattern needs the input width ({cols}) to be a multiple of {pattern.m}")
        blocksize = max(pattern.m, blocksize - blocksize % pattern.m)
    W = W.to(torch.float64).clone()
    U, _ = inverse_hessian_factor(H, damp)
    keep = torch.ones(rows, cols, dtype=torch.bool, device=W.device)
    k_row = count_pruned(cols, sparsity)
    k_all = count_pruned(rows * cols, sparsity)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        U1 = U[i1:i2, i1:i2]
        d = torch.diag(U1)
        Err1 = torch.zeros_like(W1)
        if pattern.kind == "row":
            keep[:, i1:i2] = _select(W1**2 / d**2, _block_counts(k_row, cols, i1, i2), None)
        elif pattern.kind == "matrix":
            keep[:, i1:i2] = _select(W1**2 / d**2, None, _block_counts(k_all, cols, i1, i2))
        for j in range(i2 - i1):
            if pattern.kind == "nm" and j % pattern.m == 0:
                g = slice(j, j + pattern.m)
                keep[:, i1 + j:i1 + j + pattern.m] = _select(W1[:, g] ** 2 / d[g] ** 2, pattern.n, None)
            w = W1[:, j]
            q = torch.where(keep[:, i1 + j], w, torch.zeros_like(w))
            err = (w - q) / d[j]  # [rows]
            W1[:, j:] -= err.unsqueeze(1) * U1[j, j:].unsqueeze(0)
            W1[:, j] = q
            Err1[:, j] = err
        W[:, i1:i2] = W1
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]
    return W, keep
