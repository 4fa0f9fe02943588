"""Make a bigger Kineto trace from a real one: ``k`` copies laid end to end in time.

Every copy is a valid continuation of the trace, not a duplicate: timestamps shift by the trace's
span plus 1 ms (exact decimal arithmetic on the ``ts`` text, so nanosecond fractions stay exact),
``correlation``, ``External id`` and flow ``id`` values get a fresh range per copy, and step
annotations (``tracekit.step#N``, ``ProfilerStep#N``) are renumbered so steps stay distinct. The
text layout of the original is kept (only numbers change), so the scaled file parses like it.

    python benchmarks/scale.py sample_traces/llama-3.1-8b_ctx4096_eager.json.gz 10 /tmp/x10.json.gz
"""

from __future__ import annotations

import gzip
import re
import sys
from collections.abc import Iterator
from pathlib import Path

_TS = re.compile(rb'"ts":(\s*)(-?\d+)(\.\d+)?')
_DUR = re.compile(rb'"dur":\s*(\d+(?:\.\d+)?)')
_IDS = re.compile(rb'"(correlation|External id|id)":(\s*)(\d+)')
_STEP = re.compile(rb"(tracekit\.step#|ProfilerStep#)(\d+)")
_EVENTS = re.compile(rb'"traceEvents"\s*:\s*\[')
_END = re.compile(rb"\}\s*\]")


def split_document(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(head up to and with the traceEvents '[', the events text, the rest from its ']')."""
    m = _EVENTS.search(raw)
    if m is None:
        raise ValueError("no traceEvents list")
    # the array ends at the last "}]" whose ']' is followed only by other top-level keys
    ends = [e for e in _END.finditer(raw, m.end())]
    end = next(e for e in reversed(ends) if b"{" not in raw[e.end():])
    return raw[:m.end()], raw[m.end():end.start() + 1], raw[end.end() - 1:]


def scaled_events(events: bytes, k: int) -> Iterator[bytes]:
    """The events text of copy 0..k-1 (copy 0 is the original)."""
    starts = [int(m.group(2)) for m in _TS.finditer(events)]
    durs = [float(m.group(1)) for m in _DUR.finditer(events)]
    span = max(starts) - min(starts) + int(max(durs, default=0)) + 2
    shift = span + 1000  # µs: a 1 ms pause between copies
    max_id = max((int(m.group(3)) for m in _IDS.finditer(events)), default=0) + 1
    max_step = max((int(m.group(2)) for m in _STEP.finditer(events)), default=0) + 1
    yield events
    for i in range(1, k):
        def ts(m, i=i):
            return b'"ts":' + m.group(1) + str(int(m.group(2)) + i * shift).encode() + (
                m.group(3) or b"")

        def ids(m, i=i):
            return (b'"' + m.group(1) + b'":' + m.group(2)
                    + str(int(m.group(3)) + i * max_id).encode())

        def step(m, i=i):
            return m.group(1) + str(int(m.group(2)) + i * max_step).encode()

        yield _STEP.sub(step, _IDS.sub(ids, _TS.sub(ts, events)))


def write_scaled(src: Path, k: int, out: Path, *, level: int = 1) -> int:
    """Write ``k`` copies of ``src`` to ``out`` (gzip); returns the JSON size in bytes."""
    raw = gzip.open(src).read() if src.read_bytes()[:2] == b"\x1f\x8b" else src.read_bytes()
    head, events, tail = split_document(raw)
    size = 0
    with gzip.open(out, "wb", compresslevel=level) as f:
        for part in (head,):
            f.write(part)
            size += len(part)
        for i, ev in enumerate(scaled_events(events, k)):
            if i:
                f.write(b",")
                size += 1
            f.write(ev)
            size += len(ev)
        f.write(tail)
        size += len(tail)
    return size


if __name__ == "__main__":
    n = write_scaled(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
    print(f"{sys.argv[3]}: {n / 1e6:.1f} MB of JSON")
