"""The Kineto reader's columns are exactly the tables a plain ``json.load`` oracle builds.

The reader keeps numpy columns (:mod:`tracekit.trace.table`) and never imports polars; the polars
tables users see (``trace.gpu_ops`` …) are built from them on first use. Here those tables are
compared, dtypes and nulls included (``assert_frame_equal``), with tables built row by row from
the JSON by a few lines of plain Python written from the format's rules (``docs/reading.md``):

* a synthetic trace with every awkward value: ids as strings, floats, booleans and out of range,
  ``args`` that is not an object, missing ``dur``/``ts``/``args``, old category spellings, a
  ``ProfilerStep#`` written as a ``cpu_op`` — read whole, streamed in tiny slices, and with the
  worker process;
* committed traces (the bundled sample, a CUDA-graphs one, HTA's peer trace);
* neither the read path nor the worker imports polars.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from tracekit.trace import load
from tracekit.trace.names import is_sync_call, launch_kind

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

GPU = {"kernel": "kernel", "gpu_memcpy": "memcpy", "memcpy": "memcpy", "gpu_memset": "memset",
       "memset": "memset"}
API = {"cuda_runtime": "runtime", "runtime": "runtime", "cuda_driver": "driver",
       "driver": "driver", "cuda_sync": None}


def _int(v, bits: int = 64):
    """An id: an int (not a bool), an integral number or a string of digits, in range; else None."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, Decimal):
        v = int(v) if v == v.to_integral_value() else None
    elif isinstance(v, str):
        v = int(v) if re.fullmatch(r"-?[0-9]+", v) else None  # ASCII digits: '²'.isdigit() too
    if isinstance(v, int) and -(2 ** (bits - 1)) <= v < 2 ** (bits - 1):
        return v
    return None


def _bytes(v):
    """A byte count: a whole number from 0 to 2**63 (a negative count is unknown, not a size)."""
    if isinstance(v, Decimal):  # a float byte count is truncated, as int() does
        return int(v) if v.is_finite() and 0 <= v < 2**63 else None
    v = _int(v)
    return v if v is None or v >= 0 else None


def _ns(us) -> int:
    return int((Decimal(us) * 1000).to_integral_value(ROUND_HALF_EVEN))


def _oracle(doc) -> dict[str, pl.DataFrame]:
    events = doc if isinstance(doc, list) else doc["traceEvents"]
    rows: dict[str, list] = {k: [] for k in ("gpu_ops", "launches", "annotations", "syncs",
                                             "cpu_ops")}
    for e in events:
        if e.get("ph") != "X" or e.get("ts") is None or not isinstance(e.get("cat"), str):
            continue
        cat, name = e["cat"].lower(), e.get("name", "")
        start = _ns(e["ts"])
        end = start + _ns(max(e.get("dur") or 0, 0))
        args = e["args"] if isinstance(e.get("args"), dict) else {}
        tid = _int(e.get("tid"))
        if cat in GPU:
            dev = args.get("device")
            stream = args.get("stream")
            rows["gpu_ops"].append({
                "kind": GPU[cat], "name": name, "start_ns": start, "end_ns": end,
                "device": _int(dev if dev is not None else e.get("pid"), 32),
                "stream": _int(stream if stream is not None else e.get("tid")),
                "correlation": _int(args.get("correlation")), "bytes": _bytes(args.get("bytes")),
                "grid": None, "block": None})
        elif cat in API:
            kind = launch_kind(name) if cat != "cuda_sync" else None
            if kind is not None:
                rows["launches"].append({
                    "kind": kind, "api": API[cat], "name": name, "start_ns": start,
                    "end_ns": end, "tid": tid, "correlation": _int(args.get("correlation"))})
            if cat == "cuda_sync" or is_sync_call(name):
                rows["syncs"].append({"name": name, "start_ns": start, "end_ns": end, "tid": tid})
        elif cat in ("user_annotation", "gpu_user_annotation") or (
                cat in ("cpu_op", "operator") and name.startswith("ProfilerStep#")):
            rows["annotations"].append({"name": name, "start_ns": start, "end_ns": end,
                                        "on_gpu": cat == "gpu_user_annotation", "tid": tid})
        elif cat in ("cpu_op", "operator"):
            rows["cpu_ops"].append({"name": name, "start_ns": start, "end_ns": end, "tid": tid})
    schemas = {
        "gpu_ops": {"kind": pl.Utf8, "name": pl.Utf8, "start_ns": pl.Int64, "end_ns": pl.Int64,
                    "device": pl.Int32, "stream": pl.Int64, "correlation": pl.Int64,
                    "bytes": pl.Int64, "grid": pl.Utf8, "block": pl.Utf8},
        "launches": {"kind": pl.Utf8, "api": pl.Utf8, "name": pl.Utf8, "start_ns": pl.Int64,
                     "end_ns": pl.Int64, "tid": pl.Int64, "correlation": pl.Int64},
        "annotations": {"name": pl.Utf8, "start_ns": pl.Int64, "end_ns": pl.Int64,
                        "on_gpu": pl.Boolean, "tid": pl.Int64},
        "syncs": {"name": pl.Utf8, "start_ns": pl.Int64, "end_ns": pl.Int64, "tid": pl.Int64},
        "cpu_ops": {"name": pl.Utf8, "start_ns": pl.Int64, "end_ns": pl.Int64, "tid": pl.Int64},
    }
    return {k: pl.DataFrame(rows[k], schema=schemas[k], orient="row") for k in rows}


