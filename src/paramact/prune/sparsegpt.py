"""SparseGPT (Frantar & Alistarh 2023): prune with the optimal-brain-surgeon weight update.

Minimise ‖XWᵀ − XŴᵀ‖² row by row with H = 2XᵀX/n. Columns are processed left to right; when
column j is pruned (or kept), the error of every row is spread over the columns to its right with
the inverse Hessian of the columns still free, H_F⁻¹ = inverse of H restricted to columns ≥ j.
All those inverses come from one upper Cholesky factor U of H⁻¹ (row j of U, divided by U_jj,
is row j of H_F⁻¹ restricted to F), so the whole matrix costs one Cholesky inverse. Columns go in
blocks of `blocksize`: inside a block the update is applied column by column, to the right of
the block once per block (lazy batch update).

The mask is chosen block by block from the OBS saliency w²/[U_jj]² of the already-updated weights:
- matrix: over the whole [rows, block] (SparseGPT's own unstructured choice); per-block counts are
          the differences of floor(k·end/cols), so the matrix prunes exactly floor(numel·s);
- row:    the same per row, so every row prunes exactly floor(cols·s) (Wanda's granularity; the
          per-block quota per row is a stronger constraint than SparseGPT's own);
- N:M:    the N lowest of every group of M columns, chosen when the group starts.
Computed in float64.
"""

from __future__ import annotations

import torch

from ..errors import UserError
from .masks import Pattern, count_pruned, lowest_keep


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
        raise UserError(
            f"the calibration Hessian is not positive definite even with damping {damp}; "
            "use more calibration samples or a larger damping"
        ) from e
    return U, dead


def _block_counts(total: int, cols: int, start: int, end: int) -> int:
    return int(total * end // cols) - int(total * start // cols)


def sparsegpt_prune(
    W: torch.Tensor,
    H: torch.Tensor | None,
    sparsity: float,
    pattern: Pattern,
    blocksize: int = 128,
    damp: float = 0.01,
    factor: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(new W, keep mask) for a [out, in] weight and its [in, in] Hessian. W is not modified.

    factor: U from inverse_hessian_factor(H, damp), when the caller already has it (matrices that
    read the same input share H); H is then not needed.
    """
    rows, cols = W.shape
    if pattern.kind == "nm":
        if cols % pattern.m:
            raise UserError(f"{pattern} pattern needs the input width ({cols}) to be a multiple of {pattern.m}")
        blocksize = max(pattern.m, blocksize - blocksize % pattern.m)
    W = W.to(torch.float64).clone()
    U = inverse_hessian_factor(H, damp)[0] if factor is None else factor
    keep = torch.ones(rows, cols, dtype=torch.bool, device=W.device)
    k_row = count_pruned(cols, sparsity)
    k_all = count_pruned(rows * cols, sparsity)
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()
        U1 = U[i1:i2, i1:i2]
        d = torch.diag(U1)
        saliency = W1**2 / d**2  # OBS: w² / [H_F⁻¹]_jj
        if pattern.kind == "row":
            keep[:, i1:i2] = lowest_keep(saliency, _block_counts(k_row, cols, i1, i2))
        elif pattern.kind == "matrix":
            n = _block_counts(k_all, cols, i1, i2)
            keep[:, i1:i2] = lowest_keep(saliency.reshape(1, -1), n).reshape(rows, i2 - i1)
        drop = (~keep[:, i1:i2]).to(W.dtype)
        Err1 = torch.empty_like(W1)
        for j in range(i2 - i1):
            if pattern.kind == "nm" and j % pattern.m == 0:
                g = slice(j, j + pattern.m)
                sub = lowest_keep(W1[:, g] ** 2 / d[g] ** 2, pattern.n)
                keep[:, i1 + j : i1 + j + pattern.m] = sub
                drop[:, g] = (~sub).to(W.dtype)
            err = W1[:, j] * drop[:, j] / d[j]  # [rows]; 0 where the weight is kept
            W1[:, j:].addr_(err, U1[j, j:], alpha=-1.0)  # spread the error over the columns still free
            Err1[:, j] = err
        W[:, i1:i2] = W1.masked_fill_(~keep[:, i1:i2], 0.0)  # pruned: exactly zero
        W[:, i2:] -= Err1 @ U[i1:i2, i2:]
    return W, keep
