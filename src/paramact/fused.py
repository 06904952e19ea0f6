"""One pass over a block of per-sample gradients on a CPU: Σ A, ‖A‖², the Gram and the count sketch.

Given |G| [B, n, C] (the per-sample |dD/dW| of `n` rows of one matrix) and |W| [n, C], the kernel
forms each a = |g|·|w| in registers and, in the same sweep, adds it to the sample's sum, its squared
norm, its count-sketch bucket and (with the Gram) its products with every sample's a of the same
row, read from the first-level cache, or (a pair pass) with its partner's only. The same statistics
through torch take one pass per statistic over memory (the product A, its sum, its squares, the
signed copy for the sketch, the scatter, the Gram's product); here A is never written. Sums, squares
and products accumulate in float32 over one row (≤ a few thousand terms) and then in float64, the
sketch in float32 as torch's index_add_ does.

Each sample is reduced by one thread, in a fixed order, so the numbers do not depend on the thread
count and a run repeats bit for bit; the Gram is exactly symmetric. The samples of a block are spread
over numba's OpenMP threads,
as many as torch uses (torch.get_num_threads()); a batch with fewer samples than threads leaves some
idle. (Python threads were tried first: torch's OpenMP workers, still spinning after each matrix
product, took their cores and halved the kernel's speed.) The kernel needs numba (a dependency of
paramact); without it, or with `ENABLED = False`, or on an accelerator, the reducers take their torch
path: the same numbers to float rounding.

`histogram` and `bin_entries` serve the density table the same way: a layer's histogram (mass and
count per bin) in one parallel pass, where torch's two bincounts each run on one thread, and the
entries of the few bins that a threshold or a mass share falls in, in a second.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch

log = logging.getLogger(__name__)

# False: every statistic through torch, as on an accelerator (the tests compare the two paths)
ENABLED = True

try:  # numba is a dependency; a broken or missing install falls back to torch, logged once
    import numba

    # OpenMP first, as torch, unless the user chose a layer; tbb and numba's own pool stay fallbacks
    if numba.config.THREADING_LAYER == "default":
        order = numba.config.THREADING_LAYER_PRIORITY
        numba.config.THREADING_LAYER_PRIORITY = ["omp", *(x for x in order if x != "omp")]
except Exception as e:  # pragma: no cover - exercised only without numba
    numba = None
    log.warning("numba unavailable (%s): per-sample statistics through torch (slower on a CPU)", e)

# A value's bin in the density table: its float32 pattern >> BIN_SHIFT (2^-10 relative bins), which
# orders non-negative floats like their values; negatives go to bin 0. The one definition, also
# used by density.py's torch path.
BIN_SHIFT = 13

_checked: bool | None = None  # whether the kernel compiled and ran once (None: not tried yet)


@contextlib.contextmanager
def _torch_threads():
    """numba's threads as many as torch uses (within numba's own limit), and torch's own count kept.
    numba's OpenMP pool, started by the first launch in a process, resets the OpenMP thread count
    that torch shares (from 1 to every core with numba 0.68 and torch 2.13): `--threads 1` was
    silently undone for the rest of the run."""
    n = torch.get_num_threads()
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def _sweep(G, W, tot, sq, gram, pd, sk, hr, hc, sr, sc, mask, do_gram, do_pair, do_sk):  # pragma: no cover
    """Every sample b of G [B, n, C] scaled by W [n, C]: tot[b] += Σ a, sq[b] += Σ a²,
    gram[b, b'] = gram[b', b] += a_b·a_b' for b' >= b (do_gram), pd[b] += a_b·a_(b xor 1) (do_pair:
    the partner of a pair pass), sk[b, (hr[r] + hc[c]) & mask] += sr[r]·sc[c]·a (do_sk).

    A thread takes samples u and B-1-u together: the Gram's upper triangle gives them B + 1 products
    per row in all, the same for every u."""
    B = G.shape[0]
    n = G.shape[1]
    C = G.shape[2]
    for u in numba.prange((B + 1) // 2):
        for h in range(1 if 2 * u == B - 1 else 2):
            b = u + h * (B - 1 - 2 * u)  # u, then B-1-u
            s_b = 0.0
            q_b = 0.0
            for r in range(n):
                s = np.float32(0.0)
                q = np.float32(0.0)
                for c in range(C):
                    a = G[b, r, c] * W[r, c]
                    s += a
                    q += a * a
                s_b += s
                q_b += q
                if do_gram:
                    for b2 in range(b, B):
                        d = np.float32(0.0)
                        for c in range(C):
                            d += (G[b, r, c] * W[r, c]) * (G[b2, r, c] * W[r, c])
                        gram[b, b2] += d
                        if b2 != b:
                            gram[b2, b] += d
                if do_pair and (b ^ 1) < B:
                    b2 = b ^ 1
                    d = np.float32(0.0)
                    for c in range(C):
                        d += (G[b, r, c] * W[r, c]) * (G[b2, r, c] * W[r, c])
                    pd[b] += d
                if do_sk:
                    base = hr[r]
                    sign = sr[r]
                    for c in range(C):
                        sk[b, (base + hc[c]) & mask] += sign * sc[c] * (G[b, r, c] * W[r, c])
            tot[b] += s_b
            sq[b] += q_b


_kernel = (
    numba.njit(parallel=True, nogil=True, cache=True, fastmath=True, boundscheck=False, error_model="numpy")(_sweep)
    if numba is not None
    else None
)


def usable(device: torch.device | str) -> bool:
    """Whether statistics of tensors on `device` go through the kernel: on a CPU, once the kernel has
    compiled and run on a tiny block (a failure, e.g. no threading layer, is logged once and the
    torch path serves from then on)."""
    global _checked
    if not (ENABLED and _kernel is not None and torch.device(device).type == "cpu"):
        return False
    if _checked is None:
        try:
            out = torch.zeros(2, dtype=torch.float64)
            sample_stats(torch.ones(2, 1, 3), torch.ones(1, 3), out, torch.zeros(2, dtype=torch.float64))
            _checked = bool(torch.equal(out, torch.full((2,), 3.0, dtype=torch.float64)))
            if not _checked:
                log.warning("the fused kernel gave wrong sums on a check block: per-sample statistics through torch")
        except Exception as e:  # pragma: no cover - depends on the machine's numba install
            _checked = False
            log.warning("the fused kernel failed (%s): per-sample statistics through torch (slower)", e)
    return _checked


_NO_GRAM = np.zeros((1, 1), dtype=np.float64)
_NO_PAIRS = np.zeros(1, dtype=np.float64)
_NO_SKETCH = (
    np.zeros((1, 1), np.float32),
    np.zeros(1, np.int64),
    np.zeros(1, np.int64),
    np.zeros(1, np.float32),
    np.zeros(1, np.float32),
)


def sample_stats(
    G: torch.Tensor,
    absW: torch.Tensor,
    tot: torch.Tensor,
    sq: torch.Tensor,
    gram: torch.Tensor | None = None,
    sketch: tuple[torch.Tensor, ...] | None = None,
    partner: torch.Tensor | None = None,
) -> None:
    """Accumulate the statistics of A = |G|·|W| (G [B, n, C] float32 ≥ 0, absW [n, C] float32, on
    the CPU) into tot [B] and sq [B] (float64: Σ A and ‖A‖² per sample) and, when given, the
    in-batch Gram gram [B, B] float64, a count sketch (out [B, m] float32, hr [n], hc [C] int64
    bucket offsets, sr [n], sc [C] float32 signs) and partner [B] float64, each sample's product
    with sample b xor 1 (its pair's other text)."""
    g = G.contiguous().numpy()
    w = absW.contiguous().numpy()
    gr = gram.numpy() if gram is not None else _NO_GRAM
    out, hr, hc, sr, sc = (x.numpy() for x in sketch) if sketch is not None else _NO_SKETCH
    pd = partner.numpy() if partner is not None else _NO_PAIRS
    flags = (gram is not None, partner is not None, sketch is not None)
    with _torch_threads():
        _kernel(g, w, tot.numpy(), sq.numpy(), gr, pd, out, hr, hc, sr, sc, out.shape[1] - 1, *flags)


def _histogram(v, bits, nb):  # pragma: no cover - compiled
    """Per half p of v (two fixed halves, whatever the thread count, so the sums repeat bit for bit)
    and bin k < nb (k = the entry's float32 pattern >> BIN_SHIFT, negatives in bin 0): the float64 sum and
    the count of the entries in the bin."""
    mass = np.zeros((2, nb))
    count = np.zeros((2, nb), np.int64)
    n = v.shape[0]
    for p in numba.prange(2):
        m = mass[p]
        c = count[p]
        for i in range(n * p // 2, n * (p + 1) // 2):
            k = max(bits[i] >> BIN_SHIFT, 0)
            m[k] += v[i]
            c[k] += 1
    return mass, count


def _entries(v, bits, slot, start, out):  # pragma: no cover - compiled
    """The entries of v whose bin k has slot[k] = j >= 0, half p's written from out[start[p, j]] on."""
    n = v.shape[0]
    for p in numba.prange(2):
        pos = start[p].copy()
        for i in range(n * p // 2, n * (p + 1) // 2):
            j = slot[max(bits[i] >> BIN_SHIFT, 0)]
            if j >= 0:
                out[pos[j]] = v[i]
                pos[j] += 1


def _compile(f):
    return numba.njit(parallel=True, nogil=True, cache=True, boundscheck=False)(f)


_histogram_kernel = _compile(_histogram) if numba is not None else None
_entries_kernel = _compile(_entries) if numba is not None else None


def histogram(v: torch.Tensor, nb: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per half of v and bin k < nb, where k is an entry's float32 pattern >> BIN_SHIFT (negatives in bin 0):
    the float64 mass [2, nb] and the count [2, nb] (int64). One parallel pass over v (float32 [n] on
    the CPU, every key < nb); torch's bincount runs on one thread and needs one pass per statistic."""
    v = v.contiguous()
    with _torch_threads():
        mass, count = _histogram_kernel(v.numpy(), v.view(torch.int32).numpy(), nb)
    return torch.from_numpy(mass), torch.from_numpy(count)


def bin_entries(v: torch.Tensor, keys: list[int], count: torch.Tensor) -> list[torch.Tensor]:
    """The entries of v in each bin of `keys` (distinct, fewer than 2^15), in one parallel pass; count
    [2, nb] is `histogram`'s (it places each half's entries)."""
    if len(keys) >= 1 << 15:
        raise ValueError("bin_entries takes fewer than 2^15 bins at once")
    v = v.contiguous()
    sizes = count[:, keys]  # [2, len(keys)]
    ends = torch.cumsum(sizes.T.flatten(), 0).view(len(keys), 2).T  # bin j: half 0's, then half 1's
    start = (ends - sizes).contiguous()
    out = np.empty(int(ends[-1, -1]) if keys else 0, np.float32)
    slot = np.full(count.shape[1], -1, np.int16)  # bin -> its place in keys (a table read per entry)
    slot[keys] = np.arange(len(keys))
    with _torch_threads():
        _entries_kernel(v.numpy(), v.view(torch.int32).numpy(), slot, start.numpy(), out)
    out = torch.from_numpy(out)
    return [out[int(start[0, j]) : int(ends[1, j])] for j in range(len(keys))]
