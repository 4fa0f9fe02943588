"""Cut a Kineto document's ``traceEvents`` array into slices of whole events, without parsing it.

The streaming reader (:mod:`tracekit.trace.kineto`) holds the inflated bytes not yet decoded in a
``bytearray``. This module finds where the events array starts (:func:`find_events`), and
:class:`Slicer` decodes the events up to the last place it can cut, a ``}`` , ``{`` between two
events, handing each slice to the column builder. Memory is then a few slices, whatever the
trace's size.

A cut is found by bytes, not by parsing, so a match inside a string or a nested object is
possible (a name spelling ``},{``) but harmless: the slice before a wrong cut always ends inside a
string or an unclosed object, so ``[`` + slice + ``]`` is never valid JSON and its decode fails;
the slicer then tries the previous match. Every slice that decodes is therefore a run of whole
events. A layout the slicer cannot cut raises :class:`Fallback`, and the reader decodes the whole
document instead.
"""

from __future__ import annotations

import re

import msgspec

from tracekit.errors import TraceFormatError
from tracekit.trace.columns import Builder
from tracekit.trace.decode import DECODE_ERRORS, decode_error, decode_events

#: inflated bytes decoded per slice (msgspec decodes a slice into structs, the builder keeps only
#: columns, the structs are dropped): memory is a few slices, whatever the trace's size. Small
#: slices are also faster: the builder's passes over a slice's event objects stay in the core's
#: cache (L2 is a few MiB): at 308 MB of JSON 2 MiB slices read in 1.62 s of CPU, 8 MiB in 1.86
SLICE_BYTES = 2 << 20
#: how many candidate cuts a slice tries before the reader falls back to one whole decode
_MAX_TRIES = 16
#: how many '}' the cut search looks at, from the end of the buffer back
_MAX_BRACES = 100_000

#: a cut between two events of the traceEvents array: ``}`` , ``{`` with any whitespace
_CUT = re.compile(rb"\}[ \t\r\n]*(,)[ \t\r\n]*\{")
#: the end of the traceEvents array: ``}`` ``]``
_END = re.compile(rb"\}[ \t\r\n]*\]")
_WS = re.compile(rb"[ \t\r\n]*")
#: the next structural character of the document (outside strings)
_TOKEN = re.compile(rb'["{}\[\]]')
#: the rest of a string after its opening quote (unrolled loop: no backtracking)
_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_EVENTS_KEY = re.compile(rb'[ \t\r\n]*:[ \t\r\n]*\[')


class Fallback(Exception):
    """The slicer cannot cut this layout: decode the whole document instead (says why)."""


def _ws_end(buf: bytes | bytearray, pos: int) -> int:
    """Where the whitespace at ``pos`` ends (``_WS`` matches the empty string too)."""
    m = _WS.match(buf, pos)
    return m.end() if m else pos


def find_events(buf: bytearray, state: list) -> int | None:
    """Where the ``traceEvents`` array's content starts (just after its ``[``), found by walking
    the top-level object's tokens (strings skipped whole, so a key spelled inside a string never
    matches). ``state`` = [position, depth] carries the walk across calls as ``buf`` grows;
    None means "read more". A top-level array is the events array itself."""
    pos, depth = state
    if depth == 0:
        start = _ws_end(buf, pos)
        if start >= len(buf):
            return None
        c = buf[start]
        if c == 0x5B:  # '[': a bare array of events
            return start + 1
        if c != 0x7B:
            raise Fallback("the document is not a JSON object or array")
        pos, depth = start + 1, 1
    while True:
        m = _TOKEN.search(buf, pos)
        if m is None:
            state[:] = [len(buf), depth]
            return None
        c = buf[m.start()]
        if c == 0x22:  # '"'
            s = _STRING_REST.match(buf, m.start() + 1)
            if s is None:
                state[:] = [m.start(), depth]
                return None
            if (depth == 1 and s.end() - m.start() == 13
                    and buf[m.start() + 1:s.end() - 1] == b"traceEvents"):
                k = _EVENTS_KEY.match(buf, s.end())
                if k is not None:
                    return k.end()
                if len(buf) - s.end() < 64:
                    state[:] = [m.start(), depth]
                    return None
            pos = s.end()
            continue
        depth += 1 if c in (0x7B, 0x5B) else -1
        if depth <= 0:
            raise Fallback("the document has no top-level 'traceEvents' list")
        pos = m.end()


