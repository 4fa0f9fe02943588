"""Decode Kineto JSON (a whole document, or one slice of its events) into typed msgspec structs.

One pass of msgspec decodes exactly the fields tracekit reads (``ph``, ``cat``, ``name``, ``pid``,
``tid``, ``ts``, ``dur`` and four ``args``) into the structs below; everything else is skipped by
msgspec's C parser. Types are as permissive as the data in the wild and no more: a value tracekit
cannot represent is normalised when the columns are built (:mod:`tracekit.trace.columns`) or
rejected here, as one :class:`~tracekit.errors.TraceFormatError` (:func:`decode_error`).

**By phase.** Events are decoded by their ``ph`` (a msgspec tagged union): only complete events
(``"X"``, the only ones tracekit reads) get their fields decoded; a flow, instant or metadata
event (a third of a Kineto trace) becomes an empty struct. So a value tracekit does not read (a
boolean ``tid`` on an instant event) is never an error. An event with no ``ph``, or one outside
the Trace Event Format, does not decode that way; the whole slice is then decoded plainly
(:data:`Event`), which decides it as it always did: the same events, or the same error.

**Decimals.** ``ts`` is decoded as a float first. Below 2**43 µs (~100 days of clock: every trace
since PyTorch ~2.4, whose ``ts`` is relative) a float pins the nanosecond; older traces in
absolute µs with a fraction (``1712195495505543.237``) need a second decode with ``ts`` as a
:class:`~decimal.Decimal` (:func:`needs_decimal` tells which).

    >>> [(type(e).__name__, e.ph) for e in decode_events(b'[{"ph": "X", "ts": 1.5}, {"ph": "i"}]')]
    [('Complete', 'X'), ('_Phase105', 'i')]
"""

from __future__ import annotations

import codecs
import operator
from decimal import Decimal
from typing import Any, ClassVar, Union

import msgspec

from tracekit.errors import TraceFormatError


class Args(msgspec.Struct, gc=False):
    # gc=False: no cycles, so the collector never scans the millions of these a trace makes
    correlation: int | float | str | bool | None = None
    stream: int | float | str | bool | None = None
    device: int | float | str | bool | None = None
    bytes: int | float | str | bool | None = None


class Fields(msgspec.Struct, gc=False):
    """What tracekit reads of an event (besides its phase)."""

    cat: str | None = None
    name: str = ""
    pid: int | str | None = None
    tid: int | str | None = None
    ts: float | None = None
    dur: float | None = None
    # args that are not an object (a list, a string) are read as "no args" and counted
    args: Args | list | str | int | float | bool | None = None


class Event(Fields, gc=False):
    """An event of any phase, every field decoded (the plain decode)."""

    ph: str = ""


# The precise structs and Meta redefine a field with another type: msgspec decodes each struct by
# its own annotations (a Decimal timestamp, the events left raw), which mypy's override check
# reads as a broken base class; those lines carry a narrow ignore.
class PreciseEvent(Event, gc=False):
    ts: Decimal | None = None  # type: ignore[assignment]  # see needs_decimal


class File(msgspec.Struct):
    """A whole document: its events and the top-level keys tracekit reads."""

    traceEvents: list[Event] | None = None  # noqa: N815 - the format's own key
    deviceProperties: list[dict] | None = None  # noqa: N815
    baseTimeNanoseconds: int | None = None  # noqa: N815
    displayTimeUnit: str | None = None  # noqa: N815
    schemaVersion: int | None = None  # noqa: N815
    cuda_runtime_version: int | None = None
    cuda_driver_version: int | None = None
    cupti_version: int | None = None
    tracekit: Any = None


class _PreciseFile(File):
    traceEvents: list[PreciseEvent] | None = None  # type: ignore[assignment]  # noqa: N815


class Meta(File):
    """The document with ``traceEvents`` read separately (streaming): anything there is ignored."""

    traceEvents: msgspec.Raw = msgspec.Raw(b"null")  # type: ignore[assignment]  # noqa: N815


class Complete(Fields, tag_field="ph", tag="X", gc=False):
    """A complete event, decoded by phase. ``ph`` is a class attribute here and on every other
    phase's struct, so the column builder reads ``e.ph`` from any event."""

    ph: ClassVar[str] = "X"


