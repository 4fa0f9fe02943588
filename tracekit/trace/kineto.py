"""Read torch.profiler (Kineto) Chrome-trace JSON, plain or gzipped, into a :class:`Trace`.

What a Kineto trace holds, and what this reader does with it:

* ``traceEvents`` — complete events (``ph: "X"``) with ``ts``/``dur`` in microseconds. Since
  PyTorch ~2.4 ``ts`` is relative to ``baseTimeNanoseconds`` and carries a nanosecond fraction
  (``4929294704518.973``); older traces have absolute integer µs. ``ts`` is decoded as a decimal,
  never a float, because a float cannot hold a 13-digit µs value to the nanosecond.
* categories — ``kernel``/``gpu_memcpy``/``gpu_memset`` are GPU ops (old traces: ``Kernel``,
  ``Memcpy``, ``Memset``); ``cuda_runtime``/``cuda_driver`` hold launch and sync calls (on ROCm
  the HIP calls, ``hipLaunchKernel`` & co., under ``cuda_runtime``: see ``tracekit/specs/apis.py``);
  ``user_annotation``/``gpu_user_annotation`` are ``record_function`` ranges; ``cuda_sync`` marks
  host waits. GPU ops are recognised by category only: HTA's ``stream`` heuristic counts an Inductor
  launcher CPU op as GPU time (see ``peer_traces/hta/triton_example.json.gz``).
* ``args.correlation`` links a launch to its GPU ops; a ``cudaGraphLaunch`` shares one id with
  every kernel it replays.

Events of unknown categories are skipped and counted in ``meta["skipped_categories"]``.

    >>> from tracekit.trace import load
    >>> trace = load("sample_traces/plain_qwen2.5-7b_ctx2048_eager_annotated.json.gz")  # doctest: +SKIP
"""

from __future__ import annotations

import codecs
import functools
import math
import operator
import os
import re
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import Any, ClassVar, Union

import msgspec
import numpy as np

from tracekit.errors import TraceFormatError
from tracekit.memory import release
from tracekit.specs import apis
from tracekit.trace.capture_meta import clean_capture
from tracekit.trace.model import ANNOTATIONS, CPU_OPS, GPU_OPS, LAUNCHES, SYNCS, Trace
from tracekit.trace.slice_worker import REPLY_DECODER, Worker, can_fork
from tracekit.trace.source import MAX_WHOLE_BYTES, Source, mib
from tracekit.trace.table import Strings, Table

_GPU_CATS = {"kernel": "kernel", "gpu_memcpy": "memcpy", "memcpy": "memcpy",
             "gpu_memset": "memset", "memset": "memset"}
_API_CATS = {"cuda_runtime": "runtime", "runtime": "runtime",
             "cuda_driver": "driver", "driver": "driver"}
_ANNOTATION_CATS = {"user_annotation": False, "gpu_user_annotation": True}
#: categories that carry nothing tracekit needs; skipped without a warning
_CPU_OP_CATS = {"cpu_op", "operator"}
_IGNORED_CATS = {
    "python_function", "ac2g", "fwdbwd", "overhead", "trace",
    "cpu_instant_event", "python_gc", "gpu_instant_event", "mtia_runtime", "privateuse1_runtime",
    "memory", "kernel_activity", "",
    "tracekit",  # the tracks `tracekit annotate` adds: tracekit's own findings, not trace data
}


def _prefixes(names: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(map(re.escape, names)))


# the names are data (tracekit/specs/apis.py): CUDA runtime/driver and HIP calls, by prefix
_KERNEL_LAUNCH = _prefixes(apis.KERNEL_LAUNCH)
_GRAPH_LAUNCH = _prefixes(apis.GRAPH_LAUNCH)
_MEMCPY = _prefixes(apis.MEMCPY)
_MEMSET = _prefixes(apis.MEMSET)
#: a sync call, or a copy whose name does not say Async (cudaMemcpy, hipMemcpyWithStream)
_SYNC = re.compile(f"{_prefixes(apis.SYNC).pattern}"
                   f"|(?:{_prefixes(apis.BLOCKING_COPY).pattern})(?!.*Async)")
#: CUPTI's range profiler (torch.profiler's experimental_config=profiler_metrics): one record of
#: counters per range instead of kernel events; read as an unknown category so finish can say so
_RANGE_CAT = "cuda_profiler_range"
_VERSION_SUFFIX = re.compile(r"_v\d+$")


@functools.lru_cache(maxsize=4096)
def launch_kind(name: str) -> str | None:
    """``kernel``/``graph``/``memcpy``/``memset`` for an API call that puts work on a GPU, else None."""
    name = _VERSION_SUFFIX.sub("", name)
    if _KERNEL_LAUNCH.match(name):
        return "kernel"
    if _GRAPH_LAUNCH.match(name):
        return "graph"
    if _MEMCPY.match(name):
        return "memcpy"
    if _MEMSET.match(name):
        return "memset"
    return None


@functools.lru_cache(maxsize=4096)
def is_sync_call(name: str) -> bool:
    return bool(_SYNC.match(_VERSION_SUFFIX.sub("", name)))


# --- typed decoding ----------------------------------------------------------------------------
# One pass of msgspec over each slice decodes exactly the fields tracekit reads into these structs
# (gc=False: no cycles, so the collector never scans them). Types are as permissive as the data in
# the wild and no more: a value tracekit cannot represent is normalised below or rejected there.
class _Args(msgspec.Struct, gc=False):
    correlation: int | float | str | bool | None = None
    stream: int | float | str | bool | None = None
    device: int | float | str | bool | None = None
    bytes: int | float | str | bool | None = None


class _Fields(msgspec.Struct, gc=False):
    """What tracekit reads of an event (besides its phase)."""

    cat: str | None = None
    name: str = ""
    pid: int | str | None = None
    tid: int | str | None = None
    ts: float | None = None
    dur: float | None = None
    # args that are not an object (a list, a string) are read as "no args" and counted
    args: _Args | list | str | int | float | bool | None = None


class _Event(_Fields, gc=False):
    ph: str = ""


class _PreciseEvent(_Event, gc=False):
    # for timestamps too large for a float to hold their nanosecond fraction (see _needs_decimal)
    ts: Decimal | None = None


class _File(msgspec.Struct):
    traceEvents: list[_Event] | None = None  # noqa: N815 - the format's own key
    deviceProperties: list[dict] | None = None  # noqa: N815
    baseTimeNanoseconds: int | None = None  # noqa: N815
    displayTimeUnit: str | None = None  # noqa: N815
    schemaVersion: int | None = None  # noqa: N815
    cuda_runtime_version: int | None = None
    cuda_driver_version: int | None = None
    cupti_version: int | None = None
    tracekit: Any = None


class _PreciseFile(_File):
    traceEvents: list[_PreciseEvent] | None = None  # noqa: N815


class _Meta(_File):
    # the document with traceEvents read separately (streaming): anything there is ignored
    traceEvents: msgspec.Raw = msgspec.Raw(b"null")  # noqa: N815


_DECODERS = {False: msgspec.json.Decoder(_File), True: msgspec.json.Decoder(_PreciseFile)}
_LIST_DECODERS = {False: msgspec.json.Decoder(list[_Event]),
                  True: msgspec.json.Decoder(list[_PreciseEvent])}
_META_DECODER = msgspec.json.Decoder(_Meta)


