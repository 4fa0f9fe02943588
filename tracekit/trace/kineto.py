"""Read torch.profiler (Kineto) Chrome-trace JSON, plain or gzipped, into a :class:`Trace`.

What a Kineto trace holds, and what this reader does with it:

* ``traceEvents`` — complete events (``ph: "X"``) with ``ts``/``dur`` in microseconds. Since
  PyTorch ~2.4 ``ts`` is relative to ``baseTimeNanoseconds`` and carries a nanosecond fraction
  (``4929294704518.973``); older traces have absolute integer µs, for which a float is not
  enough (:mod:`tracekit.trace.decode` decodes those as decimals).
* categories — which table an event goes to (GPU ops, launches, syncs, annotations, CPU ops) is
  decided by its category and name (:mod:`tracekit.trace.names`, shared with the Nsight reader).
  GPU ops are recognised by category only: HTA's ``stream`` heuristic counts an Inductor
  launcher CPU op as GPU time (see ``sample_traces/peer/hta/triton_example.json.gz``).
* ``args.correlation`` links a launch to its GPU ops; a ``cudaGraphLaunch`` shares one id with
  every kernel it replays.

Events of unknown categories are skipped and counted in ``meta["skipped_categories"]``.

The stages, each its own module, in the order the bytes go through them:

1. :mod:`tracekit.trace.source` — open and inflate the input as a bounded stream of chunks;
2. :mod:`tracekit.trace.slicing` — cut the ``traceEvents`` array into slices of whole events;
3. :mod:`tracekit.trace.decode` — decode a slice (or a small document, whole) with msgspec;
4. :mod:`tracekit.trace.columns` — turn the decoded events into numpy columns and, at the end,
   the :class:`Trace`.

This module runs them: :func:`read_kineto` streams, :func:`parse_kineto` decodes a document whole.

    >>> from tracekit.trace import load
    >>> trace = load("sample_traces/plain_qwen2.5-7b_ctx2048_eager_annotated.json.gz")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from tracekit.errors import TraceFormatError
from tracekit.trace.columns import Builder
from tracekit.trace.decode import DECODE_ERRORS, Meta, decode_document, decode_error, decode_meta
from tracekit.trace.model import Trace
from tracekit.trace.names import is_sync_call, launch_kind
from tracekit.trace.slicing import SLICE_BYTES, Fallback, Slicer, find_events
from tracekit.trace.source import MAX_WHOLE_BYTES, Source, mib

#: the most bytes one event may take (a "JSON bomb": one endless string) before the slicer gives up
MAX_EVENT_BYTES = 64 << 20
#: the most inflated bytes read as a stream (a gzip bomb stops here)
MAX_STREAM_BYTES = 16 << 30

__all__ = ["SLICE_BYTES", "MAX_EVENT_BYTES", "MAX_STREAM_BYTES", "parse_kineto", "read_kineto",
           "is_sync_call", "launch_kind"]  # (the last two live in names.py; imported from here too)


def parse_kineto(data: bytes, path: str = "<trace>") -> Trace:
    """Parse the bytes of a whole Kineto JSON trace (already decompressed) in one decode."""
    f = decode_document(data, path, precise=False)
    if f.traceEvents is None:
        raise TraceFormatError(
            f"{path} is JSON but not a torch.profiler trace: it has no 'traceEvents' list"
        )
    b = Builder(path)
    # (the precise decode of the same document has the same events list)
    b.add(f.traceEvents, lambda: decode_document(data, path, precise=True).traceEvents or [])
    return b.finish(f)


def read_kineto(src: Source, *, slice_bytes: int = SLICE_BYTES, notes: list[str] | None = None,
                progress: Callable[[int], None] | None = None) -> Trace:
    """Read a Kineto trace from an opened :class:`~tracekit.trace.source.Source` as a stream.

    Small documents (one slice) are decoded whole. Larger ones are cut into slices at event
    boundaries (see :class:`~tracekit.trace.slicing.Slicer`); a layout the slicer cannot cut is
    decoded whole when the input can be read again and is at most :data:`MAX_WHOLE_BYTES`
    (``notes`` says so)."""
    notes = notes if notes is not None else []
    path = src.name
    stream = _Stream(src, progress)
    stream.fill(slice_bytes)
    if stream.eof:
        if not bytes(stream.buf[:4096]).strip():
            raise TraceFormatError(f"{path} is empty")
        notes.append(f"read {len(stream.buf) / 1e6:.1f} MB of JSON in one decode (smaller than "
                     "a slice)")
        return parse_kineto(bytes(stream.buf), path)
    b = Builder(path)
    slicer = Slicer(path, b, slice_bytes)
    try:
        head = _head(stream)
        tail = _events(stream, slicer)
    except Fallback as why:
        stream.buf.clear()
        return _whole_after_fallback(src, path, str(why), notes)
    try:
        if not head.strip():  # a bare array of events
            if tail.strip():
                raise msgspec.DecodeError("trailing characters after the array")
            meta = Meta()
        else:
            meta = decode_meta(head + b"[]" + tail)
    except DECODE_ERRORS as exc:
        raise decode_error(exc, path, " (outside traceEvents)") from None
    notes.append(f"streamed {b.events} events in {slicer.slices} slices of ~{mib(slice_bytes)}")
    return b.finish(meta)


class _Stream:
    """The inflated bytes not decoded yet (``buf``), read from the source a chunk at a time."""

    def __init__(self, src: Source, progress: Callable[[int], None] | None) -> None:
        self.src = src
        self.chunks = src.chunks(limit=MAX_STREAM_BYTES)
        self.progress = progress
        self.buf = bytearray()
        self.eof = False
        self.dropped = 0  #: bytes of the document before buf[0]

    def more(self) -> None:
        """One more chunk onto ``buf``, or ``eof``."""
        chunk = next(self.chunks, None)
        if chunk is None:
            self.eof = True
            return
        if self.progress is not None:
            self.progress(self.src.consumed)
        self.buf.extend(chunk)

    def fill(self, size: int) -> None:
        """Read until ``buf`` holds more than ``size`` bytes, or the end."""
        while not self.eof and len(self.buf) <= size:
            self.more()

    def drop(self, n: int) -> None:
        """Forget the first ``n`` bytes (decoded)."""
        del self.buf[:n]
        self.dropped += n


def _head(stream: _Stream) -> bytes:
    """The document up to the events array's ``[`` (empty for a bare array), dropped from the
    stream, whose ``buf`` then starts at that ``[``."""
    state = [0, 0]
    while (start := find_events(stream.buf, state)) is None:
        if stream.eof or len(stream.buf) > MAX_EVENT_BYTES:
            raise Fallback(f"no 'traceEvents' list within the first {mib(MAX_EVENT_BYTES)}")
        stream.more()
    head = bytes(stream.buf[:start - 1])
    stream.drop(start - 1)
    return head


def _events(stream: _Stream, slicer: Slicer) -> bytes:
    """Decode the events array slice by slice; return what follows it in the document."""
    buf = stream.buf
    while True:
        stream.fill(slicer.slice_bytes)
        if stream.eof:
            return slicer.finish(buf)
        rest = slicer.cut(buf)
        if rest:
            stream.drop(rest)
            continue
        if len(buf) > MAX_EVENT_BYTES:  # no cut in this much: one endless event
            raise TraceFormatError(
                f"{slicer.path} has an event larger than {mib(MAX_EVENT_BYTES)} from byte "
                f"{stream.dropped + 1} of its JSON on, or its traceEvents are not a list of "
                "objects; the file is corrupt or not a profiler trace"
            )
        stream.more()


def _whole_after_fallback(src: Source, path: str, why: str, notes: list[str]) -> Trace:
    from tracekit.trace.source import open_source

    if src.path is None:
        raise TraceFormatError(
            f"{path}: tracekit cannot read this layout as a stream ({why}) and a pipe cannot be "
            "read twice; save the trace to a file and pass its path"
        )
    notes.append(f"whole-document decode: the slicer cannot cut this layout ({why})")
    with open_source(src.path) as again:
        data = again.read_all(limit=MAX_WHOLE_BYTES)
    return parse_kineto(data, path)
