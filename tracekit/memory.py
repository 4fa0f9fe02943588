"""Giving freed memory back to the system between the stages of one big analysis.

numpy's arrays come from glibc's malloc. After a big block is freed glibc raises its mmap
threshold, and from then on big temporaries (a thread's frames, the gap arrays) come from a heap
it shrinks only from the top: a stage that frees 150 MB of them (host attribution of a 1 GB
trace) leaves that much resident under whatever the next stage allocates. ``release()`` asks
glibc to return those free pages (``malloc_trim``; a few ms) and is a no-op elsewhere. Measured
(``benchmarks/bench_machinery.py``): without it ``explain --json``'s peak RSS is ~29% higher at
1 GB of JSON, ~14% at 300 MB.
"""

from __future__ import annotations

import functools
import sys


@functools.lru_cache(maxsize=1)
def _trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def release() -> None:
    """Return the memory freed so far to the system, where the C library can (glibc)."""
    trim = _trim()
    if trim is not None:
        trim(0)
