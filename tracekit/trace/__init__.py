"""Trace readers. :func:`load` picks the reader from the file's first bytes, not its name.

    >>> from tracekit.trace import load
    >>> trace = load("trace.json.gz")   # doctest: +SKIP
    >>> trace.gpu_ops.height            # doctest: +SKIP
"""

from __future__ import annotations

import zlib
from pathlib import Path

try:  # Intel ISA-L inflates gzip about twice as fast as zlib; same API, same bytes out
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal is a dependency, but zlib is always there
    _zlib = zlib

from tracekit.errors import TraceFormatError
from tracekit.trace.model import Trace

__all__ = ["Trace", "load", "read_bytes", "MAX_UNCOMPRESSED_BYTES"]

#: a compressed trace is never inflated past this (a gzip bomb stops here)
MAX_UNCOMPRESSED_BYTES = 4 << 30

_GZIP_MAGIC = b"\x1f\x8b"
_SQLITE_MAGIC = b"SQLite format 3\x00"


def read_bytes(path: str | Path, *, limit: int = MAX_UNCOMPRESSED_BYTES) -> bytes:
    """The file's bytes, gunzipped if it is gzip, never more than ``limit`` bytes."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise TraceFormatError(f"{p} does not exist") from None
    except IsADirectoryError:
        raise TraceFormatError(f"{p} is a directory; pass a trace file") from None
    except OSError as exc:
        raise TraceFormatError(f"cannot read {p}: {exc.strerror}") from None
    if raw[:2] != _GZIP_MAGIC:
        return raw
    d = _zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(raw, limit)
    except (zlib.error, _zlib.error) as exc:
        raise TraceFormatError(f"{p} is a corrupt gzip file ({exc}); copy it again") from None
    if d.unconsumed_tail:
        raise TraceFormatError(
            f"{p} inflates to more than {limit >> 20} MiB; refusing to read it "
            "(profile a shorter window)"
        )
    if not d.eof:
        raise TraceFormatError(
            f"{p} is a truncated gzip file (it ends before the compressed stream does); "
            "copy it again or re-export the trace"
        )
    return out


def _head(p: Path, n: int = 16) -> bytes:
    """The first ``n`` bytes of the (decompressed) content, without inflating the whole file."""
    try:
        with open(p, "rb") as f:
            raw = f.read(64 << 10)
    except OSError:
        return b""  # read_bytes says what is wrong with the path
    if raw[:2] != _GZIP_MAGIC:
        return raw[:n]
    try:
        return _zlib.decompressobj(wbits=31).decompress(raw, n)
    except (zlib.error, _zlib.error):
        return b""  # a corrupt gzip: read_bytes reports it


def load(path: str | Path) -> Trace:
    """Read a torch.profiler JSON (``.json``/``.json.gz``) or Nsight Systems SQLite export."""
    p = Path(path)
    if _head(p) == _SQLITE_MAGIC:
        from tracekit.trace.nsys import load_nsys

        return load_nsys(p)  # it inflates a .sqlite.gz itself, into a file SQLite can open
    data = read_bytes(p)
    if not data.strip():
        raise TraceFormatError(f"{p} is empty")
    from tracekit.trace.kineto import parse_kineto

    trace = parse_kineto(data, str(p))
    _name_gpu(trace)
    return trace


def _name_gpu(trace: Trace) -> None:
    """meta['gpu_name']: the device that ran most GPU ops (traces may list several)."""
    devices = trace.meta.get("devices") or {}
    gpu_name = None
    if trace.gpu_ops.height and devices:
        counts = trace.gpu_ops.group_by("device").len().sort("len", descending=True)
        busiest = counts["device"][0]
        gpu_name = (devices.get(busiest) or next(iter(devices.values())))["name"]
    elif devices:
        gpu_name = next(iter(devices.values()))["name"]
    trace.meta["gpu_name"] = gpu_name