# A slice's events decoded by their phase: msgspec picks the struct by ``ph`` (a tagged union),
# so only complete events ("X": the ones tracekit reads) get their fields decoded; a flow, instant
# or metadata event (a third of a Kineto trace) is skipped over to an empty struct. ``ph`` is a
# class attribute on each, so the builder reads ``e.ph`` from either kind of event.
class _Complete(_Fields, tag_field="ph", tag="X", gc=False):
    ph: ClassVar[str] = "X"


def _phase(ph: str) -> type:
    return msgspec.defstruct(f"_Phase{ord(ph)}", [], namespace={"ph": ph, "__annotations__":
                             {"ph": ClassVar[str]}}, tag_field="ph", tag=ph, gc=False)


#: the Trace Event Format's other phases (and the deprecated async ones)
_PHASES = "BEiICbneStTpFfsPNODMVvRc()"
_PHASE_TYPES = tuple(map(_phase, _PHASES))
_BY_PHASE = msgspec.json.Decoder(list[Union[(_Complete, *_PHASE_TYPES)]])  # noqa: UP007


class _PreciseComplete(_Complete, tag="X", gc=False):
    ts: Decimal | None = None  # see _PreciseEvent


_BY_PHASE_PRECISE = msgspec.json.Decoder(
    list[Union[(_PreciseComplete, *_PHASE_TYPES)]])  # noqa: UP007


_BY_PHASE_FILE = {
    precise: msgspec.json.Decoder(msgspec.defstruct(
        "_ByPhaseFile", [("traceEvents", list[Union[(c, *_PHASE_TYPES)]] | None, None)],  # noqa: UP007
        bases=(_File,)))
    for precise, c in ((False, _Complete), (True, _PreciseComplete))
}


def _decode_events(data, precise: bool = False) -> list:
    """A slice's events (``[`` … ``]``), by phase; anything that does not decode that way (an
    event with no or another ``ph``, a wrong cut, a bad value) is decoded as plain events, which
    decide it as they always did: the same events, or the same error. ``precise``: timestamps as
    decimals (the slice's second decode, where a float cannot hold them)."""
    try:
        return (_BY_PHASE_PRECISE if precise else _BY_PHASE).decode(data)
    except Exception:  # noqa: BLE001 - the plain decode below raises what there is to raise
        return _plain_decode(_LIST_DECODERS[precise], data)


def _plain_decode(decoder: msgspec.json.Decoder, data):
    """``decoder.decode(data)``, with invalid UTF-8 always raised as a ``UnicodeDecodeError``.

    Which exception msgspec raises for a string that is not UTF-8 is its own business (a
    ``UnicodeDecodeError`` up to 0.22, a ``DecodeError`` from 0.23), and the reader must tell that
    corruption from a wrong cut (also a ``DecodeError``). So on a ``DecodeError`` tracekit asks the
    bytes themselves; the check runs only on that failure path. A cut is always just past a ``}``,
    which never splits a multi-byte character, so a slice of a valid document is valid UTF-8."""
    try:
        return decoder.decode(data)
    except msgspec.DecodeError:
        codecs.utf_8_decode(data, "strict", True)  # raises UnicodeDecodeError where invalid
        raise

#: below 2**43 µs (~100 days of clock) a float64 µs value still pins the nanosecond: its error is
#: under half a ns, so rounding recovers the exact integer (see _Builder._span)
_FLOAT_EXACT_US = float(2**43)
#: times and durations must fit int64 nanoseconds with room for start + dur: |t| < 2**62 ns
_MAX_NS = 2**62
_MAX_US = _MAX_NS / 1000


_DIGITS = re.compile(r"-?[0-9]{1,20}")


def _int_or_none(v: Any, bits: int = 64) -> int | None:
    """An id as an int: ints, integral floats and digit strings; anything else (or outside the
    signed ``bits`` range) is unknown."""
    if type(v) is float:
        v = int(v) if v.is_integer() else None
    elif type(v) is str:
        # ASCII digits only: str.isdigit() is also true for '²' and '٣', which int() refuses or
        # reads; and at most 20 of them (int64 is 19), so no huge string is ever converted
        v = int(v) if _DIGITS.fullmatch(v) else None
    if type(v) is int and -(2 ** (bits - 1)) <= v < 2 ** (bits - 1):
        return v
    return None


def _decode_error(exc: Exception, path: str, where: str = "") -> TraceFormatError:
    """One clean error for whatever msgspec raises on a document (or a slice of one)."""
    if isinstance(exc, RecursionError):
        return TraceFormatError(
            f"{path} nests JSON deeper than tracekit reads{where}; a profiler trace is a few "
            "levels deep, so the file is corrupt or not a trace"
        )
    if isinstance(exc, UnicodeDecodeError):
        return TraceFormatError(
            f"{path} has a string that is not valid UTF-8{where} ({exc.reason}); the file is "
            "corrupt: copy or export it again"
        )
    if isinstance(exc, msgspec.ValidationError):
        return TraceFormatError(
            f"{path} is JSON but not a torch.profiler trace ({exc}{where}); expected an object "
            "with a 'traceEvents' list, as written by torch.profiler's export_chrome_trace"
        )
    return TraceFormatError(
        f"{path} is not valid JSON ({exc}{where}); expected a torch.profiler trace "
        "(.json or .json.gz) or an Nsight Systems SQLite export (.sqlite)"
    )


_DECODE_ERRORS = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)


def _decode(data, path: str, precise: bool) -> _File:
    """The whole document; its events by phase (as a streamed slice's), else plainly: the plain
    decode decides what does not decode by phase, as it always did."""
    try:
        return _BY_PHASE_FILE[precise].decode(data)
    except Exception:  # noqa: BLE001 - the plain decode below raises what there is to raise
        pass
    try:
        return _plain_decode(_DECODERS[precise], data)
    except msgspec.ValidationError as exc:
        # A bare Chrome JSON array of events is a valid trace too.
        if bytes(data[:64]).lstrip()[:1] == b"[":
            try:
                return _File(traceEvents=_decode_events(data, precise))
            except _DECODE_ERRORS as exc2:
                if isinstance(exc2, msgspec.ValidationError | RecursionError | UnicodeDecodeError):
                    raise _decode_error(exc2, path) from None
                raise TraceFormatError(f"{path} is not a profiler trace: {exc2}") from None
        raise _decode_error(exc, path) from None
    except _DECODE_ERRORS as exc:
        raise _decode_error(exc, path) from None


_get_ts = operator.attrgetter("ts")


def _needs_decimal(events: list[_Event]) -> bool:
    """True when some timestamp is too large for a float to keep its nanoseconds (old absolute µs
    traces with fractions, e.g. ``1712195495505543.237``)."""
    return bool(events) and max(map(_get_ts, events)) >= _FLOAT_EXACT_US


def parse_kineto(data: bytes, path: str = "<trace>") -> Trace:
    """Parse the bytes of a whole Kineto JSON trace (already decompressed) in one decode."""
    f = _decode(data, path, precise=False)
    if f.traceEvents is None:
        raise TraceFormatError(
            f"{path} is JSON but not a torch.profiler trace: it has no 'traceEvents' list"
        )
    b = _Builder(path)
    b.add(f.traceEvents, lambda: _decode(data, path, precise=True).traceEvents)
    return b.finish(f)


