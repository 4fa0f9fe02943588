"""The token ids each forward pass was fed, from the shapes the profiler recorded.

``torch.profiler.profile(record_shapes=True)`` writes every CPU op's ``args["Input Dims"]``. A
decoder's forward pass starts with one embedding lookup, ``aten::embedding(weight, input_ids)``,
whose second input is the token ids: ``[batch, tokens]``. One token per sequence is a decode
pass; more is a prefill (or a chunk of one). That is the surest evidence of a pass's kind, and
the only one for a trace that holds a single pass.

The main reader does not keep shapes (most traces have none, and reading them costs time and
memory on every event), so this reads the file a second time, decoding only each event's name,
category and timestamp, and the arguments of embedding lookups alone. It is called only when a
step's kind is not stated by its marker.

    >>> embedding_inputs("trace.json.gz")            # doctest: +SKIP
    [[16, 559]]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from tracekit.errors import TraceFormatError
from tracekit.trace.source import open_source

#: the CPU ops of an embedding lookup whose second input is the token ids
EMBEDDING_OPS = frozenset({"aten::embedding"})
#: re-read only documents up to this size (inflated): a larger one keeps its kinds undecided (the
#: decode holds the document and its events at once, a few times its size)
MAX_BYTES = 64 << 20
#: what every recorded shape is written under: no such bytes, no shapes, and no decode at all
_MARK = b'"Input Dims"'
#: inflated bytes scanned for it at most (shapes are on every CPU op: the first comes early)
_SCAN_BYTES = 8 << 20


class _Event(msgspec.Struct, gc=False):
    name: str = ""
    cat: Any = None
    ts: Any = None
    args: msgspec.Raw = msgspec.Raw(b"null")


class _Doc(msgspec.Struct, gc=False):
    traceEvents: list[_Event] | None = None  # noqa: N815 - the format's own key


class _Args(msgspec.Struct, gc=False):
    dims: Any = msgspec.field(name="Input Dims", default=None)


_DOC = msgspec.json.Decoder(_Doc)
_LIST = msgspec.json.Decoder(list[_Event])
_ARGS = msgspec.json.Decoder(_Args)


def embedding_inputs(path: str | Path | None) -> list[list[int] | None] | None:
    """The token-ids shape of every embedding lookup (CPU op) in the trace, in timestamp order
    (None for one whose shape was not recorded or is not ``[batch, tokens]``); None when the file
    cannot be read again (standard input, too large, not JSON) or recorded no shape at all."""
    if path is None or str(path) == "-" or not _has_shapes(path):
        return None
    try:
        with open_source(path) as src:
            data = src.read_all(limit=MAX_BYTES)
    except (OSError, TraceFormatError):
        return None
    try:
        events = (_LIST if data.lstrip()[:1] == b"[" else _DOC).decode(data)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return None
    if not isinstance(events, list):
        events = events.traceEvents or []
    found = []
    for e in events:
        if e.name in EMBEDDING_OPS and e.cat == "cpu_op":
            found.append((e.ts if isinstance(e.ts, int | float) else 0.0, _ids_shape(e.args)))
    found.sort(key=lambda x: x[0])
    shapes = [s for _, s in found]
    return shapes if any(s is not None for s in shapes) else None


def _has_shapes(path: str | Path) -> bool:
    """Whether the trace recorded shapes: a streamed scan of its first bytes for the key they are
    written under (most traces have none, and then cost one short scan, not a second decode)."""
    tail, seen = b"", 0
    try:
        with open_source(path) as src:
            for chunk in src.chunks(limit=MAX_BYTES):
                if _MARK in tail + chunk[: len(_MARK)] or _MARK in chunk:
                    return True
                tail = chunk[-len(_MARK):]
                seen += len(chunk)
                if seen >= _SCAN_BYTES:
                    return False
    except (OSError, TraceFormatError):
        return False
    return False


def _ids_shape(raw: msgspec.Raw) -> list[int] | None:
    try:
        dims = _ARGS.decode(raw).dims
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return None
    if (isinstance(dims, list) and len(dims) >= 2 and isinstance(dims[1], list)
            and len(dims[1]) == 2 and all(type(x) is int and x > 0 for x in dims[1])):
        return dims[1]
    return None
