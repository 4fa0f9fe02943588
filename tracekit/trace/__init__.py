"""Trace readers. :func:`load` picks the reader from the file's first bytes, not its name.

    >>> from tracekit.trace import load
    >>> trace = load("trace.json.gz")   # doctest: +SKIP
    >>> trace.gpu_ops.height            # doctest: +SKIP

Inputs are opened by :mod:`tracekit.trace.source` (regular files, pipes, ``-`` for standard input;
gzip or not; inflated as a bounded stream). A torch.profiler JSON trace is then read as a stream
of slices (:func:`tracekit.trace.kineto.read_kineto`); an Nsight Systems SQLite export is opened
read-only (:mod:`tracekit.trace.nsys`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tracekit.trace.model import Trace, busiest_gpu_name

__all__ = ["Trace", "load", "read_bytes", "MAX_UNCOMPRESSED_BYTES"]

#: a JSON trace is never inflated past this (a gzip bomb stops here); memory does not grow with it
MAX_UNCOMPRESSED_BYTES = 16 << 30

_SQLITE_MAGIC = b"SQLite format 3\x00"


def read_bytes(path: str | Path, *, limit: int = 512 << 20) -> bytes:
    """The file's bytes, gunzipped if it is gzip, never more than ``limit`` bytes."""
    from tracekit.trace.source import open_source

    with open_source(path) as src:
        return src.read_all(limit=limit)


def load(path: str | Path, *, slice_bytes: int | None = None,
         progress: Callable[[int, int | None], None] | None = None) -> Trace:
    """Read a torch.profiler JSON (``.json``/``.json.gz``) or Nsight Systems SQLite export.

    ``path`` may be ``-`` (standard input) or a pipe. ``slice_bytes`` sets the streaming slice
    size (tests use small ones). ``progress(bytes_read, total_or_None)`` is called as the input is
    read. What the reader did (streamed, decoded whole and why) is in ``trace.notes``."""
    from tracekit.trace.source import open_source

    with open_source(path) as src:
        if src.peek(16) == _SQLITE_MAGIC:
            from tracekit.trace.nsys import load_nsys

            return load_nsys(src)
        from tracekit.trace.kineto import SLICE_BYTES, read_kineto

        notes: list[str] = []
        report = None
        if progress is not None:
            def report(n: int) -> None:
                progress(n, src.size)
        trace = read_kineto(src, slice_bytes=slice_bytes or SLICE_BYTES, notes=notes,
                            progress=report)
    trace.notes.extend(notes)
    _name_gpu(trace)
    return trace


def _name_gpu(trace: Trace) -> None:
    """meta['gpu_name']: the device that ran most GPU ops (see busiest_gpu_name)."""
    trace.meta["gpu_name"] = busiest_gpu_name(trace.table("gpu_ops"),
                                              trace.meta.get("devices") or {})