# --- streaming ---------------------------------------------------------------------------------
#: inflated bytes decoded per slice (msgspec decodes a slice into structs, the builder keeps only
#: columns, the structs are dropped): memory is a few slices, whatever the trace's size. Small
#: slices are also faster: the builder's passes over a slice's event objects stay in the core's
#: cache (L2 is a few MiB): at 308 MB of JSON 2 MiB slices read in 1.62 s of CPU, 8 MiB in 1.86
SLICE_BYTES = 2 << 20
#: the most bytes one event may take (a "JSON bomb": one endless string) before the slicer gives up
MAX_EVENT_BYTES = 64 << 20
#: the most inflated bytes read as a stream (a gzip bomb stops here)
MAX_STREAM_BYTES = 16 << 30
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


class _Fallback(Exception):
    """The slicer cannot cut this layout: decode the whole document instead (says why)."""


def _find_events(buf: bytearray, state: list) -> int | None:
    """Where the ``traceEvents`` array's content starts (just after its ``[``), found by walking
    the top-level object's tokens (strings skipped whole, so a key spelled inside a string never
    matches). ``state`` = [position, depth] carries the walk across calls as ``buf`` grows;
    None means "read more". A top-level array is the events array itself."""
    pos, depth = state
    if depth == 0:
        m = _WS.match(buf, pos)
        if m.end() >= len(buf):
            return None
        c = buf[m.end()]
        if c == 0x5B:  # '[': a bare array of events
            return m.end() + 1
        if c != 0x7B:
            raise _Fallback("the document is not a JSON object or array")
        pos, depth = m.end() + 1, 1
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
            raise _Fallback("the document has no top-level 'traceEvents' list")
        pos = m.end()


def _after_empty(buf: bytearray, lead: int) -> int | None:
    """Where what follows the array begins when no event is left in it (buf[lead+1:] is
    whitespace and its ``]``); else None."""
    first = _WS.match(buf, lead + 1).end()
    return first + 1 if first < len(buf) and buf[first] == 0x5D else None


class _Slicer:
    """Cuts the inflated stream at event boundaries of ``traceEvents`` and decodes each slice.

    A cut is a ``}``, ``,``, ``{`` match (whitespace allowed). A match inside a string or a nested
    object is possible (a name spelling ``},{``) but harmless: the slice before a wrong cut always
    ends inside a string or an unclosed object, so ``[`` + slice + ``]`` is never valid JSON and its
    decode fails; the slicer then tries the previous match. Every slice that decodes is therefore
    a run of whole events. Slices are decoded in place: the byte before the slice becomes ``[``,
    the byte after its last ``}`` becomes ``]`` (both were ``,``/whitespace/``[``), no copy.
    """

    def __init__(self, path: str, builder: _Builder, slice_bytes: int) -> None:
        self.path = path
        self.b = builder
        self.slice_bytes = slice_bytes
        self.slices = 0
        self.parallel: list[_Parallel] = []

    def _decode_slice(self, buf: bytearray, lead: int, end: int) -> list[_Event] | None:
        """Decode buf[lead+1:end] (whole events, ``end`` just past a ``}``) or None if it fails
        to parse (a wrong cut). ``buf[lead]`` and ``buf[end]`` are overwritten."""
        buf[lead] = 0x5B
        saved = buf[end]
        buf[end] = 0x5D
        view = memoryview(buf)[lead:end + 1]
        try:
            try:
                events = _decode_events(view)
            except msgspec.ValidationError as exc:
                raise self._error(exc) from None
            except msgspec.DecodeError:
                buf[end] = saved  # it was inside a string, perhaps: put it back
                return None
            except (RecursionError, UnicodeDecodeError) as exc:
                raise self._error(exc) from None

            def precise() -> list[_PreciseEvent]:
                # every field of every event, where the first decode read complete events only:
                # a bad value elsewhere is the same error a whole-document decode gives
                try:
                    return _decode_events(view, precise=True)
                except _DECODE_ERRORS as exc:
                    raise self._error(exc, first) from None

            first = self.b.events

            self.b.add(events, precise)
            self.slices += 1
            return events
        finally:
            view.release()

    def _error(self, exc: Exception, first: int | None = None) -> TraceFormatError:
        # $[i] of a slice is $.traceEvents[first + i] of the document (first: the slice's first
        # event; by default the next event the builder would count)
        first = self.b.events if first is None else first
        msg = re.sub(r"`\$\[(\d+)\]",
                     lambda m: f"`$.traceEvents[{first + int(m.group(1))}]", str(exc))
        return _decode_error(type(exc)(msg) if isinstance(exc, msgspec.ValidationError)
                             else exc, self.path)

    def cut(self, buf: bytearray, lead: int, cuts: list[tuple[int, int]] | None = None) -> int:
        """Decode the events in buf[lead+1:] up to the last cut that parses; return the new lead
        (the index of the ``,`` before the next event) or ``lead`` if nothing could be cut."""
        if cuts is None:
            cuts = self.candidates(buf, lead)
        for end, comma in cuts:
            if self._decode_slice(buf, lead, end + 1) is not None:
                return comma
        if len(cuts) > 0:
            raise _Fallback("no cut between events decoded")
        return lead

    @staticmethod
    def candidates(buf: bytearray, lead: int) -> list[tuple[int, int]]:
        """Candidate cuts in buf[lead+1:]: (index of '}', index of ','), last first."""
        cuts: list[tuple[int, int]] = []
        pos = len(buf)
        for _ in range(_MAX_BRACES):  # bounded: a hostile run of '}' cannot stall the reader
            if len(cuts) >= _MAX_TRIES:
                break
            pos = buf.rfind(b"}", lead + 1, pos)
            if pos < 0:
                break
            m = _CUT.match(buf, pos)
            if m is not None:
                cuts.append((pos, m.start(1)))
        return cuts

    def finish(self, buf: bytearray, lead: int) -> bytes:
        """The last events (up to the array's ``]``); returns what follows the array."""
        if (after := _after_empty(buf, lead)) is not None:
            return bytes(buf[after:])
        tries = 0
        for m in _END.finditer(buf, lead + 1):
            after = m.end()  # before _decode_slice writes its ']' (perhaps over this one)
            if self._decode_slice(buf, lead, m.start() + 1) is not None:
                return bytes(buf[after:])
            tries += 1
            if tries >= _MAX_TRIES:
                break
        raise _Fallback("the end of the traceEvents list was not found")


#: with TRACEKIT_READER_WORKERS unset, a worker process is started after this many slices (16 MB)
#: (small traces never pay its start) ...
_AUTO_AFTER_SLICES = 8
#: ... or at the first slice when the file on disk is this large: a forked worker starts in a few
#: ms (gzip: 2 MB is ~20 MB of JSON, 3 slices or more), a fresh interpreter in ~0.15 s of imports
_AUTO_DISK_BYTES = {True: 2 << 20, False: 16 << 20}
#: slices handed out and not yet merged, at most (memory: about this many slices)
_MAX_PENDING = 6
#: slices queued at the worker before this process decodes the next one itself. This process
#: also inflates and cuts the stream, so the worker should decode more than half: with 3 (and 6
#: pending) reading 308 MB took 0.63-0.64 s against 0.67-0.69 s with 2 (and 4), 1 GB 3.03 s
#: against 3.33 s whole-process, for 3 MB more at the peak; 30 and 92 MB moved within noise
_WORKER_AHEAD = 3


def _reader_workers(workers: int | None) -> int | None:
    """0 (read in this process), 1 (a worker from the first slice) or None (auto: large inputs on
    a machine with two cores or more). ``TRACEKIT_READER_WORKERS`` sets it when the caller did not."""
    if workers is None:
        value = os.environ.get("TRACEKIT_READER_WORKERS", "").strip()
        workers = int(value) if value in ("0", "1", "2") else None
    return None if workers is None else min(workers, 1)