def _check(trace, want: dict[str, pl.DataFrame]) -> None:
    for key, frame in want.items():
        got = getattr(trace, key)
        assert_frame_equal(got, frame, check_dtypes=True)
        assert got.schema == frame.schema, key


def _awkward() -> list[dict]:
    ev = []
    t = 1_000_000
    for i in range(40):
        ev += [
            {"ph": "X", "cat": "kernel", "name": f"k{i % 3}", "pid": 0, "tid": 7, "ts": t + 0.5,
             "dur": 1.25, "args": {"device": 0, "stream": 7, "correlation": i}},
            {"ph": "X", "cat": "Kernel", "name": "old", "pid": 1, "tid": "9", "ts": t + 1,
             "dur": 2},  # no args: device and stream from pid/tid, correlation unknown
            {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy HtoD", "pid": 0, "tid": 7,
             "ts": t + 2, "dur": 3, "args": {"bytes": [1024, 1.5e3, "12", True, -1][i % 5],
                                             "device": [0, 1.0, "2", 2**40, "gpu"][i % 5],
                                             "correlation": [str(i), float(i), None, True,
                                                             2**63][i % 5]}},
            {"ph": "X", "cat": "Memset", "name": "Memset", "pid": "x", "tid": 2**63,
             "ts": t + 3},  # no dur: an instant
            {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1,
             "tid": [2, "12", "t", None][i % 4], "ts": t, "dur": 1,
             "args": {"correlation": [i, str(i), 1.5][i % 3]}},
            {"ph": "X", "cat": "cuda_driver", "name": "cuLaunchKernel_v2", "pid": 1, "tid": 2,
             "ts": t + 4, "dur": 1, "args": [1, 2]},  # args not an object
            {"ph": "X", "cat": "Runtime", "name": "cudaGraphLaunch", "pid": 1, "tid": 2,
             "ts": t + 5, "dur": 1, "args": {"correlation": 10_000 + i}},
            {"ph": "X", "cat": "cuda_runtime", "name": "cudaMemcpy", "pid": 1, "tid": 2,
             "ts": t + 6, "dur": 1, "args": {"correlation": 20_000 + i}},  # launch and sync
            {"ph": "X", "cat": "cuda_sync", "name": "Stream Sync", "pid": 1, "tid": 2,
             "ts": t + 7, "dur": 1},
            {"ph": "X", "cat": "cpu_op", "name": f"ProfilerStep#{i}", "pid": 1, "tid": 2,
             "ts": t, "dur": 90},
            {"ph": "X", "cat": "gpu_user_annotation", "name": "decode", "pid": 0, "tid": 7,
             "ts": t, "dur": 50},
            {"ph": "X", "cat": "user_annotation", "name": "日本語😀", "pid": 1, "tid": 2,
             "ts": t, "dur": 50},
            {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": 1, "tid": 3, "ts": t + 1,
             "dur": -4, "args": "x"},  # a negative duration is read as 0
            {"ph": "X", "cat": "operator", "name": "aten::add", "pid": 1, "tid": 3, "ts": t + 8},
            {"ph": "X", "cat": "weird", "name": "w", "pid": 1, "tid": 3, "ts": t},
            {"ph": "X", "cat": "cpu_op", "name": "no ts", "pid": 1, "tid": 3},
            {"ph": "i", "cat": "cpu_op", "name": "instant", "pid": 1, "tid": 3, "ts": t},
        ]
        t += 100
    return ev


