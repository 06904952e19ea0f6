"""The process's allocator: keep freed memory mapped between passes (glibc on Linux only).

An engine pass allocates and frees gigabytes per batch (activations saved for the backward,
per-sample gradients, a mean map's sums); by default glibc hands much of it back to the kernel and
takes it again on the next batch or call, one page fault per 4 KiB, which on a virtual machine costs
up to a third of a pass. The command line calls keep_freed_memory() at start; a Python user opts in
with one call (or with GLIBC_TUNABLES before Python starts). The setting is process-wide and cannot
be undone: the process keeps its peak footprint until it ends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

# glibc's mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's ceiling on 64-bit systems
_TRIM_THRESHOLD = -1  # mallopt takes an int; glibc reads it as size_t: never trim


def keep_freed_memory() -> bool:
    """Serve allocations up to 32 MiB from the heap and never trim it, so that memory a pass frees
    is reused by the next without page faults. Returns whether the setting was applied (False off
    Linux or off glibc, e.g. musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    log.debug("glibc allocator keeps freed memory: %s", ok)
    return ok