def _forks() -> bool:
    return can_fork()


def _two_cores() -> bool:
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return (os.cpu_count() or 1) >= 2


def decode_part(data, path: str) -> tuple:
    """Decode one slice (``[`` whole events ``]``) into a fresh :class:`_Builder`'s columns.

    Returns ``("ok", builder)``, ``("badcut",)`` when the bytes do not parse (a cut inside a
    string), or an error to raise when the slice's turn comes: ``("verr", msg)``,
    ``("recursion",)``, ``("unicode", reason)``, ``("tfe", msg)``. Runs in the worker process
    (see :mod:`tracekit.trace.slice_worker`) or here."""
    try:
        events = _decode_events(data)
    except _SLICE_ERRORS as exc:
        return _slice_error(exc)
    except msgspec.DecodeError:
        return ("badcut",)
    b = _Builder(path)
    try:
        b.add(events, lambda: _decode_events(data, precise=True))
    except TraceFormatError as exc:
        return ("tfe", str(exc))
    except _SLICE_ERRORS as exc:  # the decimal re-decode reads every event's fields
        return _slice_error(exc)
    return ("ok", b)


#: what a slice's decode raises that is the trace's fault (to raise in the slice's turn)
_SLICE_ERRORS = (msgspec.ValidationError, RecursionError, UnicodeDecodeError)


def _slice_error(exc: Exception) -> tuple:
    """One of :data:`_SLICE_ERRORS` as :func:`decode_part`'s reply."""
    if isinstance(exc, msgspec.ValidationError):
        return ("verr", str(exc))
    if isinstance(exc, RecursionError):
        return ("recursion",)
    return ("unicode", exc.reason)


class _Parallel:
    """Slices decoded in a worker process and here, merged into the slicer's builder in order.

    :meth:`push` takes the last candidate cut without checking it (the worker's decode checks
    it); a slice that does not parse comes back ``badcut`` and :meth:`settle` returns the bytes
    from that slice on, which the caller reads on by itself (the slicer then tries earlier cuts,
    as always)."""

    def __init__(self, path: str, slicer: _Slicer) -> None:
        self.path = path
        self.slicer = slicer
        self.worker = Worker(path)
        #: [the slice's events as pieces, gap after it, offset, its first byte, result]
        self.pending: deque[list] = deque()

    def push(self, buf: bytearray, lead: int, end: int, comma: int, offset: int) -> None:
        """The slice buf[lead+1:end+1] (a copy), cut at ``end`` (its last '}')."""
        self.push_pieces([bytes(buf[lead + 1:end + 1])], buf[lead], bytes(buf[end + 1:comma]),
                         offset)

    def push_pieces(self, pieces: list, opener: int, gap: bytes, offset: int) -> None:
        """A slice given as the buffers that make it (whole inflated chunks, not copied): its
        events from after ``opener`` to its last '}'; ``gap`` is what follows up to the ','."""
        w = self.worker
        if not w.dead and w.outstanding < _WORKER_AHEAD:
            w.submit([b"[", *pieces, b"]"])
            self.pending.append([pieces, gap, offset, opener, None])
        else:
            self.pending.append([pieces, gap, offset, opener, self._decode_here(pieces)])

    def push_last(self, buf: bytearray, lead: int, offset: int) -> bytes | None:
        """The last events (buf[lead+1:] up to the first ``}]``), decoded here now and merged in
        their turn. Returns what follows the array, and leaves in ``buf`` only the array's end and
        that (read again after a wrong cut); None, buf untouched, if there is no such end (the
        slicer's :meth:`~_Slicer.finish` then decides, as always)."""
        m = None if _after_empty(buf, lead) is not None else _END.search(buf, lead + 1)
        if m is None:
            return None
        end = m.start() + 1
        pieces = [bytes(buf[lead + 1:end])]
        self.pending.append([pieces, b"", offset, buf[lead], self._decode_here(pieces)])
        tail = bytes(buf[m.end():])
        del buf[lead:end]
        return tail

    def _decode_here(self, pieces: list) -> tuple:
        """Decode a slice in this process."""
        return decode_part(b"".join([b"[", *pieces, b"]"]), self.path)

    def settle(self, block: bool, quiet: bool = False) -> tuple[int, bytearray] | None:
        """Merge finished slices in order (all of them if ``block``). Returns (document offset,
        bytes) to read on from after a wrong cut, else None. A slice's error is raised here, in
        its turn. ``quiet``: stop at a wrong cut (an error is being raised anyway)."""
        pending = self.pending
        while pending:
            pieces, gap, offset, opener, res = pending[0]
            if res is None:
                if not block and len(pending) < _MAX_PENDING and not self.worker.ready():
                    return None
                body = self.worker.get()
                res = self._decode_here(pieces) if body is None else REPLY_DECODER.decode(body)
            pending.popleft()
            status = res[0] if type(res) is tuple else res.s
            if status == "badcut":
                self.worker.close()
                if quiet:
                    pending.clear()
                    return None
                redo = bytearray()
                for ps, g, _, o, _ in [(pieces, gap, offset, opener, res), *pending]:
                    redo.append(o)  # the bytes as they were in the stream
                    for p in ps:
                        redo += p
                    redo += g
                pending.clear()
                return offset, redo
            if status != "ok":
                pending.clear()
                self.worker.close()
                raise self._error(status, res[1] if type(res) is tuple else res.m)
            self.slicer.b.merge(res)
            self.slicer.slices += 1
        return None

    def _error(self, status: str, msg: str | None) -> TraceFormatError:
        if status == "verr":
            return self.slicer._error(msgspec.ValidationError(msg))
        if status == "recursion":
            return _decode_error(RecursionError(), self.path)
        if status == "unicode":
            return _decode_error(UnicodeDecodeError("utf-8", b"", 0, 1, msg or ""), self.path)
        return TraceFormatError(msg or f"{self.path}: the slice reader failed")

    def stop(self) -> None:
        """End the worker (its replies are all in); :meth:`close` reaps it."""
        self.worker.stop()

    def close(self) -> None:
        self.pending.clear()
        self.worker.close()