class _PreciseComplete(Complete, tag="X", gc=False):
    ts: Decimal | None = None  # type: ignore[assignment]


def _phase(ph: str) -> type:
    """An empty struct for the events of phase ``ph``: their fields are skipped, not decoded."""
    return msgspec.defstruct(f"_Phase{ord(ph)}", [], namespace={"ph": ph, "__annotations__":
                             {"ph": ClassVar[str]}}, tag_field="ph", tag=ph, gc=False)


#: the Trace Event Format's other phases (and the deprecated async ones)
PHASE_TYPES = tuple(map(_phase, "BEiICbneStTpFfsPNODMVvRc()"))


def _by_phase(complete: type):
    # a union built at run time from the phase table: mypy cannot type it
    return list[Union[(complete, *PHASE_TYPES)]]  # type: ignore[valid-type]  # noqa: UP007


#: keyed by ``precise`` (ts as a Decimal)
_EVENTS_BY_PHASE: dict[bool, msgspec.json.Decoder[Any]] = {
    False: msgspec.json.Decoder(_by_phase(Complete)),
    True: msgspec.json.Decoder(_by_phase(_PreciseComplete))}
_EVENTS_PLAIN: dict[bool, msgspec.json.Decoder[Any]] = {
    False: msgspec.json.Decoder(list[Event]), True: msgspec.json.Decoder(list[PreciseEvent])}
_FILE_BY_PHASE: dict[bool, msgspec.json.Decoder[Any]] = {
    precise: msgspec.json.Decoder(msgspec.defstruct(
        "_ByPhaseFile", [("traceEvents", _by_phase(c) | None, None)], bases=(File,)))
    for precise, c in ((False, Complete), (True, _PreciseComplete))
}
_FILE_PLAIN: dict[bool, msgspec.json.Decoder[Any]] = {
    False: msgspec.json.Decoder(File), True: msgspec.json.Decoder(_PreciseFile)}
_META = msgspec.json.Decoder(Meta)

#: what msgspec raises on a document that is not a trace (turned into one line by decode_error)
DECODE_ERRORS = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)


def decode_events(data, precise: bool = False) -> list:
    """A slice's events (``[`` … ``]``), by phase; else plainly (see the module's docstring).
    Raises msgspec's errors: :func:`decode_error` turns them into one line."""
    try:
        return _EVENTS_BY_PHASE[precise].decode(data)
    except Exception:  # noqa: BLE001 - the plain decode below raises what there is to raise
        return _plain(_EVENTS_PLAIN[precise], data)


def decode_meta(data) -> Meta:
    """The document around the events (``traceEvents`` replaced by ``[]``)."""
    return _META.decode(data)


def decode_document(data, path: str, precise: bool) -> File:
    """A whole document, its events by phase (as a streamed slice's), else plainly; a bare JSON
    array of events is a trace too. Raises :class:`TraceFormatError`."""
    try:
        return _FILE_BY_PHASE[precise].decode(data)
    except Exception:  # noqa: BLE001 - the plain decode below raises what there is to raise
        pass
    try:
        return _plain(_FILE_PLAIN[precise], data)
    except msgspec.ValidationError as exc:
        if bytes(data[:64]).lstrip()[:1] == b"[":
            try:
                return File(traceEvents=decode_events(data, precise))
            except DECODE_ERRORS as exc2:
                if isinstance(exc2, msgspec.ValidationError | RecursionError | UnicodeDecodeError):
                    raise decode_error(exc2, path) from None
                raise TraceFormatError(f"{path} is not a profiler trace: {exc2}") from None
        raise decode_error(exc, path) from None
    except DECODE_ERRORS as exc:
        raise decode_error(exc, path) from None


def _plain(decoder: msgspec.json.Decoder, data):
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
#: under half a ns, so rounding recovers the exact integer (see columns.Builder.span)
FLOAT_EXACT_US = float(2**43)
_get_ts = operator.attrgetter("ts")


def needs_decimal(events: list) -> bool:
    """True when some timestamp is too large for a float to keep its nanoseconds (old absolute µs
    traces with fractions, e.g. ``1712195495505543.237``)."""
    return bool(events) and max(map(_get_ts, events)) >= FLOAT_EXACT_US


def decode_error(exc: Exception, path: str, where: str = "") -> TraceFormatError:
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
