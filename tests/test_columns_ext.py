"""The compiled per-event pass (``tracekit/trace/_columns.c``) against the Python builder.

The Kineto reader's builder has two implementations of its per-event work: Python comprehensions
(the oracle, itself checked against a plain ``json.load`` reading in ``test_reader_columns.py``)
and an optional C pass that handles the common case and declines the rest. Here the two must
agree exactly — tables, dtypes, nulls, name codes in the same order, counters, warnings and errors:

* on every committed Kineto trace, streamed both ways (every slice in this process, counted);
* on generated slices of events with every awkward value (hypothesis), decoded as the reader
  decodes them;
* on slices the C pass must take (so the comparison is not vacuous) and ones it must decline.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import msgspec
import pytest
from helpers import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

import tracekit.trace.columns as K
from tracekit.errors import TraceFormatError
from tracekit.trace import load
from tracekit.trace.decode import Args, decode_events

ROOT = Path(__file__).resolve().parents[1]
KINETO = sorted(p for p in (ROOT / "sample_traces").rglob("*.json.gz"))
TABLES = ("gpu_ops", "launches", "annotations", "syncs", "cpu_ops")
EXT = K.COMPILED


@contextlib.contextmanager
def _pure():
    """The Python builder only (what TRACEKIT_PURE_PYTHON=1 gives a user)."""
    K.COMPILED = None
    try:
        yield
    finally:
        K.COMPILED = EXT


class _Counting:
    """The C pass with a tally of the slices it took and declined."""

    def __init__(self) -> None:
        self.took = self.declined = 0

    def scan(self, *args):
        out = EXT.scan(*args)
        if out is None:
            self.declined += 1
        else:
            self.took += 1
        return out


@contextlib.contextmanager
def _counted():
    c = _Counting()
    K.COMPILED = c
    try:
        yield c
    finally:
        K.COMPILED = EXT


def test_the_compiled_pass_is_built():
    if os.environ.get("TRACEKIT_PURE_PYTHON"):
        pytest.skip("TRACEKIT_PURE_PYTHON is set: the Python builder only")
    assert EXT is not None, (
        f"the compiled pass is off: {K.COMPILED_PROBLEM}. `pip install -e .` compiles it where a "
        "C compiler and Python's headers are present (without it tracekit runs, slower)")


needs_ext = pytest.mark.skipif(EXT is None, reason="the compiled pass is not built")


def _same_trace(a, b) -> None:
    for key in TABLES:
        assert_frame_equal(getattr(a, key), getattr(b, key), check_dtypes=True)
    assert a.meta == b.meta
    assert list(a.meta["skipped_categories"]) == list(b.meta["skipped_categories"])
    assert a.warnings == b.warnings


@needs_ext
@pytest.mark.parametrize("path", KINETO, ids=lambda p: str(p.relative_to(ROOT / "sample_traces")))
def test_committed_traces_read_the_same_both_ways(path):
    with _counted() as c:
        fast = load(str(path))
    with _pure():
        slow = load(str(path))
    _same_trace(fast, slow)
    # not vacuous: traces of today's profiler (float µs relative to a base time) are the C
    # pass's, every slice; HTA's old peer traces (absolute µs) are read as decimals, in Python
    if "peer" not in path.parts or "nccl_data" in path.name or "triton" in path.name:
        assert c.took >= 1 and c.declined == 0


# --- generated slices --------------------------------------------------------------------------
_CATS = ["kernel", "Kernel", "gpu_memcpy", "Memset", "gpu_memset", "cuda_runtime", "Runtime",
         "cuda_driver", "cuda_sync", "user_annotation", "gpu_user_annotation", "cpu_op",
         "Operator", "python_function", "ac2g", "mystery", "Mystery2", ""]
_NAMES = ["cudaLaunchKernel", "cuLaunchKernel_v2", "cudaLaunchCooperativeKernel",
          "cudaGraphLaunch_v10000", "cudaMemcpy", "cudaMemcpyAsync", "cudaMemsetAsync",
          "cudaStreamSynchronize", "cuCtxSynchronize", "cudaEventQuery", "ProfilerStep#4",
          "aten::mm", "void gemv<float, 128>(…)", "名前 é", ""]
_EDGE_INTS = st.sampled_from([0, 7, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**63 - 1, 2**63,
                              -(2**63), -(2**63) - 1, 2**70])


def _mostly(common, rare):
    """``common``, and ``rare`` one draw in ten (so most slices are whole and readable)."""
    return st.integers(0, 9).flatmap(lambda i: rare if i == 0 else common)


_PLAIN_IDS = _mostly(st.integers(0, 50), st.one_of(st.none(), _EDGE_INTS))
_ANY_IDS = _mostly(_PLAIN_IDS, st.one_of(st.booleans(), st.sampled_from(["12", "-3", "x", ""]),
                                          st.floats(-1e20, 1e20), st.sampled_from([1.0, 1e19])))
_TS = _mostly(st.floats(0, 4e12), st.one_of(st.none(), st.integers(0, 2**40), st.floats(-1e6, 0)))
_ANY_TS = _mostly(_TS, st.one_of(st.floats(-1e18, 1e18), st.integers(0, 2**50),
                                 st.sampled_from([2.0**43, 2.0**43 - 0.5, 4.7e18])))
_DUR = _mostly(st.floats(0, 1e4), st.one_of(st.none(), st.floats(-10, 0),
                                            st.sampled_from([4.6e15, 1e16])))


@st.composite
def _events(draw, plain: bool) -> list[dict]:
    ids = _PLAIN_IDS if plain else _ANY_IDS
    tids = _PLAIN_IDS if plain else _mostly(_PLAIN_IDS, st.sampled_from(["12", "t"]))
    out = []
    for _ in range(draw(st.integers(0, 25))):
        e = {}
        for key, value in (
            ("ph", _mostly(st.just("X"), st.sampled_from(["i", "M", "f"]))),
            ("cat", _mostly(st.sampled_from(_CATS), st.none())),
            ("name", st.sampled_from(_NAMES)),
            ("pid", tids), ("tid", tids),
            ("ts", _TS if plain else _ANY_TS),
            ("dur", _DUR),
            ("args", _mostly(st.fixed_dictionaries({}, optional={
                k: ids for k in ("correlation", "stream", "device", "bytes")}),
                st.one_of(st.none(), st.sampled_from([[1], "x", 3])))),
        ):
            if draw(st.integers(0, 19)) > 0:  # each key missing one time in twenty
                e[key] = draw(value)
        out.append(e)
    return out


def _build(data: bytes, events: list) -> tuple:
    b = K.Builder("slice.json")
    try:
        b.add(events, lambda: decode_events(data, precise=True))
    except (TraceFormatError, msgspec.ValidationError) as exc:  # (the latter: a decimal re-decode)
        return None, f"{type(exc).__name__}: {exc}"
    names = list(b.codes)
    tables = {k: K._table(k, K.SCHEMAS[k], b.parts[k], names).to_polars() for k in K.SCHEMAS}
    counters = (b.events, b.no_ts, b.no_dur, b.bad_args, list(b.skipped.items()), names)
    return (counters, tables), None


def _both(doc: list[dict]) -> tuple[_Counting, tuple, tuple]:
    data = json.dumps(doc).encode()
    try:
        events = decode_events(data)
    except Exception:  # noqa: BLE001 - a slice the reader rejects before building: not ours
        return None, None, None
    with _counted() as c:
        fast = _build(data, events)
    with _pure():
        slow = _build(data, events)
    return c, fast, slow


def _assert_same(fast, slow) -> None:
    (f, ferr), (s, serr) = fast, slow
    assert ferr == serr
    if f is None:
        return
    assert f[0] == s[0]  # counters, skipped categories in order, names in code order
    for key in f[1]:
        assert_frame_equal(f[1][key], s[1][key], check_dtypes=True)


@needs_ext
@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans().flatmap(_events))
def test_generated_slices_read_the_same_both_ways(doc):
    c, fast, slow = _both(doc)
    if c is not None:
        _assert_same(fast, slow)


def _kernel(i: int, **kw) -> dict:
    e = {"ph": "X", "cat": "kernel", "name": f"k{i % 2}", "pid": 0, "tid": 7, "ts": 10.0 + i,
         "dur": 0.5, "args": {"device": 0, "stream": 7, "correlation": i, "bytes": None}}
    e.update(kw)
    return e


def _launch(i: int, **kw) -> dict:
    e = {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 0, "tid": 3,
         "ts": 9.0 + i, "dur": 0.25, "args": {"correlation": i}}
    e.update(kw)
    return e


TAKEN = {
    "plain": [_kernel(0), _launch(0), {"ph": "i", "name": "x", "ts": 1}],
    "nulls and unknowns": [_kernel(0, dur=None, args=None, pid=None),
                           _launch(1, tid=None, args={"correlation": None}),
                           {"ph": "X", "cat": "mystery", "name": "m", "ts": 3.0},
                           {"ph": "X", "cat": "kernel", "name": "k", "ts": None}],
    "args not an object": [_kernel(0, args=[1, 2]), _launch(0, args="x"),
                           {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 5.0,
                            "tid": 3, "args": 7}],
    "ids out of range": [_kernel(0, args={"device": 2**31, "stream": 2**64,
                                          "correlation": -(2**63) - 1, "bytes": 2**63}),
                         _launch(0, tid=2**63)],
    "a sync and a launch in one call": [_launch(0, name="cudaMemcpy"),
                                        {"ph": "X", "cat": "cuda_sync", "name": "sync",
                                         "ts": 4.0, "tid": 1}],
    "no ph (plain decode)": [_kernel(0), {"cat": "kernel", "name": "k", "ts": 2.0}],
    "a range error": [_kernel(0, dur=4.7e15)],
}
DECLINED = {
    "a string tid": [_launch(0, tid="12")],
    "a float correlation": [_kernel(0, args={"correlation": 1.0})],
    "a boolean stream": [_kernel(0, args={"stream": True})],
    "a timestamp that needs a decimal": [_kernel(0, ts=2.0**43)],
    "ProfilerStep as a cpu_op": [{"ph": "X", "cat": "cpu_op", "name": "ProfilerStep#3",
                                  "ts": 1.0, "tid": 1}],
}


@needs_ext
@pytest.mark.parametrize(("doc", "tally"), [
    *(pytest.param(d, (1, 0), id=f"takes {k}") for k, d in TAKEN.items()),
    *(pytest.param(d, (0, 1), id=f"declines {k}") for k, d in DECLINED.items()),
])
def test_slices_the_compiled_pass_takes_or_declines(doc, tally):
    c, fast, slow = _both(doc)
    assert (c.took, c.declined) == tally
    _assert_same(fast, slow)


@needs_ext
def test_a_declined_slice_leaves_the_builder_as_it_was():
    """Declining after the first pass has read half a slice must not have coded any name."""
    data = json.dumps([_kernel(0, name="first"), _launch(0, tid="x")]).encode()
    b = K.Builder("slice.json")
    assert not b._scan(decode_events(data))
    assert (b.codes, b.skipped, b.no_ts, b.no_dur, b.bad_args) == ({}, {}, 0, 0, 0)
    assert all(not p for p in b.parts.values())


def _moved_field():
    """The spec as it would be if msgspec laid a field out otherwise: not a plain object slot."""
    spec = list(K.scan_spec())
    spec[6] = (property(lambda a: a.correlation), *spec[6][1:])  # Args.correlation
    return tuple(spec)


def _missing_field():
    """... or kept it somewhere the class's __dict__ does not show."""
    return (*K.scan_spec()[:6], tuple(Args.__dict__[f] for f in ("correlation", "no such")))


@needs_ext
@pytest.mark.parametrize("spec", [_moved_field, _missing_field])
def test_a_struct_layout_the_compiled_pass_cannot_read_turns_it_off(spec):
    """The C pass reads msgspec's structs by slot offset; if a msgspec release laid them out
    otherwise, the pass would raise on every slice (a TypeError from its spec check, or a
    KeyError building the spec). The check runs once, at import: the pass is then off, with a
    one-line reason, and the Python passes read every slice."""
    with pytest.raises((TypeError, KeyError)):
        EXT.scan([], spec(), {}, {}, {})  # what each slice would have raised
    module, got, why = K.compiled_pass(spec)
    assert module is None and got is None
    assert why.startswith("msgspec's struct layout is not what _columns.c reads") and "\n" not in why
    assert K.compiled_pass()[0] is EXT  # the layout as shipped passes the same check