def read_kineto(src: Source, *, slice_bytes: int = SLICE_BYTES, notes: list[str] | None = None,
                progress: Callable[[int], None] | None = None,
                workers: int | None = None) -> Trace:
    """Read a Kineto trace from an opened :class:`~tracekit.trace.source.Source` as a stream.

    Small documents (one slice) are decoded whole. Larger ones are cut into slices at event
    boundaries (see :class:`_Slicer`); a layout the slicer cannot cut is decoded whole when the
    input can be read again and is at most :data:`MAX_WHOLE_BYTES` (``notes`` says so)."""
    notes = notes if notes is not None else []
    path = src.name
    chunks = src.chunks(limit=MAX_STREAM_BYTES)
    buf = bytearray()
    eof = False

    def take() -> bytes | None:
        nonlocal eof
        chunk = next(chunks, None)
        if chunk is None:
            eof = True
        elif progress is not None:
            progress(src.consumed)
        return chunk

    def more() -> bool:
        chunk = take()
        if chunk is not None:
            buf.extend(chunk)
        return chunk is not None

    while not eof and len(buf) <= slice_bytes:
        more()
    if eof:
        if not bytes(buf[:4096]).strip():
            raise TraceFormatError(f"{path} is empty")
        notes.append(f"read {len(buf) / 1e6:.1f} MB of JSON in one decode (smaller than a slice)")
        return parse_kineto(bytes(buf), path)

    b = _Builder(path)
    slicer = _Slicer(path, b, slice_bytes)
    workers = _reader_workers(workers)
    par: _Parallel | None = None
    done = False  # read to the end of the events: a worker is then stopped, and reaped last
    try:
        state = [0, 0]
        while (start := _find_events(buf, state)) is None:
            if eof or len(buf) > MAX_EVENT_BYTES:
                raise _Fallback("no 'traceEvents' list within the first "
                                f"{mib(MAX_EVENT_BYTES)}")
            more()
        head = bytes(buf[:start - 1])  # the document up to the array's '['
        dropped = 0  # bytes of the document before buf[0]
        bare = not head.strip()
        lead = start - 1  # buf[lead] is '[' (or whitespace/',' later): the slice's opener
        redone = False  # after a wrong cut, the slices from there are read here (to the end)

        def read_on(redo: tuple[int, bytearray] | None) -> bool:
            """After the worker's wrong cut: put the slices from there back in front of ``buf``
            and read on from them here. False when there was none."""
            nonlocal dropped, redone
            if redo is None:
                return False
            dropped, buf[:0] = redo
            redone = True
            return True
        while not eof or redone:
            if par is not None and len(buf) - lead <= slice_bytes:
                # the worker's slice is the rest of buf and whole chunks as the inflater made
                # them, cut in the last chunk: nothing is copied here (the pipe reads them)
                ahead, size = [], len(buf) - lead
                while size <= slice_bytes and (chunk := take()) is not None:
                    ahead.append(chunk)
                    size += len(chunk)
                cuts = _Slicer.candidates(ahead[-1], -1) if ahead and not eof else []
                if cuts:
                    end, comma = cuts[0]
                    last = ahead[-1]
                    par.push_pieces([bytes(buf[lead + 1:]), *ahead[:-1],
                                     memoryview(last)[:end + 1]],
                                    buf[lead], last[end + 1:comma], dropped + lead)
                    dropped += len(buf) + sum(map(len, ahead[:-1])) + comma
                    buf = bytearray(last[comma:])
                    lead = 0
                    del ahead, last
                    if read_on(par.settle(block=False)):
                        par = None
                    continue
                for chunk in ahead:  # no cut in the last chunk, or the end: as below
                    buf.extend(chunk)
                del ahead
            while not eof and len(buf) - lead <= slice_bytes:
                more()
            if eof and not (redone and len(buf) - lead > slice_bytes):
                break
            cuts = slicer.candidates(buf, lead)
            if par is None and workers != 0 and cuts and (
                    workers == 1 or ((slicer.slices >= _AUTO_AFTER_SLICES or (src.size or 0)
                                      >= _AUTO_DISK_BYTES[_forks()]) and _two_cores())):
                workers = 0  # once: after a redo the rest is read here
                try:
                    par = _Parallel(path, slicer)
                    slicer.parallel.append(par)
                except (OSError, ValueError):  # no interpreter to start: read here
                    par = None
            if par is not None:
                if cuts:
                    end, comma = cuts[0]
                    par.push(buf, lead, end, comma, dropped + lead)
                    del buf[:comma]
                    dropped += comma
                    lead = 0
                    if read_on(par.settle(block=False)):
                        par = None
                    continue
                if read_on(par.settle(block=True)):
                    par = None
                    continue
                par = None
            new = slicer.cut(buf, lead, cuts)
            if new == lead:
                if eof:
                    break
                if len(buf) - lead > MAX_EVENT_BYTES:
                    raise TraceFormatError(
                        f"{path} has an event larger than {mib(MAX_EVENT_BYTES)} from byte "
                        f"{dropped + lead + 1} of its JSON on, or its traceEvents are not a list "
                        "of objects; "
                        "the file is corrupt or not a profiler trace"
                    )
                more()
                continue
            del buf[:new]
            dropped += new
            lead = 0
        tail = None
        if par is not None:
            # the last events are decoded here while the worker finishes its slices (this
            # process would otherwise wait for them, and then decode these alone)
            tail = par.push_last(buf, lead, dropped + lead)
            redo = par.settle(block=True)
            par = None
            if redo is not None:  # the last slices, read here
                dropped, buf[:0] = redo
                tail = None
                while len(buf) > slice_bytes and (new := slicer.cut(buf, 0)) != 0:
                    del buf[:new]
                    dropped += new
        if tail is None:
            tail = slicer.finish(buf, lead)
        done = True
    except _Fallback as why:
        if par is not None:  # what a slice before this point raises comes first, as in order
            par.settle(block=True, quiet=True)
        del buf
        return _whole_after_fallback(src, path, str(why), notes)
    except TraceFormatError:
        if par is not None:
            par.settle(block=True, quiet=True)
        raise
    finally:
        for p in slicer.parallel:  # on success the worker ends while the tables are built
            if done:
                p.stop()
            else:
                p.close()
    try:
        try:
            if bare:
                if tail.strip():
                    raise msgspec.DecodeError("trailing characters after the array")
                meta = _Meta()
            else:
                meta = _META_DECODER.decode(head + b"[]" + tail)
        except _DECODE_ERRORS as exc:
            raise _decode_error(exc, path, " (outside traceEvents)") from None
        notes.append(f"streamed {b.events} events in {slicer.slices} slices of "
                     f"~{mib(slice_bytes)}")
        return b.finish(meta)
    finally:
        for p in slicer.parallel:
            p.close()


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


# --- columns -------------------------------------------------------------------------------
#: what each category's events become (checked before lower-casing: the common spellings are exact)
_ROUTE: dict[str, str] = {
    **{c: "gpu" for c in _GPU_CATS}, **{c: "api" for c in _API_CATS}, "cuda_sync": "api",
    **{c: "ann" for c in _ANNOTATION_CATS}, **{c: "cpu" for c in _CPU_OP_CATS},
    **{c: "skip" for c in _IGNORED_CATS},
}


def _route(cat: str | None) -> str:
    if cat is None:
        return "skip"
    r = _ROUTE.get(cat)
    if r is None:
        r = _ROUTE.get(cat.lower(), "unknown")
    return r


_NO_ARGS = _Args()
_INT_OR_NONE = {int, type(None)}

# --- the compiled pass (optional) ---
# tracekit/trace/_columns.c does the builder's per-event work for the common case, ~4x faster, and
# declines (None) anything else; the Python builder below reads what it declines and is its oracle.
try:
    from tracekit.trace import _columns
except ImportError:  # not built (no C compiler where tracekit was installed)
    _columns = None
if os.environ.get("TRACEKIT_PURE_PYTHON"):  # the Python builder only (for a comparison, a bug)
    _columns = None