def test_awkward_values_match_the_oracle(tmp_path: Path) -> None:
    doc = {"traceEvents": _awkward(), "deviceProperties": [{"id": 0, "name": "GPU zero"}]}
    data = json.dumps(doc).encode()
    p = tmp_path / "t.json"
    p.write_bytes(data)
    want = _oracle(json.loads(data, parse_float=Decimal))
    assert want["gpu_ops"]["device"].null_count() > 0  # the oracle has nulls to compare
    assert want["launches"]["tid"].null_count() > 0
    whole = load(p)
    assert "one decode" in whole.notes[0]
    _check(whole, want)
    streamed = load(p, slice_bytes=700)
    assert streamed.notes[0].startswith("streamed"), streamed.notes
    _check(streamed, want)
    assert whole.meta["skipped_categories"] == {"weird": 40}


def _phases() -> list[dict]:
    """Complete events among flow, instant, counter and metadata events, keys in any order, some
    events with no ``ph`` or a phase outside the format, values only the plain decode checks."""
    ev = []
    t = 5_000_000
    for i in range(60):
        ev += [
            {"name": f"k{i % 4}", "args": {"correlation": i, "stream": 7, "device": 0},
             "dur": 2.5, "ts": t + 0.25, "tid": 7, "pid": 0, "cat": "kernel", "ph": "X"},
            {"ph": "s", "id": 2**70 + i, "pid": 1, "tid": 2, "ts": t, "cat": "ac2g",
             "name": "ac2g", "bp": "e"},
            {"ph": "f", "id": i, "pid": 0, "tid": 7, "ts": t + 0.25, "cat": "ac2g",
             "name": "ac2g", "bp": "e", "args": [1, {"x": None}]},
            {"cat": "cuda_runtime", "ph": "X", "name": "cudaLaunchKernel", "ts": t, "dur": 1,
             "pid": 1, "tid": 2, "args": {"correlation": i, "External id": 3}},
            {"name": "aten::mm", "ph": "X", "cat": "cpu_op", "ts": t - 1, "dur": 3, "pid": 1,
             "tid": 2, "args": {"Input Dims": [[1, 2], []], "Concrete Inputs": ["", "1"]}},
            {"ph": "C", "name": "mem", "pid": 0, "ts": t, "args": {"bytes": 1.5}},
            {"ph": "M", "name": "thread_name", "pid": 1, "tid": "x", "args": {"name": "t"}},
            {"ph": "i", "s": "g", "name": "mark", "pid": "", "tid": "", "ts": t},
        ]
        if i % 20 == 7:  # a slice holding one of these is decoded the plain way
            ev.append({"name": "no phase", "cat": "cpu_op", "ts": t, "dur": 1, "pid": 1,
                       "tid": 2})
            ev.append({"ph": "Z", "name": "unknown phase", "cat": "cpu_op", "ts": t, "dur": 1})
        t += 100
    return ev