class Slicer:
    """Decodes the events at the front of a buffer, a slice at a time, into a :class:`Builder`.

    The buffer always starts with the byte before the next event: the array's ``[`` at first,
    then the ``,`` after the last event decoded. Slices are decoded in place: that byte becomes
    ``[``, the byte after the slice's last ``}`` becomes ``]`` (both were ``,``/whitespace/``[``),
    no copy."""

    def __init__(self, path: str, builder: Builder, slice_bytes: int) -> None:
        self.path = path
        self.b = builder
        self.slice_bytes = slice_bytes
        self.slices = 0

    def cut(self, buf: bytearray) -> int:
        """Decode the events in ``buf`` up to the last cut that parses; return where the rest
        starts (the ``,`` before the next event), or 0 if nothing could be cut yet."""
        cuts = self._candidates(buf)
        for end, comma in cuts:
            if self._decode(buf, end + 1):
                return comma
        if cuts:
            raise Fallback("no cut between events decoded")
        return 0

    def finish(self, buf: bytearray) -> bytes:
        """Decode the last events (up to the array's ``]``); return what follows the array."""
        first = _ws_end(buf, 1)
        if first < len(buf) and buf[first] == 0x5D:  # no event left: ']'
            return bytes(buf[first + 1:])
        for tries, m in enumerate(_END.finditer(buf, 1)):
            if tries >= _MAX_TRIES:
                break
            after = m.end()  # before _decode writes its ']' (perhaps over this one)
            if self._decode(buf, m.start() + 1):
                return bytes(buf[after:])
        raise Fallback("the end of the traceEvents list was not found")

    @staticmethod
    def _candidates(buf: bytearray) -> list[tuple[int, int]]:
        """Candidate cuts in buf[1:]: (index of '}', index of ','), last first."""
        cuts: list[tuple[int, int]] = []
        pos = len(buf)
        for _ in range(_MAX_BRACES):  # bounded: a hostile run of '}' cannot stall the reader
            if len(cuts) >= _MAX_TRIES:
                break
            pos = buf.rfind(b"}", 1, pos)
            if pos < 0:
                break
            m = _CUT.match(buf, pos)
            if m is not None:
                cuts.append((pos, m.start(1)))
        return cuts

    def _decode(self, buf: bytearray, end: int) -> bool:
        """Decode buf[1:end] (whole events, ``end`` just past a ``}``) into the builder; False if
        it does not parse (a wrong cut). ``buf[0]`` and ``buf[end]`` are overwritten."""
        buf[0] = 0x5B
        saved = buf[end]
        buf[end] = 0x5D
        view = memoryview(buf)[:end + 1]
        first = self.b.events  # the slice's first event's index in the document
        try:
            try:
                events = decode_events(view)
            except msgspec.ValidationError as exc:
                raise self._error(exc, first) from None
            except msgspec.DecodeError:
                buf[end] = saved  # it was inside a string, perhaps: put it back
                return False
            except (RecursionError, UnicodeDecodeError) as exc:
                raise self._error(exc, first) from None

            def precise() -> list:
                # every field of every event, where the first decode read complete events only:
                # a bad value elsewhere is the same error a whole-document decode gives
                try:
                    return decode_events(view, precise=True)
                except DECODE_ERRORS as exc:
                    raise self._error(exc, first) from None

            self.b.add(events, precise)
            self.slices += 1
            return True
        finally:
            view.release()

    def _error(self, exc: Exception, first: int) -> TraceFormatError:
        """msgspec's error, its path ``$[i]`` in the slice made ``$.traceEvents[first + i]``."""
        msg = re.sub(r"`\$\[(\d+)\]",
                     lambda m: f"`$.traceEvents[{first + int(m.group(1))}]", str(exc))
        return decode_error(type(exc)(msg) if isinstance(exc, msgspec.ValidationError)
                            else exc, self.path)