#: the values of the small string columns, coded as uint8 while reading
_GPU_KINDS = ["kernel", "memcpy", "memset"]
_LAUNCH_KINDS = ["kernel", "graph", "memcpy", "memset"]
_APIS = ["runtime", "driver"]
_GPU_KIND_CODE = {c: _GPU_KINDS.index(k) for c, k in _GPU_CATS.items()}
_LAUNCH_KIND_CODE = {k: i for i, k in enumerate(_LAUNCH_KINDS)}
_API_CODE = {c: _APIS.index(a) for c, a in _API_CATS.items()}
#: the tables the compiled pass fills, in order, and their columns in its order with their
#: dtypes (an id column comes as int64 values and a mask, and is kept as this dtype)
_SCAN_COLUMNS = {
    "gpu": (("name", np.uint32), ("ts", np.float64), ("dur", np.float64), ("kind", np.uint8),
            ("device", np.int32), ("stream", np.int64), ("correlation", np.int64),
            ("bytes", np.int64)),
    "launch": (("name", np.uint32), ("ts", np.float64), ("dur", np.float64), ("kind", np.uint8),
               ("api", np.uint8), ("tid", np.int64), ("correlation", np.int64)),
    "sync": (("name", np.uint32), ("ts", np.float64), ("dur", np.float64), ("tid", np.int64)),
    "ann": (("name", np.uint32), ("ts", np.float64), ("dur", np.float64), ("on_gpu", np.bool_),
            ("tid", np.int64)),
    "cpu": (("name", np.uint32), ("ts", np.float64), ("dur", np.float64), ("tid", np.int64)),
}


def _cat_code(cat: str) -> int:
    """A category as the compiled pass codes it (its CAT_* values): route and kind in one int."""
    r, c = _route(cat), cat.lower()
    if r == "gpu":
        return 2 + _GPU_KIND_CODE[c]
    if r == "api":
        return 7 if c == "cuda_sync" else 5 + _API_CODE.get(c, 0)
    if r == "ann":
        return 9 if _ANNOTATION_CATS.get(c, False) else 8
    return {"cpu": 10, "unknown": 1}.get(r, 0)


def _api_name_code(name: str) -> int:
    """An API call's name as the compiled pass codes it: launch kind + 1 (0: none) | 8 if a sync."""
    kind = launch_kind(name)
    return (0 if kind is None else 1 + _LAUNCH_KIND_CODE[kind]) | (8 if is_sync_call(name) else 0)


_SCAN_SPEC = (
    _Complete, _Event, _Event.__dict__["ph"], frozenset(_PHASE_TYPES),
    tuple(_Fields.__dict__[f] for f in ("cat", "name", "pid", "tid", "ts", "dur", "args")),
    _Args, tuple(_Args.__dict__[f] for f in ("correlation", "stream", "device", "bytes")),
    _cat_code, _api_name_code,
)
#: the compiled pass's caches (pure functions of their keys), shared by every builder; emptied
#: past this many entries (a trace with endless distinct API names)
_SCAN_CACHE: tuple[dict, dict] = ({}, {})
_SCAN_CACHE_MAX = 1 << 16

_VALUES = {("gpu", "kind"): _GPU_KINDS, ("launch", "kind"): _LAUNCH_KINDS,
           ("launch", "api"): _APIS}
#: Utf8 columns no Kineto trace fills (Nsight's launch geometry): all null
_NULL_STRINGS = ("grid", "block")