def test_events_of_every_phase_match_the_oracle(tmp_path: Path) -> None:
    """Slices are decoded by phase (only complete events get fields); a slice with an event of
    no or another phase is decoded plainly. Either way the tables are the oracle's."""
    from tracekit.trace.decode import Complete, decode_events

    doc = {"traceEvents": _phases()}
    data = json.dumps(doc).encode()
    p = tmp_path / "t.json"
    p.write_bytes(data)
    want = _oracle(json.loads(data, parse_float=Decimal))
    assert want["gpu_ops"].height == want["launches"].height == 60
    _check(load(p), want)
    for size in (600, 5000):
        _check(load(p, slice_bytes=size), want)
    # which decode a slice got: by phase, unless an event has none or an unknown one
    events = json.dumps(_phases()[:16]).encode()
    assert {type(e) for e in decode_events(events) if e.ph == "X"} == {Complete}
    plain = json.dumps([*_phases()[:8], {"name": "no phase", "ts": 1}]).encode()
    assert Complete not in {type(e) for e in decode_events(plain)}


@pytest.mark.parametrize("path", [
    ROOT / "tracekit" / "data" / "sample_qwen2.5-7b_ctx2048_eager.json.gz",
    ROOT / "sample_traces" / "qwen2.5-7b_ctx2048_cuda-graphs.json.gz",
    ROOT / "sample_traces" / "peer" / "hta" / "triton_example.json.gz",
], ids=lambda p: p.name)
def test_committed_traces_match_the_oracle(path: Path) -> None:
    data = gzip.open(path).read()
    want = _oracle(json.loads(data, parse_float=Decimal))
    assert want["gpu_ops"].height > 0
    _check(load(path), want)
    _check(load(path, slice_bytes=len(data) // 4), want)


def test_reading_never_imports_polars(tmp_path: Path) -> None:
    from scale import write_scaled

    p = tmp_path / "x2.json.gz"
    write_scaled(ROOT / "sample_traces" / "qwen2.5-7b_ctx2048_cuda-graphs.json.gz", 2, p)
    code = ("import sys; from tracekit.trace import load; "
            "t = load(sys.argv[1], slice_bytes=int(sys.argv[3])); "
            "assert 'polars' not in sys.modules, 'polars imported'; "
            "assert t.notes[0].startswith(sys.argv[2]), t.notes; print(t.table('gpu_ops').height)")
    sample = ROOT / "tracekit" / "data" / "sample_qwen2.5-7b_ctx2048_eager.json.gz"
    for args in ([sample, "read", 1 << 30], [p, "streamed", 1 << 20]):
        r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert int(r.stdout) > 0


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.one_of(
    st.integers(-(2**31) - 2, 2**31 + 1), st.integers(-(2**64), 2**64),
    st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**31 - 1, 2**31, -(2**31)]),
    st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["12", "-3", "x", ""])), max_size=12), st.sampled_from([32, 64]),
    st.sampled_from(["any", "ints", "ints and None"]))
def test_ids_are_ints_in_range_or_null(values, bits, kinds):
    """An id column: the value where it is an int in range (or an integral float, a digit
    string), else null — whether the slice's ids are plain ints, ints and None (the quick paths)
    or anything."""
    from tracekit.trace.columns import _ints

    if kinds != "any":
        values = [v for v in values if type(v) is int or (kinds != "ints" and v is None)]
    cols, masks = {}, {}
    _ints(values, "id", cols, masks, bits=bits)
    want = [_int(Decimal(v) if isinstance(v, float) else v, bits) for v in values]
    valid = masks.get("id")
    got = [int(x) if valid is None or valid[i] else None for i, x in enumerate(cols["id"])]
    assert got == want
    assert cols["id"].dtype == (np.int32 if bits == 32 else np.int64)
