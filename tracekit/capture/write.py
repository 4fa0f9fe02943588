"""Write the trace: Kineto's chrome JSON plus tracekit's metadata, gzip-compressed, atomically.

The file is the profiler's own ``export_chrome_trace`` output with **one** extra top-level key,
``"tracekit"``, holding the capture metadata (schema ``tracekit.capture/1``). The key is spliced
in *first* while streaming the export through gzip, so the (often 50-100 MB) JSON is never
parsed, and the reader (:func:`tracekit.trace.capture_meta.read_capture_meta`) can read the
metadata from the head of the file alone.

Atomic: everything goes to hidden temporary files in the output's directory, and only a
complete file is renamed onto the output (:func:`tracekit.fileio.output_path`, the rules every
output of tracekit follows). Any exception, Ctrl-C included, removes the temporaries: a failed
capture leaves no partial trace behind.

    tracekit capture --model tiny --device cpu --ctx 32 -o tiny.json.gz
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from tracekit.errors import CaptureError
from tracekit.fileio import output_path
from tracekit.jsonio import json_safe
from tracekit.trace.capture_meta import META_KEY, read_capture_meta

SCHEMA = "tracekit.capture/1"
#: gzip level: traces are written once and read many times, and 9 is ~25% smaller than 6
GZIP_LEVEL = 9
_CHUNK = 1 << 20


def write_trace(export: Callable[[str], object], meta: dict, out: Path) -> int:
    """Call ``export(path)`` to write the raw chrome JSON, then splice ``meta`` and gzip it to
    ``out`` atomically. Returns the size of the written file in bytes."""
    out = Path(out)
    raw = export_raw(export, out)
    try:
        with output_path(out) as tmp:
            splice_meta(raw, meta, tmp)
    finally:
        raw.unlink(missing_ok=True)
    return out.stat().st_size


def export_raw(export: Callable[[str], object], out: Path) -> Path:
    """Call ``export(path)`` now, into a scratch file beside ``out``; :func:`write_trace` with
    :func:`from_raw` splices the metadata in later. The caller unlinks it if it never gets there."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = _temp(out, ".export.json")
    try:
        export(str(raw))
    except BaseException:
        raw.unlink(missing_ok=True)
        raise
    return raw


def from_raw(raw: Path) -> Callable[[str], object]:
    """The ``export`` for :func:`write_trace` of a trace :func:`export_raw` already wrote."""
    return lambda path: os.replace(raw, path)


def write_meta_only(meta: dict, out: Path) -> int:
    """A trace file with no events, only the metadata (``--sessions N --profile-session none``)."""
    return write_trace(lambda path: Path(path).write_text('{"traceEvents": []}'), meta, out)


def replace_meta(src: Path, meta: dict, out: Path) -> int:
    """Copy the trace ``src`` (written by :func:`write_trace`) to ``out`` with ``meta`` in place of
    its metadata, atomically. The events are streamed, never parsed."""

    def export(path: str) -> None:
        old = read_capture_meta(src)
        head = json.dumps({META_KEY: json_safe(old)}, allow_nan=False, separators=(",", ":"))
        with gzip.open(src, "rb") as f, open(path, "wb") as dst:
            first = f.read(len(head) - 1)
            if first != head[:-1].encode():
                raise CaptureError(f"{src} does not start with tracekit's metadata; cannot rewrite")
            rest = f.read(1).lstrip(b",")  # the comma after the metadata, if events follow
            dst.write(b"{" + rest)
            while chunk := f.read(_CHUNK):
                dst.write(chunk)

    return write_trace(export, meta, out)


def _temp(out: Path, suffix: str) -> Path:
    """A scratch file for the profiler's export, hidden beside the output (the same disk)."""
    fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=suffix)
    os.close(fd)
    return Path(name)


def splice_meta(raw: Path, meta: dict, dst: Path) -> None:
    """Stream ``raw`` (a JSON object) into gzip file ``dst`` with ``{"tracekit": meta, ...``."""
    head = json.dumps({META_KEY: json_safe(meta)}, allow_nan=False, separators=(",", ":"))
    with open(raw, "rb") as src, open(dst, "wb") as f:
        first = src.read(_CHUNK).lstrip()
        if not first.startswith(b"{"):
            raise CaptureError(f"the profiler's export {raw.name!r} is not a JSON object")
        rest = first[1:]
        empty = rest.lstrip().startswith(b"}")
        with gzip.GzipFile(
            filename="", mode="wb", fileobj=f, compresslevel=GZIP_LEVEL, mtime=0
        ) as gz:
            gz.write(head[:-1].encode())  # the object without its closing brace
            gz.write(b"" if empty else b",")
            gz.write(rest)
            while chunk := src.read(_CHUNK):
                gz.write(chunk)
        f.flush()
        os.fsync(f.fileno())