class _Builder:
    """Keeps only columns: each slice's events become numpy arrays (names as uint32 codes into
    one dictionary of distinct names, kinds as small codes, ids with a validity mask where some
    are unknown), joined into :class:`~tracekit.trace.table.Table`\\ s once at the end.

    A slice's columns for one table are a ``(columns, masks)`` pair of dicts of arrays."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.events = 0
        self.skipped: dict[str, int] = {}
        self.no_ts = 0
        self.no_dur = 0
        self.bad_args = 0
        self.bad_bytes = 0  # copies whose byte count was given but unreadable (1e30, "many", -1)
        self.route: dict[str | None, str] = {}
        self.codes: dict[str, int] = {}
        self.parts: dict[str, list[tuple[dict, dict]]] = {k: [] for k in _SCHEMAS}

    def add(self, events: list[_Event], precise_events: Callable[[], list]) -> None:
        self.events += len(events)
        if _columns is not None and self._scan(events):
            return
        split = self._split(events)
        precise = any(_needs_decimal(x) for x in split[:4])
        if precise:
            split = self._split(precise_events(), count=False)
        gpu, api, ann, cpu = split[:4]
        self.no_dur += [e.dur for e in gpu].count(None)
        gpu_part = self._gpu_ops(gpu, precise)  # first: names are coded in table order
        launch_part, sync_part = self._api_calls(api, precise)
        for key, part in (("gpu", gpu_part), ("launch", launch_part), ("sync", sync_part),
                          ("ann", self._annotations(ann, precise)),
                          ("cpu", self._cpu_ops(cpu, precise))):
            if part[0]["start_ns"].size:
                self.parts[key].append(part)

    def _scan(self, events: list) -> bool:
        """The compiled pass over a slice; False where it declines (the Python passes read it)."""
        cats, api_names = _SCAN_CACHE
        if len(cats) > _SCAN_CACHE_MAX or len(api_names) > _SCAN_CACHE_MAX:
            cats.clear()
            api_names.clear()
        out = _columns.scan(events, _SCAN_SPEC, cats, api_names, self.codes)
        if out is None:
            return False
        no_ts, unknown, no_dur, bad_args, tables = out
        self.no_ts += no_ts
        self.no_dur += no_dur
        self.bad_args += bad_args
        for cat, n in unknown.items():
            self.skipped[cat] = self.skipped.get(cat, 0) + n
        for key, columns in zip(_SCAN_COLUMNS, tables):
            cols, masks = {}, {}
            for (col, dtype), v in zip(_SCAN_COLUMNS[key], columns):
                if type(v) is tuple:  # an id: (int64 values, mask or None)
                    v, mask = v
                    if mask is not None:
                        masks[col] = np.frombuffer(mask, np.bool_)
                    cols[col] = np.frombuffer(v, np.int64).astype(dtype, copy=False)
                else:
                    cols[col] = np.frombuffer(v, dtype)
            if cols["ts"].size:
                cols.update(self._span(cols.pop("ts"), cols.pop("dur")))
                self.parts[key].append((cols, masks))
        return True

    def merge(self, part) -> None:
        """Add a slice decoded elsewhere (``("ok", builder)`` or a worker's reply), in order:
        its counters, and its columns with its local name codes remapped into this dictionary."""
        if type(part) is tuple:
            o = part[1]
            names = list(o.codes)
            parts = {k: v[0] for k, v in o.parts.items() if v}
        else:
            o = part
            names = o.names
            # copies (a slice's columns are ~1 MB): the reply's buffer is freed at once
            parts = {k: ({c: np.frombuffer(buf, np.dtype(dt)).copy()
                          for c, (dt, buf) in cols.items()},
                         {c: np.frombuffer(buf, np.bool_).copy()
                          for c, buf in o.masks.get(k, {}).items()})
                     for k, cols in o.cols.items()}
        self.events += o.events
        self.no_ts += o.no_ts
        self.no_dur += o.no_dur
        self.bad_args += o.bad_args
        self.bad_bytes += o.bad_bytes
        for k, v in o.skipped.items():
            self.skipped[k] = self.skipped.get(k, 0) + v
        codes = self.codes
        remap = np.fromiter((codes.setdefault(n, len(codes)) for n in names), np.uint32, len(names))
        for key in _SCHEMAS:
            part = parts.get(key)
            if part is not None and part[0]["start_ns"].size:
                cols, masks = part
                self.parts[key].append(({**cols, "name": remap[cols["name"]]}, masks))

    def _split(self, events: list[_Event], count: bool = True):
        """Sort events into GPU ops, API calls, annotations and CPU ops; count what is skipped.

        One comprehension per destination (C-speed passes; event order kept in each)."""
        timed = [e for e in events if e.ph == "X" and e.ts is not None]
        if count:
            self.no_ts += [e.ph for e in events].count("X") - len(timed)
        route = self.route
        for cat in {e.cat for e in timed}:
            if cat not in route:
                route[cat] = _route(cat)
        by = {r: {c for c, rr in route.items() if rr == r} for r in ("gpu", "api", "ann", "cpu")}
        gpu_c, api_c, ann_c, cpu_c = by["gpu"], by["api"], by["ann"], by["cpu"]
        gpu = [e for e in timed if e.cat in gpu_c]
        api = [e for e in timed if e.cat in api_c]
        cpu = [e for e in timed if e.cat in cpu_c]
        # before ~2023 ProfilerStep#N was a cpu_op (PyTorch 1.8-1.9: Operator): an annotation.
        # One search of the names joined answers "any here?" (no: every trace since) at C speed
        if cpu and "\0ProfilerStep#" in "\0" + "\0".join([e.name for e in cpu]):
            ann = [e for e in timed if e.cat in ann_c
                   or (e.cat in cpu_c and e.name.startswith("ProfilerStep#"))]
            cpu = [e for e in cpu if not e.name.startswith("ProfilerStep#")]
        else:
            ann = [e for e in timed if e.cat in ann_c]
        unknown = {c for c, r in route.items() if r == "unknown"}
        if count and unknown:
            skipped = self.skipped
            for e in timed:
                if e.cat in unknown:
                    skipped[e.cat] = skipped.get(e.cat, 0) + 1
        return gpu, api, ann, cpu

    # -- helpers ----------------------------------------------------------------------------
    def _names(self, events: list) -> np.ndarray:
        """Name codes into the one dictionary of distinct names (a few hundred per trace)."""
        codes = self.codes
        names = [e.name for e in events]
        try:
            return np.fromiter(map(codes.__getitem__, names), np.uint32, len(names))
        except KeyError:  # new names (a few per slice): coded in order of first occurrence
            for n in dict.fromkeys(names):
                if n not in codes:
                    codes[n] = len(codes)
            return np.fromiter(map(codes.__getitem__, names), np.uint32, len(names))

    def _times(self, events: list, precise: bool) -> dict:
        if not events:
            return {"start_ns": np.empty(0, np.int64), "end_ns": np.empty(0, np.int64)}
        dur = np.array([e.dur for e in events], dtype=np.float64)  # None: nan (JSON has no NaN)
        if not precise:
            return self._span(np.array([e.ts for e in events], dtype=np.float64), dur)
        start = []
        for e in events:
            ns = int(e.ts.scaleb(3).to_integral_value())
            if not -_MAX_NS < ns < _MAX_NS:
                self._range_error("ts", e.ts)
            start.append(ns)
        return self._ends(np.array(start, dtype=np.int64), dur)

    def _span(self, ts: np.ndarray, dur: np.ndarray) -> dict:
        """Start and end in ns from float64 µs (dur NaN where missing: an instant)."""
        if not np.all(np.abs(ts) < _MAX_US):
            self._range_error("ts", float(ts[np.argmax(np.abs(ts))]))
        # whole µs and fraction separately: the fraction's error is < 0.5 ns, so rint is exact
        whole = np.floor(ts)
        return self._ends(whole.astype(np.int64) * 1000
                          + np.rint((ts - whole) * 1000).astype(np.int64), dur)

    def _ends(self, start: np.ndarray, dur: np.ndarray) -> dict:
        dur[np.isnan(dur)] = 0.0
        if not np.all(dur < _MAX_US):
            self._range_error("dur", float(dur.max()))
        return {"start_ns": start,
                "end_ns": start + np.rint(np.maximum(dur, 0.0) * 1000).astype(np.int64)}

    def _range_error(self, field: str, value) -> None:
        raise TraceFormatError(
            f"{self.path} has an event with {field} {value} µs, outside the range tracekit "
            f"represents (±{_MAX_US:.3g} µs as 64-bit nanoseconds); the trace is corrupt"
        )

    def _args(self, events: list) -> list[_Args]:
        out = [e.args for e in events]
        if set(map(type, out)) <= {_Args}:
            return out
        out = []
        for e in events:
            a = e.args
            if type(a) is not _Args:
                if a is not None:
                    self.bad_args += 1
                a = _NO_ARGS
            out.append(a)
        return out

    @staticmethod
    def _ints(values: list, name: str, cols: dict, masks: dict, bits: int = 64) -> None:
        """Ids as integers into ``cols[name]``; what is not one, or does not fit ``bits``, is
        null (unknown): 0 in the column, False in ``masks[name]``."""
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1)
        dtype = np.int64 if bits == 64 else np.int32
        types = set(map(type, values))
        if types <= _INT_OR_NONE:  # the usual cases: plain ints, or ints and None
            known = None
            if type(None) in types:
                known = np.array([v is not None for v in values], dtype=np.bool_)
                values = [0 if v is None else v for v in values]
            try:
                arr = np.array(values, dtype=np.int64)
            except OverflowError:  # beyond 64 bits: the general path below nulls it
                arr = None
            if arr is not None and (bits == 64 or not arr.size
                                    or (lo <= int(arr.min()) and int(arr.max()) < hi)):
                cols[name] = arr.astype(dtype, copy=False)
                if known is not None:
                    masks[name] = known
                return
            if known is not None:
                values = [v if ok else None for v, ok in zip(values, known.tolist())]
        out = [v if type(v) is int and lo <= v < hi else _int_or_none(v, bits) for v in values]
        try:
            cols[name] = np.array(out, dtype=dtype)  # no unknowns (all ints, in range)
        except TypeError:
            masks[name] = np.fromiter((v is not None for v in out), np.bool_, len(out))
            cols[name] = np.array([0 if v is None else v for v in out], dtype=dtype)

    # -- tables -----------------------------------------------------------------------------
    def _gpu_ops(self, events: list, precise: bool) -> tuple[dict, dict]:
        args = self._args(events)
        cats = [e.cat for e in events]
        kind = {c: _GPU_KIND_CODE[c.lower()] for c in set(cats)}
        cols = {"kind": np.fromiter(map(kind.__getitem__, cats), np.uint8, len(events)),
                "name": self._names(events), **self._times(events, precise)}
        masks: dict = {}
        device, stream = [a.device for a in args], [a.stream for a in args]
        if None in device:  # the process id stands in
            device = [d if d is not None else e.pid for d, e in zip(device, events)]
        if None in stream:  # the thread id stands in
            stream = [s if s is not None else e.tid for s, e in zip(stream, events)]
        self._ints(device, "device", cols, masks, bits=32)
        self._ints(stream, "stream", cols, masks)
        self._ints([a.correlation for a in args], "correlation", cols, masks)
        nbytes = [a.bytes for a in args]
        if not set(map(type, nbytes)) <= _INT_OR_NONE:  # (for these _bytes is the identity)
            given = len(nbytes) - nbytes.count(None)
            nbytes = [_bytes(v) for v in nbytes]
            self.bad_bytes += given - (len(nbytes) - nbytes.count(None))
        self._ints(nbytes, "bytes", cols, masks)
        return cols, masks

    def _api_calls(self, events: list, precise: bool) -> tuple[tuple[dict, dict], tuple[dict, dict]]:
        """The launches and the syncs among the API calls (a ``cudaMemcpy`` is both), each call
        classified once per distinct name and category."""
        names, cats = [e.name for e in events], [e.cat for e in events]
        by_name = {n: (launch_kind(n), is_sync_call(n)) for n in set(names)}
        sync_cat = {c: c.lower() == "cuda_sync" for c in set(cats)}
        kinds = [None if sync_cat[c] else by_name[n][0] for n, c in zip(names, cats)]
        keep = [e for e, k in zip(events, kinds) if k is not None]
        args = self._args(keep)
        api = {c: _API_CODE.get(c.lower(), 0) for c in sync_cat}
        cols = {"kind": np.fromiter((_LAUNCH_KIND_CODE[k] for k in kinds if k is not None),
                                    np.uint8, len(keep)),
                "api": np.fromiter((api[e.cat] for e in keep), np.uint8, len(keep)),
                "name": self._names(keep), **self._times(keep, precise)}
        masks: dict = {}
        self._ints([e.tid for e in keep], "tid", cols, masks)
        self._ints([a.correlation for a in args], "correlation", cols, masks)
        synced = [e for e, n, c in zip(events, names, cats) if sync_cat[c] or by_name[n][1]]
        sync_cols = {"name": self._names(synced), **self._times(synced, precise)}
        sync_masks: dict = {}
        self._ints([e.tid for e in synced], "tid", sync_cols, sync_masks)
        return (cols, masks), (sync_cols, sync_masks)

    def _cpu_ops(self, events: list, precise: bool) -> tuple[dict, dict]:
        cols = {"name": self._names(events), **self._times(events, precise)}
        masks: dict = {}
        self._ints([e.tid for e in events], "tid", cols, masks)
        return cols, masks

    def _annotations(self, events: list, precise: bool) -> tuple[dict, dict]:
        cols = {"name": self._names(events), **self._times(events, precise),
                "on_gpu": np.fromiter((_ANNOTATION_CATS.get(e.cat.lower(), False) for e in events),
                                      np.bool_, len(events))}  # a few hundred rows
        masks: dict = {}
        self._ints([e.tid for e in events], "tid", cols, masks)
        return cols, masks

    # -- the trace --------------------------------------------------------------------------
    def finish(self, f: _File) -> Trace:
        if not self.events:
            raise TraceFormatError(f"{self.path} has no events: the profiler recorded nothing")
        names = list(self.codes)
        tables = {}
        for key, schema in _SCHEMAS.items():
            parts = self.parts[key]
            self.parts[key] = []
            tables[key] = _table(key, schema, parts, names)
            del parts
        capture, capture_warnings = clean_capture(f.tracekit)
        trace = Trace(
            gpu_ops=tables["gpu"], launches=tables["launch"], annotations=tables["ann"],
            syncs=tables["sync"], cpu_ops=tables["cpu"],
            meta=_meta(f, self.path, self.skipped, self.events, capture),
        )
        skipped = dict(self.skipped)
        ranges = skipped.pop(_RANGE_CAT, 0)  # counted as unknown so that it can be told here
        if ranges and not trace.has_gpu:
            trace.warnings.append(
                f"this is a CUPTI range-profiler trace ({ranges} {_RANGE_CAT} records: hardware "
                "counters per profiled range, no kernel timeline), so it shows no GPU activity; "
                "for tracekit, profile with torch.profiler(activities=[ProfilerActivity.CPU, "
                "ProfilerActivity.CUDA]) and no experimental_config profiler_metrics")
        if skipped:
            trace.warnings.append(
                "skipped events of unknown categories: "
                + ", ".join(f"{k} ({v})" for k, v in sorted(skipped.items()))
            )
        if self.no_dur:
            trace.warnings.append(f"{self.no_dur} GPU ops had no duration and were read as instants")
        if self.no_ts:
            trace.warnings.append(f"{self.no_ts} complete events had no timestamp and were skipped")
        bad_bytes = self.bad_bytes + _negative_bytes(tables["gpu"])
        if bad_bytes:
            trace.warnings.append(f"{bad_bytes} copies/memsets had a byte count that is not a whole "
                                  "number from 0 to 2**63 (e.g. 1e30); their bytes are unknown "
                                  "(their time still counts)")
        if self.bad_args:
            trace.warnings.append(f"{self.bad_args} events had 'args' that is not an object; "
                                  "read as no args")
        trace.warnings.extend(capture_warnings)
        return trace


def _table(key: str, schema: dict[str, str], parts: list[tuple[dict, dict]],
           names: list[str]) -> Table:
    """One table from its slices' columns: arrays joined, codes typed, masks kept where a slice
    had unknowns (the other slices' rows are all known). Column by column, each slice's array
    dropped once joined: the peak is the table plus one column, not twice the table."""
    if not parts:
        return Table.empty(schema)
    sizes = [p[0]["start_ns"].size for p in parts]
    cols, masks = {}, {}
    for col, dtype in schema.items():
        if col in _NULL_STRINGS:
            cols[col] = Strings.full(None, sum(sizes))
            continue
        arrs = [p[0].pop(col) for p in parts]
        arr = arrs[0] if len(arrs) == 1 else np.concatenate(arrs)
        del arrs
        if dtype == "Utf8":
            values = names if col == "name" else list(_VALUES[key, col])
            cols[col] = Strings(arr.astype(np.uint32, copy=False), values)
        else:
            cols[col] = arr
        if any(col in p[1] for p in parts):
            masks[col] = np.concatenate([p[1].pop(col) if col in p[1] else np.ones(n, np.bool_)
                                         for p, n in zip(parts, sizes)])
        if len(parts) > 1:
            release()  # the slices' arrays are heap memory glibc would keep: return it
    return Table(cols, schema, masks)


def _bytes(v) -> int | None:
    if v is None or type(v) is bool:
        return None
    if type(v) is float:
        return int(v) if math.isfinite(v) and 0 <= v < 2**63 else None
    v = _int_or_none(v)
    return v if v is None or v >= 0 else None


def _negative_bytes(gpu: Table) -> int:
    """Negative byte counts (plain ints, read as given by every pass) made unknown; how many."""
    col = gpu.cols.get("bytes")
    if col is None or not col.size:
        return 0
    neg = col < 0
    if "bytes" in gpu.masks:
        neg &= gpu.masks["bytes"]
    n = int(neg.sum())
    if n:
        known = gpu.masks.get("bytes", np.ones(col.size, np.bool_))
        gpu.masks["bytes"] = known & ~neg
    return n


_SCHEMAS = {"gpu": GPU_OPS, "launch": LAUNCHES, "sync": SYNCS, "ann": ANNOTATIONS,
            "cpu": CPU_OPS}


def _meta(f: _File, path: str, skipped: dict, events: int, capture: dict | None) -> dict:
    devices = {}
    for d in f.deviceProperties or []:
        if isinstance(d, dict) and isinstance(d.get("name"), str):
            devices[_int_or_none(d.get("id")) or 0] = {
                "name": d["name"],
                "total_memory_bytes": _int_or_none(d.get("totalGlobalMem")),
                "sm_count": _int_or_none(d.get("numSms")),
                "cc": f"{d.get('computeMajor')}.{d.get('computeMinor')}"
                if d.get("computeMajor") is not None else None,
            }
    versions = {
        k: v for k, v in {
            "cuda_runtime": f.cuda_runtime_version,
            "cuda_driver": f.cuda_driver_version,
            "cupti": f.cupti_version,
            "kineto_schema": f.schemaVersion,
        }.items() if v is not None
    }
    return {
        "format": "kineto",
        "path": path,
        "devices": devices,
        "versions": versions,
        "base_time_ns": f.baseTimeNanoseconds,
        "tracekit": capture,
        "skipped_categories": skipped,
        "events": events,
    }
