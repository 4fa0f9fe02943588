"""The hostile corpus: inputs built to crash, hang, fool or harm tracekit, made on demand.

Nothing here is stored as a file: every case is a small function that writes its input into a fresh
directory and returns the command line to run. ``tests/test_hostile.py`` runs each case over the CLI
in every output mode (plain, ``--json``, ``--html`` + ``--markdown``) in a child process with an
address-space limit and a timeout, and checks the contract of ``tracekit explain``:

* bad input → exit 1 (2 for a bad command line) and exactly one line, ``Error: …``;
* valid input → exit 0, numbers that obey the invariants (0 ≤ GPU busy ≤ latency per step, idle
  classes ≥ 0 and summing to idle);
* never a ``Traceback``, never a hang, bounded memory, never a file left behind (no partial report,
  no temp file beside it, nothing in ``$TMPDIR``), never a raw control or bidi character in what a
  terminal, a Markdown viewer or a browser shows.

``tracekit compare`` and ``tracekit annotate`` are held to the same contract (section 14): trace
strings in every medium they write, and their bad inputs.

Classes (the ``cls`` of a case) follow issue 10; ``owner`` says which part of the code the defence
lives in (``reader``: tracekit/trace/*, ``analysis``: steps/breakdown/explain/specs, ``cli``: the
command line, output files and rendering).

    python tests/hostile/corpus.py /tmp/corpus     # write every case's input, for a look by hand
"""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synth import BASE_US, Raw, _dumps, annotation, cpu_op, decode_steps, kernel, launch  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
H100 = "NVIDIA H100 80GB HBM3"


@dataclass
class Case:
    id: str
    cls: str
    owner: str
    make: Callable[[Path], list[str]]  # writes inputs into a directory, returns argv (after tracekit)
    expect: int = 1  # exit code: 0 valid, 1 bad input, 2 bad usage
    modes: tuple[str, ...] = ("text", "json")  # text: the terminal report plus --html/--markdown
    error: str | None = None  # a substring the Error line must hold
    check: Callable[[dict], None] | None = None  # extra checks on the --json document
    stdin: str | None = None  # a file (in the case directory) piped to stdin
    timeout_s: float = 30.0
    max_rss_mb: int = 1200
    slow: bool = False
    root_skip: bool = False  # meaningless as root (permissions do not apply)
    tags: set[str] = field(default_factory=set)
    writes: tuple[str, ...] = ()  # files a valid run writes besides --html/--markdown (annotate -o)
    #: a valid run must warn, naming the field (a substring of one warning, on stderr or in the
    #: --json document's warnings); a value tracekit cannot use is never dropped silently
    warns: str | None = None
    #: a valid run must give no warning holding this (our own files warn about nothing)
    no_warning: str | None = None


CASES: list[Case] = []


def case(cls: str, owner: str, **kw):
    def deco(fn: Callable[[Path], list[str]]):
        CASES.append(Case(id=fn.__name__.removeprefix("c_"), cls=cls, owner=owner, make=fn, **kw))
        return fn
    return deco


def add(id: str, cls: str, owner: str, make: Callable[[Path], list[str]], **kw) -> None:
    CASES.append(Case(id=id, cls=cls, owner=owner, make=make, **kw))


# -- helpers ----------------------------------------------------------------------------------
def doc(events: list, **extra) -> dict:
    d = {"schemaVersion": 1, "deviceProperties": [{"id": 0, "name": H100}], "traceEvents": events}
    d.update(extra)
    return d


def good_events(n: int = 4) -> list[dict]:
    return decode_steps(n, kernels_per_step=4)


def write_json(d: Path, obj, name: str = "t.json", gz: bool = False) -> Path:
    text = _dumps(obj).encode()
    p = d / name
    p.write_bytes(gzip.compress(text) if gz else text)
    return p


def trace_bytes(d: Path, data: bytes, name: str = "t.json") -> list[str]:
    (d / name).write_bytes(data)
    return ["explain", name]


def trace_doc(obj, name: str = "t.json", gz: bool = False, extra_args: tuple = ()):
    def make(d: Path) -> list[str]:
        write_json(d, obj, name, gz)
        return ["explain", name, *extra_args]
    return make


def good_trace(d: Path, name: str = "t.json.gz", events: list | None = None, **extra) -> str:
    write_json(d, doc(events if events is not None else good_events(), **extra), name, gz=True)
    return name


def with_event(ev: dict, n: int = 4) -> dict:
    return doc(good_events(n) + [ev])


def step_checks(doc_: dict) -> None:
    """Invariants every explained trace obeys (per step and in the summary)."""
    for s in doc_["steps"]:
        lat, busy, idle = s["latency_ms"], s["gpu_busy_ms"], s["idle_ms"]
        if busy is None:
            continue
        assert busy >= -1e-9, f"step {s['step']}: negative GPU busy {busy}"
        if lat is not None:
            assert lat > 0, f"step {s['step']}: latency {lat}"
            assert busy <= lat + 1e-9, f"step {s['step']}: busy {busy} > latency {lat}"
        classes = s["idle_by_class_ms"]
        assert all(v is None or v >= -1e-9 for v in classes.values()), classes
        if lat is not None:  # busy (a union) and idle (a walk over the gaps) are found apart
            assert abs(busy + idle - lat) < 1e-6, f"step {s['step']}: {busy} + {idle} != {lat}"
    dec = doc_["decomposition"]
    if dec.get("launch_overhead_ms") is not None:
        assert dec["launch_overhead_ms"] >= -1e-9
    for k, v in (doc_.get("whatif") or {}).items():
        if k.endswith(("_ms", "_speedup")) and isinstance(v, (int, float)):
            assert v > 0, (k, v)


def busy_is(expected_ms: list[float | None]) -> Callable[[dict], None]:
    def check(d: dict) -> None:
        step_checks(d)
        got = [s["gpu_busy_ms"] for s in d["steps"]][: len(expected_ms)]
        for g, e in zip(got, expected_ms):
            if e is not None:
                assert g is not None and abs(g - e) < 1e-6, (got, expected_ms)
    return check


# == 1. JSON decoding (reader) ================================================================
R = "reader"


def _deep(n: int, open_: bytes = b"[", close: bytes = b"]") -> bytes:
    return open_ * n + close * n


add("deep_nesting_events", "json-decode", R, lambda d: trace_bytes(
    d, b'{"traceEvents": ' + _deep(200_000) + b"}"))
add("deep_nesting_args", "json-decode", R, lambda d: trace_bytes(
    d, b'{"traceEvents": [{"ph": "X", "cat": "kernel", "name": "k", "ts": 1, "dur": 1, "args": '
    + _deep(200_000) + b"}]}"))
add("deep_nesting_objects", "json-decode", R, lambda d: trace_bytes(
    d, b'{"traceEvents": [], "x": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"}"))
add("deep_nesting_toplevel", "json-decode", R, lambda d: trace_bytes(d, _deep(300_000)))
add("invalid_utf8_name", "json-decode", R, lambda d: trace_bytes(
    d, _dumps(doc(good_events())).encode().replace(b'"k0"', b'"k\xff\xfe0"', 1)))
add("invalid_utf8_cat", "json-decode", R, lambda d: trace_bytes(
    d, _dumps(doc(good_events())).encode().replace(b'"kernel"', b'"ker\xc3nel"', 1)))
add("invalid_utf8_key", "json-decode", R, lambda d: trace_bytes(
    d, _dumps(doc(good_events())).encode().replace(b'"args"', b'"ar\x80gs"', 1)), expect=-1)
add("lone_surrogate_name", "json-decode", R, lambda d: trace_bytes(
    d, _dumps(doc(good_events())).encode().replace(b'"k0"', b'"k\\ud800"', 1)), expect=-1,
    check=step_checks)
add("nul_in_name", "json-decode", R, lambda d: trace_bytes(
    d, _dumps(doc(good_events())).encode().replace(b'"k0"', b'"k\\u00000"')), expect=0,
    check=step_checks)
add("utf8_bom", "json-decode", R, lambda d: trace_bytes(
    d, b"\xef\xbb\xbf" + _dumps(doc(good_events())).encode()))
add("utf16_file", "json-decode", R, lambda d: trace_bytes(
    d, _dumps(doc(good_events())).encode("utf-16")))
add("trailing_garbage", "json-decode", R, lambda d: trace_bytes(
    d, _dumps(doc(good_events())).encode() + b"\x00garbage"), error="not valid JSON")
add("nan_literal", "json-decode", R, lambda d: trace_bytes(
    d, _dumps(doc(good_events())).encode().replace(b'"dur": 2', b'"dur": NaN', 1)))
add("huge_exponent_ts", "json-decode", R, lambda d: trace_bytes(
    d, _dumps(doc(good_events())).encode().replace(b'"dur": 2', b'"dur": 1e400', 1)))
add("traceevents_object", "json-decode", R, trace_doc({"traceEvents": {"a": 1}}))
add("traceevents_null", "json-decode", R, trace_doc({"traceEvents": None}))
add("traceevents_string", "json-decode", R, trace_doc({"traceEvents": "x" * 1000}))
add("event_is_number", "json-decode", R, trace_doc({"traceEvents": [1, 2, 3]}))
add("event_is_null", "json-decode", R, trace_doc({"traceEvents": [None] * 10}))
add("event_name_object", "json-decode", R, trace_doc(with_event(
    {"ph": "X", "cat": "kernel", "name": {"a": 1}, "ts": 5, "dur": 1})))
add("event_ts_string", "json-decode", R, trace_doc(with_event(
    {"ph": "X", "cat": "kernel", "name": "k", "ts": "12", "dur": 1})))
add("event_ph_number", "json-decode", R, trace_doc(with_event(
    {"ph": 7, "cat": "kernel", "name": "k", "ts": 5, "dur": 1})))
add("toplevel_array_of_junk", "json-decode", R, trace_doc([[1], {"a": 2}, "x"]))
add("toplevel_string", "json-decode", R, trace_doc("traceEvents"))
add("toplevel_number", "json-decode", R, trace_doc(12345))
add("toplevel_null", "json-decode", R, trace_doc(None))
add("whitespace_only", "json-decode", R, lambda d: trace_bytes(d, b" \n\t" * 10_000),
    error="empty")
add("device_properties_junk", "json-decode", R, trace_doc(doc(
    good_events(), deviceProperties="gpu")))
add("device_properties_items_junk", "json-decode", R, trace_doc(doc(
    good_events(), deviceProperties=[1, None, {"name": 5}, {"id": "x", "name": "A"}])), expect=-1,
    check=step_checks)
add("many_unknown_categories", "json-decode", R, trace_doc(doc(good_events() + [
    {"ph": "X", "cat": f"c{i}", "name": "x", "ts": 1, "dur": 1} for i in range(20_000)])),
    expect=0, check=step_checks)
add("unhashable_args_types", "json-decode", R, trace_doc(with_event(
    {"ph": "X", "cat": "kernel", "name": "k", "ts": 5, "dur": 1,
     "args": {"device": [0], "stream": {"a": 1}}})))

# == 2. Numbers the tables cannot hold (reader) ===============================================
NUM = "int-overflow"


def _k(**kw) -> dict:
    e = {"ph": "X", "cat": "kernel", "name": "kx", "pid": 0, "tid": 7, "ts": Raw(str(BASE_US + 3)),
         "dur": 1, "args": {"device": 0, "stream": 7, "correlation": 99_999}}
    args = kw.pop("args", None)
    e.update(kw)
    if args:
        e["args"].update(args)
    return e


for _id, _ev in {
    "ts_1e300": _k(ts=Raw("1e300")),
    "ts_minus_1e300": _k(ts=Raw("-1e300")),
    "ts_2_pow_64": _k(ts=Raw(str(2**64))),
    "ts_2_pow_80_fraction": _k(ts=Raw(str(2**80) + ".5")),
    "dur_1e300": _k(dur=Raw("1e300")),
    "dur_2_pow_70": _k(dur=Raw(str(2**70))),
    "dur_negative": _k(dur=-5),
    "pid_2_pow_40": _k(pid=2**40, args={"device": None}),
    "tid_2_pow_70": _k(tid=2**70, args={"stream": None}),
    "stream_2_pow_63": _k(args={"stream": 2**63}),
    "stream_minus_2_pow_63": _k(args={"stream": -(2**63) - 1}),
    "device_2_pow_64": _k(args={"device": 2**64}),
    "correlation_2_pow_64": _k(args={"correlation": 2**64}),
    "bytes_1e300": {**_k(cat="gpu_memcpy", name="Memcpy DtoD"), "args": {"bytes": 1e300}},
    "bytes_2_pow_70": {**_k(cat="gpu_memcpy", name="Memcpy DtoD"), "args": {"bytes": 2**70}},
}.items():
    add(_id, NUM, R, trace_doc(with_event(_ev)), expect=-1)  # -1: exit 0 or 1, never a crash

add("base_time_2_pow_80", NUM, R, trace_doc(doc(good_events(), baseTimeNanoseconds=2**80)),
    expect=-1)
add("device_id_2_pow_70", NUM, R, trace_doc(doc(
    good_events(), deviceProperties=[{"id": 2**70, "name": H100, "totalGlobalMem": 1e400}])),
    expect=-1)
add("schema_version_huge", NUM, R, trace_doc(doc(good_events(), schemaVersion=2**90)), expect=-1)

# == 3. args of the wrong type (reader) =======================================================
ARGS = "args-types"
for _id, _args in {
    "correlation_string": {"correlation": "12"},
    "correlation_float": {"correlation": 12.5},
    "correlation_bool": {"correlation": True},
    "correlation_list": {"correlation": [1]},
    "stream_float": {"stream": 7.5},
    "device_string": {"device": "cuda:0"},
    "bytes_string": {"bytes": "many"},
}.items():
    add(_id, ARGS, R, trace_doc(with_event(_k(args=_args))), expect=-1)
for _id, _a in {"args_list": [1, 2], "args_string": "x", "args_number": 5, "args_null": None}.items():
    add(_id, ARGS, R, trace_doc(with_event({**_k(), "args": _a})), expect=-1)

# == 4. The embedded tracekit metadata (reader) ===============================================
META = "tracekit-metadata"
_GOOD_MODEL = {"name": "m", "family": "llama", "layers": 2, "hidden": 64, "intermediate": 128,
               "heads": 4, "kv_heads": 2, "head_dim": 16, "vocab": 1000}
for _id, _meta in {
    "meta_list": [1, 2],
    "meta_string": "tracekit",
    "meta_model_string": {"model": "qwen2.5-7b", "ctx": 10},
    "meta_model_bad_types": {"model": {**_GOOD_MODEL, "layers": "many"}, "ctx": 10},
    "meta_model_zero_heads": {"model": {**_GOOD_MODEL, "heads": 0, "kv_heads": 0}, "ctx": 10},
    "meta_model_negative": {"model": {**_GOOD_MODEL, "layers": -3}, "ctx": 10},
    "meta_model_huge": {"model": {**_GOOD_MODEL, "layers": 2**70}, "ctx": 10},
    "meta_ctx_string": {"model": _GOOD_MODEL, "ctx": "2048"},
    "meta_ctx_negative": {"model": _GOOD_MODEL, "ctx": -5},
    "meta_ctx_huge": {"model": _GOOD_MODEL, "ctx": 10**30},
    "meta_dtype_unknown": {"model": _GOOD_MODEL, "ctx": 10, "dtype": "fp3"},
    "meta_dtype_number": {"model": _GOOD_MODEL, "ctx": 10, "dtype": 16},
    "meta_versions_list": {"versions": [1, 2], "timing": "fast"},
    "meta_bandwidth_junk": {"model": _GOOD_MODEL, "ctx": 10, "copy_bandwidth_gbps": "fast"},
    "meta_bandwidth_negative": {"model": _GOOD_MODEL, "ctx": 10, "copy_bandwidth_gbps": -1},
    "meta_capture_keys_junk": {"mode": {"a": 1}, "command": 5, "created": [1],
                               "profiler_overhead_ratio": "x"},
}.items():
    add(_id, META, R, trace_doc(doc(good_events(), tracekit=_meta)), expect=-1)

# == 5. Valid traces whose numbers were wrong (analysis) ======================================
A = "analysis"
VAL = "wrong-numbers"


def _steps_with(extra: list[dict], n: int = 4) -> list[dict]:
    return good_events(n) + extra


# a step's op that runs on another stream after the next step's first op (a late memcpy)
add("op_crosses_step_boundary", VAL, A, trace_doc(doc(_steps_with([
    launch("cudaMemcpyAsync", 20, 1, 9001),
    kernel("Memcpy DtoH (Device -> Pinned)", 150, 30, 9001, stream=9, cat="gpu_memcpy"),
]))), expect=0, check=step_checks)
add("op_starts_after_next_step_and_ends_later", VAL, A, trace_doc(doc(_steps_with([
    launch("cudaLaunchKernel", 30, 1, 9002),
    kernel("late_kernel", 250, 120, 9002, stream=9),
]))), expect=0, check=step_checks)
add("multi_stream_overlap", VAL, A, trace_doc(doc(_steps_with([
    x for i in range(4) for x in (
        launch("cudaLaunchKernel", i * 100 + 2, 1, 8000 + i),
        kernel("side_kernel", i * 100 + 4, 60, 8000 + i, stream=11))]))),
    expect=0, check=step_checks)
add("multi_device", VAL, A, trace_doc(doc(_steps_with([
    x for i in range(4) for x in (
        launch("cudaLaunchKernel", i * 100 + 3, 1, 7000 + i),
        kernel("dev1_kernel", i * 100 + 6, 20, 7000 + i, device=1, stream=3))]),
    deviceProperties=[{"id": 0, "name": H100}, {"id": 1, "name": "NVIDIA A100-SXM4-80GB"}])),
    expect=0, check=step_checks)
add("zero_length_ops", VAL, A, trace_doc(doc(decode_steps(4, kernels_per_step=4, kernel_us=0))),
    expect=-1, check=step_checks)


def _missing_dur(d: Path) -> list[str]:
    ev = good_events()
    for e in ev:
        if e["cat"] == "kernel" and e["name"] == "k1":
            del e["dur"]
    write_json(d, doc(ev))
    return ["explain", "t.json"]


add("missing_dur", VAL, A, _missing_dur, expect=0, check=step_checks)


def _same_start(d: Path) -> list[str]:
    # every step's first op starts at the same instant: zero latency, no division by it
    ev = []
    for i in range(4):
        ev.append(annotation(f"step#{i}", i * 10, 9))
        ev.append(launch("cudaLaunchKernel", i * 10 + 1, 1, i + 1))
        ev.append(kernel("k0", 100, 5, i + 1, stream=7 + i))
    write_json(d, doc(ev))
    return ["explain", "t.json"]


add("zero_median_latency", VAL, A, _same_start, expect=-1, check=step_checks)


def _reverse_order(d: Path) -> list[str]:
    # step i+1's first op runs before step i's: the next step's start precedes this one's
    ev = []
    for i in range(4):
        ev.append(annotation(f"step#{i}", i * 10, 9))
        ev.append(launch("cudaLaunchKernel", i * 10 + 1, 1, i + 1))
        ev.append(kernel("k0", 1000 - i * 100, 5, i + 1))
    write_json(d, doc(ev))
    return ["explain", "t.json"]


add("steps_run_in_reverse", VAL, A, _reverse_order, expect=-1, check=step_checks)


def _duplicate_corr(d: Path) -> list[str]:
    ev = good_events()
    for e in ev:
        if isinstance(e.get("args"), dict) and "correlation" in e["args"]:
            e["args"]["correlation"] = 1
    write_json(d, doc(ev))
    return ["explain", "t.json"]


add("one_correlation_for_all", VAL, A, _duplicate_corr, expect=-1, check=step_checks)
add("ops_before_first_step", VAL, A, trace_doc(doc(_steps_with([
    launch("cudaLaunchKernel", -50, 1, 6001), kernel("warm", -48, 200, 6001, stream=3)]))),
    expect=0, check=step_checks)


def _graph_spill(d: Path) -> list[str]:
    # graph replays whose last kernel runs past the next replay's first kernel (another stream)
    ev = []
    for i in range(5):
        t = i * 100
        ev.append(launch("cudaGraphLaunch", t, 3, 500 + i))
        ev.append(kernel("g_a", t + 5, 10, 500 + i))
        ev.append(kernel("g_b", t + 16, 10, 500 + i))
        ev.append(kernel("g_tail", t + 30, 150, 500 + i, stream=9))
    write_json(d, doc(ev))
    return ["explain", "t.json"]


add("graph_replay_spills_into_next", VAL, A, _graph_spill, expect=0, check=step_checks)
_HTA = REPO / "sample_traces/peer/hta/rank0.json.gz"
add("hta_rank0_peer_trace", VAL, A, lambda d: ["explain", str(_HTA)], expect=0, check=step_checks,
    max_rss_mb=2000, timeout_s=120)

# == 6. Old format and training (analysis) ====================================================
OLD = "old-format-training"


def _old_format(training: bool):
    def make(d: Path) -> list[str]:
        # PyTorch 1.8-1.9: cat "Operator"/"Runtime"/"Kernel", absolute integer µs
        t0, ev, corr = 1_620_000_000_000_000, [], 1
        names = (["sgemm_fwd", "relu_fwd", "conv_bwd_kernel", "wgrad_backward_kernel",
                  "multi_tensor_apply_kernel"] if training else ["gemv", "rmsnorm", "attn_decode"])
        for i in range(5, 11):
            s = t0 + (i - 5) * 1000
            ev.append({"ph": "X", "cat": "Operator", "name": f"ProfilerStep#{i}", "pid": 1, "tid": 1,
                       "ts": s, "dur": 900, "args": {}})
            if training:
                ev.append({"ph": "X", "cat": "Operator", "name": "Optimizer.step#SGD.step",
                           "pid": 1, "tid": 1, "ts": s + 700, "dur": 100, "args": {}})
                ev.append({"ph": "X", "cat": "Operator",
                           "name": "autograd::engine::evaluate_function: ConvolutionBackward0",
                           "pid": 1, "tid": 1, "ts": s + 400, "dur": 100, "args": {}})
            for j, name in enumerate(names):
                ev.append({"ph": "X", "cat": "Runtime", "name": "cudaLaunchKernel", "pid": 1,
                           "tid": 1, "ts": s + 10 + 50 * j, "dur": 5, "args": {"correlation": corr}})
                ev.append({"ph": "X", "cat": "Kernel", "name": name, "pid": 0, "tid": 7,
                           "ts": s + 20 + 50 * j, "dur": 30,
                           "args": {"correlation": corr, "device": 0, "stream": 7}})
                corr += 1
        write_json(d, doc(ev))
        return ["explain", "t.json"]
    return make


def _old_ok(d: dict) -> None:
    step_checks(d)
    assert d["source"]["detection_method"] == "profiler_step", d["source"]["detection_detail"]
    assert d["source"]["decode_steps"] >= 5


def _training_ok(d: dict) -> None:
    _old_ok(d)
    assert d["summary"]["tokens_per_s"] is None
    assert any("training" in w for w in d["warnings"]), d["warnings"]


add("pytorch_1_8_inference", OLD, A, _old_format(False), expect=0, check=_old_ok)
add("pytorch_1_8_training", OLD, A, _old_format(True), expect=0, check=_training_ok)

# == 7. Hangs and unbounded work from small inputs (analysis) =================================
HANG = "hang"


def _graph_launches(n: int):
    def make(d: Path) -> list[str]:
        ev = []
        for i in range(n):
            ev.append(launch("cudaGraphLaunch", i * 20, 2, i + 1))
            ev.append(kernel("g", i * 20 + 3, 5, i + 1))
        write_json(d, doc(ev), "t.json.gz", gz=True)
        return ["explain", "t.json.gz"]
    return make


add("graph_launches_100k", HANG, A, _graph_launches(100_000), expect=0, check=step_checks,
    timeout_s=120)


def _kernels_only(n: int, period: int):
    def make(d: Path) -> list[str]:
        ev = [kernel(f"k{i % period}", i * 3, 2, None) for i in range(n)]
        write_json(d, doc(ev), "t.json.gz", gz=True)
        return ["explain", "t.json.gz"]
    return make


add("kernel_period_100k", HANG, A, _kernels_only(100_000, 1000), expect=-1, timeout_s=120)
add("kernel_period_aperiodic_60k", HANG, A, lambda d: (write_json(d, doc(
    [kernel(f"k{(i * 7919) % 60_001}", i * 3, 2, None) for i in range(60_000)]), "t.json.gz",
    gz=True), ["explain", "t.json.gz"])[1], expect=1, timeout_s=120)


def _long_name(name: str):
    def make(d: Path) -> list[str]:
        ev = decode_steps(4, kernels_per_step=3, names=["k0", name, "k2"])
        write_json(d, doc(ev), "t.json.gz", gz=True)
        return ["explain", "t.json.gz"]
    return make


add("name_cutlass_kernel_100k", HANG, A, _long_name("cutlass" + "kernel" * 17_000),
    expect=0, check=step_checks)
add("name_cutlass_repeated_100k", HANG, A, _long_name("cutlass" * 15_000 + "kernel"),
    expect=0, check=step_checks)
add("name_cudnn_repeated_1m", HANG, A, _long_name("cudnn" * 200_000), expect=0, check=step_checks)
add("name_sm_digits_1m", HANG, A, _long_name("sm" + "9" * 1_000_000), expect=0, check=step_checks)
add("name_underscores_1m", HANG, A, _long_name("_" * 1_000_000), expect=0, check=step_checks)
add("gpu_name_a100_repeated", HANG, A, lambda d: ["explain", good_trace(
    d, deviceProperties=[{"id": 0, "name": "A100" * 100_000 + "80GB"}])], expect=0,
    check=step_checks)
add("gpu_name_h100_repeated", HANG, A, lambda d: ["explain", good_trace(
    d, deviceProperties=[{"id": 0, "name": "H100 " * 100_000}])], expect=0, check=step_checks)
add("many_distinct_annotations", HANG, A, lambda d: ["explain", good_trace(d, events=good_events() + [
    annotation(f"range_{chr(97 + i % 26)}{chr(97 + i // 26 % 26)}{chr(97 + i // 676 % 26)}"
               f"{chr(97 + i // 17576 % 26)}", 1 + i * 0.001, 0.0005) for i in range(60_000)])],
    expect=0, check=step_checks, timeout_s=120)
add("deeply_nested_annotations", HANG, A, lambda d: ["explain", good_trace(
    d, events=good_events() + [annotation("nest", i * 0.001, 400 - i * 0.002)
                               for i in range(50_000)])], expect=-1, timeout_s=120)
add("step_marker_catastrophic", HANG, A, lambda d: ["explain", good_trace(
    d, events=good_events() + [annotation("a" * 5000 + "!", 1, 1)]), "--step-marker", "(a+)+$"],
    error="step-marker")
add("step_marker_nested_quantifiers", HANG, A, lambda d: ["explain", good_trace(
    d, events=good_events() + [annotation("x" * 3000, 1, 1)]), "--step-marker", "(x*)*y"],
    error="step-marker")
add("step_marker_invalid", HANG, A, lambda d: ["explain", good_trace(d), "--step-marker", "(("],
    expect=2, error="step-marker")
add("step_marker_matches_nothing", HANG, A, lambda d: ["explain", good_trace(d), "--step-marker",
                                                        "zzz"], error="matched no annotation")
add("step_marker_ok", HANG, A, lambda d: ["explain", good_trace(d), "--step-marker", r"step#\d"],
    expect=0, check=step_checks)

# == 8. Non-regular and odd input files (reader) ==============================================
INP = "input-files"


def _fifo(d: Path) -> list[str]:
    os.mkfifo(d / "t.json")
    return ["explain", "t.json"]


add("fifo_without_writer", INP, R, _fifo, timeout_s=20)
add("dev_zero", INP, R, lambda d: ["explain", "/dev/zero"], timeout_s=20)
add("dev_null", INP, R, lambda d: ["explain", "/dev/null"])
add("directory", INP, R, lambda d: (d.joinpath("t.json").mkdir(), ["explain", "t.json"])[1],
    error="directory")
add("missing_file", INP, R, lambda d: ["explain", "nope.json"], error="does not exist")
add("dangling_symlink", INP, R, lambda d: (os.symlink("nowhere", d / "t.json"),
                                           ["explain", "t.json"])[1])
add("symlink_loop", INP, R, lambda d: (os.symlink("t.json", d / "t.json"), ["explain", "t.json"])[1])
add("unreadable_file", INP, R, lambda d: (good_trace(d), os.chmod(d / "t.json.gz", 0),
                                          ["explain", "t.json.gz"])[2], root_skip=True)
add("proc_file", INP, R, lambda d: ["explain", "/proc/self/status"])
add("sparse_5g_plain", INP, R, lambda d: (d.joinpath("t.json").touch(),
                                          os.truncate(d / "t.json", 5 << 30),
                                          ["explain", "t.json"])[2], timeout_s=120)


def _piped(d: Path) -> list[str]:
    good_trace(d)
    return ["explain", "-"]


add("stdin_dash", INP, R, _piped, stdin="t.json.gz", expect=0, check=step_checks)
add("stdin_dev_stdin", INP, R, lambda d: (good_trace(d), ["explain", "/dev/stdin"])[1],
    stdin="t.json.gz", expect=0, check=step_checks)
add("stdin_plain_json", INP, R, lambda d: (write_json(d, doc(good_events())), ["explain", "-"])[1],
    stdin="t.json", expect=0, check=step_checks)

# == 9. gzip front end (reader) ===============================================================
GZ = "gzip"


def _gz_bytes(d: Path, data: bytes, name: str = "t.json.gz") -> list[str]:
    (d / name).write_bytes(data)
    return ["explain", name]


def _good_json() -> bytes:
    return _dumps(doc(good_events())).encode()


def _multi_member(d: Path) -> list[str]:
    raw = _good_json()
    cut = len(raw) // 2
    return _gz_bytes(d, gzip.compress(raw[:cut]) + gzip.compress(raw[cut:]))


add("multi_member_gzip", GZ, R, _multi_member, expect=0, check=step_checks)
add("gzip_of_gzip", GZ, R, lambda d: _gz_bytes(d, gzip.compress(gzip.compress(_good_json()))))
add("gzip_truncated", GZ, R, lambda d: _gz_bytes(d, gzip.compress(_good_json())[:-30]),
    error="truncated")
add("gzip_bad_crc", GZ, R, lambda d: _gz_bytes(d, (lambda b: b[:-8] + b"\0\0\0\0" + b[-4:])(
    gzip.compress(_good_json()))))
add("gzip_trailing_garbage", GZ, R, lambda d: _gz_bytes(d, gzip.compress(_good_json()) + b"junk"))
add("gzip_empty_member", GZ, R, lambda d: _gz_bytes(d, gzip.compress(b"")), error="empty")
add("gzip_header_only", GZ, R, lambda d: _gz_bytes(d, b"\x1f\x8b"))
add("zlib_not_gzip", GZ, R, lambda d: _gz_bytes(d, zlib.compress(_good_json())))
add("bzip2_file", GZ, R, lambda d: _gz_bytes(d, __import__("bz2").compress(_good_json())))
add("xz_file", GZ, R, lambda d: _gz_bytes(d, __import__("lzma").compress(_good_json())))


def _deflate_blocks(data: bytes, *, final: bool = False) -> bytes:
    """``data`` as raw deflate blocks that refer to nothing before them and end byte-aligned (a
    full flush), so that the same bytes can be written again and again: a gzip bomb of N GB is
    written in seconds instead of compressing N GB (the reader still inflates all of it)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH)


def _stream_gz(p: Path, head: bytes, fill: bytes, size: int, tail: bytes, *,
               members: int = 1) -> None:
    """A gzip file of ``members`` members that together inflate to head + ``size`` bytes of
    ``fill`` (whole MiB) + tail, written from one compressed MiB repeated, with its true CRC."""
    chunk = fill * (1 << 20)
    block = _deflate_blocks(chunk)
    per = (size >> 20) // members
    with open(p, "ab") as f:
        for m in range(members):
            pre, post = (head if m == 0 else b""), (tail if m == members - 1 else b"")
            crc = zlib.crc32(pre)
            f.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff")
            f.write(_deflate_blocks(pre))
            for _ in range(per):
                f.write(block)
                crc = zlib.crc32(chunk, crc)
            f.write(_deflate_blocks(post, final=True))
            crc = zlib.crc32(post, crc)
            f.write(struct.pack("<II", crc, (len(pre) + per * len(chunk) + len(post)) & 0xFFFFFFFF))


def _gzip_bomb(size: int, byte: bytes = b" ", members: int = 1):
    def make(d: Path) -> list[str]:
        _stream_gz(d / "t.json.gz", b"", byte, size, b"", members=members)
        return ["explain", "t.json.gz"]
    return make


#: the multi-GB bombs guard the reader's bound on inflated bytes, which comes before any output:
#: one mode is enough (each run inflates GBs)
add("gzip_bomb_200m_spaces", GZ, R, _gzip_bomb(200 << 20), timeout_s=120)
add("gzip_bomb_5g", GZ, R, _gzip_bomb(5 << 30), slow=True, timeout_s=600, max_rss_mb=1500,
    modes=("json",))
add("gzip_bomb_5g_multi_member", GZ, R, _gzip_bomb(5 << 30, members=5), slow=True, timeout_s=600,
    max_rss_mb=1500, modes=("json",))
add("gzip_bomb_3g_json_string", GZ, R, lambda d: (lambda p: (
    p.write_bytes(b""), _stream_gz(p, b'{"traceEvents": [{"name": "', b"a", 3 << 30, b'"}]}'),
    ["explain", "t.json.gz"])[2])(d / "t.json.gz"), slow=True, timeout_s=600, max_rss_mb=1500,
    modes=("json",))


# == 10. Nsight SQLite (reader) ===============================================================
SQL = "sqlite"


def _export(d: Path, name: str = "t.sqlite") -> Path:
    from helpers import build_export

    return build_export(d / name)


def _sql_case(sql: str, name: str = "t.sqlite"):
    def make(d: Path) -> list[str]:
        p = _export(d, name)
        con = sqlite3.connect(p)
        con.executescript(sql)
        con.commit()
        con.close()
        return ["explain", name]
    return make


add("nsys_valid", SQL, R, _sql_case(""), expect=-1, check=step_checks)
add("nsys_text_in_start", SQL, R, _sql_case(
    "UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET start = 'soon' WHERE rowid = 1;"), expect=-1)
add("nsys_blob_name", SQL, R, _sql_case(
    "UPDATE StringIds SET value = x'ff00fe' WHERE id = 1;"), expect=-1)
add("nsys_null_start", SQL, R, _sql_case(
    "UPDATE CUPTI_ACTIVITY_KIND_RUNTIME SET start = NULL WHERE rowid = 1;"), expect=-1)
add("nsys_int64_max", SQL, R, _sql_case(
    "UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET end = 9223372036854775807 WHERE rowid = 1;"), expect=-1)
add("nsys_real_in_stream", SQL, R, _sql_case(
    "UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET streamId = 1e300 WHERE rowid = 1;"), expect=-1)
add("nsys_recursive_view", SQL, R, _sql_case(
    "DROP TABLE NVTX_EVENTS; CREATE VIEW NVTX_EVENTS AS WITH RECURSIVE r(start, end, eventType, "
    "rangeId, category, color, text, globalTid, endGlobalTid, textId, domainId) AS (SELECT 1, 2, "
    "59, 0, 0, 0, 'x', 0, 0, NULL, 0 UNION ALL SELECT start + 1, end + 1, 59, 0, 0, 0, 'x', 0, 0, "
    "NULL, 0 FROM r) SELECT * FROM r;"), timeout_s=20)
add("nsys_missing_kernel_table", SQL, R, _sql_case("DROP TABLE CUPTI_ACTIVITY_KIND_KERNEL;"),
    expect=-1)
add("nsys_missing_strings", SQL, R, _sql_case("DROP TABLE StringIds;"), expect=-1)
add("nsys_esc_in_nvtx", SQL, R, _sql_case(
    "UPDATE NVTX_EVENTS SET text = 'tracekit.step#0' || char(27) || '[2J' || char(8238) "
    "WHERE text = 'tracekit.step#0';"), expect=-1)
add("nsys_path_percent", SQL, R, _sql_case("", name="x%41.sqlite"), expect=-1, check=step_checks)
add("nsys_path_hash", SQL, R, _sql_case("", name="q#1.sqlite"), expect=-1, check=step_checks)
add("nsys_path_question", SQL, R, _sql_case("", name="a?mode=rwc.sqlite"), expect=-1,
    check=step_checks)
add("nsys_truncated", SQL, R, lambda d: (lambda p: (p.write_bytes(p.read_bytes()[:3000]),
                                                    ["explain", "t.sqlite"])[1])(_export(d)))
add("nsys_header_only", SQL, R, lambda d: trace_bytes(d, b"SQLite format 3\x00" + b"\0" * 84,
                                                      "t.sqlite"))
add("nsys_gz_truncated", SQL, R, lambda d: (lambda z: _gz_bytes(
    d, z[: len(z) // 2], "t.sqlite.gz"))(gzip.compress(_export(d).read_bytes())))
add("nsys_gz_valid", SQL, R, lambda d: (lambda p: _gz_bytes(
    d, gzip.compress(p.read_bytes()), "t.sqlite.gz"))(_export(d)), expect=-1, check=step_checks)

# == 11. Output files (cli) ===================================================================
C = "cli"
OUT = "output-files"


def _out(target: str, prepare: Callable[[Path], None] | None = None, *, sample: bool = False):
    def make(d: Path) -> list[str]:
        trace = good_trace(d)
        if prepare:
            prepare(d)
        return ["explain", trace, "--html", target]
    return make


add("out_proc", OUT, C, _out("/proc/tracekit-report.html"), modes=("text",), error="cannot write")
add("out_proc_file_as_dir", OUT, C, _out("/proc/version/r.html"), modes=("text",),
    error="cannot write")
add("out_name_300_chars", OUT, C, _out("r" * 300 + ".html"), modes=("text",), error="cannot write")
add("out_missing_dir", OUT, C, _out("nodir/r.html"), modes=("text",), error="does not exist")
add("out_is_directory", OUT, C, _out("sub", lambda d: (d / "sub").mkdir()), modes=("text",),
    error="directory")
add("out_dev_full", OUT, C, _out("/dev/full"), modes=("text",), expect=-1,
    error="cannot write")  # some sandboxes let /dev/full take writes
add("out_readonly_dir", OUT, C, _out("ro/r.html", lambda d: ((d / "ro").mkdir(),
                                                            os.chmod(d / "ro", 0o555))),
    modes=("text",), error="cannot write", root_skip=True)
add("markdown_to_proc", OUT, C, lambda d: ["explain", good_trace(d), "--markdown",
                                           "/proc/x.md"], modes=("text",), error="cannot write")
add("graph_trace_missing", OUT, C, lambda d: ["explain", good_trace(d), "--graph-trace", "nope.gz"],
    error="does not exist")
add("graph_trace_junk", OUT, C, lambda d: (trace_bytes(d, b"junk", "g.json"),
                                           ["explain", good_trace(d), "--graph-trace", "g.json"])[1])

# == 12. Strings from the trace (cli) =========================================================
STR = "strings"
PAYLOADS = {
    "esc_clear_screen": "\x1b[2J\x1b[31mRED",
    "esc_osc_title": "\x1b]0;pwned\x07title",
    "bidi_rlo": "safe\u202eexe.lmth",
    "bidi_isolates": "a\u2066b\u2067c\u2068d\u2069",
    "c1_controls": "x\x9b31mcsi\x85nel",
    "backspaces": "abc\b\b\bXYZ\r\rCR",
    "html_script": "<script>alert(1)</script><img src=x onerror=alert(2)>",
    "markdown_injection": "| a | b |\n# heading\n[x](javascript:alert(1)) `code` <b>",
    "zero_width": "a\u200b\u200d\ufeffb",
    "nul_and_del": "a\x00b\x7fc",
}


def _strings_case(where: str, payload: str):
    def make(d: Path) -> list[str]:
        names = ["k0", "k1", "k2"]
        gpu = H100
        ann = "step#{i}"
        if where == "kernel":
            names[1] = "gemv_" + payload
        elif where == "gpu":
            gpu = "NVIDIA H100 " + payload
        else:
            ann = "step" + payload.replace("{", "(").replace("}", ")") + "#{i}"
        ev = decode_steps(4, kernels_per_step=3, names=names, annotate=ann)
        write_json(d, doc(ev, deviceProperties=[{"id": 0, "name": gpu}]), "t.json.gz", gz=True)
        return ["explain", "t.json.gz"]
    return make


for _where in ("kernel", "gpu", "annotation"):
    for _pid, _payload in PAYLOADS.items():
        add(f"str_{_where}_{_pid}", STR, C, _strings_case(_where, _payload), expect=0,
            check=step_checks, tags={"strings"})
add("str_error_line_path_escape", STR, C, lambda d: ["explain", "bad\x1b[2J\u202e.json"],
    error="does not exist", tags={"strings"})

# == 13. Command-line values (cli / analysis) =================================================
OPT = "options"


def _config(d: Path, **over) -> str:
    cfg = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128,
           "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 1000,
           "model_type": "llama"}
    cfg.update(over)
    (d / "config.json").write_text(json.dumps(cfg))
    return "config.json"


for _id, _over in {
    "config_zero_heads": {"num_attention_heads": 0},
    "config_zero_kv_heads": {"num_key_value_heads": 0, "num_attention_heads": 4},
    "config_infinity_layers": {"num_hidden_layers": float("inf")},
    "config_nan_hidden": {"hidden_size": float("nan")},
    "config_negative_layers": {"num_hidden_layers": -28},
    "config_negative_vocab": {"vocab_size": -1},
    "config_huge_layers": {"num_hidden_layers": 10**30},
    "config_string_heads": {"num_attention_heads": "many"},
    "config_float_heads": {"num_attention_heads": 4.5},
    "config_bool_layers": {"num_hidden_layers": True},
    "config_head_dim_zero": {"head_dim": 0},
}.items():
    add(_id, OPT, A, lambda d, o=_over: ["explain", good_trace(d), "--model", _config(d, **o),
                                          "--ctx", "10"], error="config")
    add("floor_" + _id, OPT, A, lambda d, o=_over: ["floor", "--model", _config(d, **o)],
        modes=("text", "json"), error="config")
add("config_not_object", OPT, A, lambda d: ((d / "c.json").write_text("[1]"),
                                            ["floor", "--model", "c.json"])[1],
    modes=("text", "json"), error="config")
add("config_invalid_utf8", OPT, A, lambda d: ((d / "c.json").write_bytes(b'{"a": "\xff"}'),
                                              ["floor", "--model", "c.json"])[1],
    modes=("text", "json"), error="config")
for _id, _bw in {"bandwidth_inf": "inf", "bandwidth_nan": "nan", "bandwidth_negative": "-1",
                 "bandwidth_zero": "0", "bandwidth_tiny": "1e-300", "bandwidth_huge": "1e300"}.items():
    add(_id, OPT, A, lambda d, b=_bw: ["explain", good_trace(d), "--model", "qwen2.5-7b",
                                       "--ctx", "10", "--bandwidth", b], error="bandwidth")
for _id, _ctx in {"ctx_1e30": "1e30", "ctx_huge_int": str(10**30), "ctx_negative": "-1",
                  "ctx_2_pow_63": str(2**63)}.items():
    add(_id, OPT, A, lambda d, c=_ctx: ["explain", good_trace(d), "--model", "qwen2.5-7b",
                                        "--ctx", c], expect=-2, error="ctx")
    add("floor_" + _id, OPT, A, lambda d, c=_ctx: ["floor", "--model", "qwen2.5-7b", "--ctx", c],
        modes=("text", "json"), expect=-2, error="ctx")


def _floor_gpu_ok(name: str, expect_gpu: str):
    def check(rows) -> None:
        assert [r["gpu"] for r in rows] == [expect_gpu], rows
    return check


for _gpu, _want in {"H100": "H100 SXM5", "H100 SXM": "H100 SXM5", "h100 pcie": "H100 PCIe",
                    "A100 80GB": "A100 80GB SXM", "L4": "L4", "NVIDIA L40S": "L40S",
                    "A100-SXM4-40GB": "A100 40GB", "rtx4090": "RTX 4090"}.items():
    add(f"floor_gpu_{_gpu.replace(' ', '_').replace('-', '_')}", OPT, A,
        lambda d, g=_gpu: ["floor", "--model", "qwen2.5-7b", "--gpu", g], expect=0,
        modes=("text", "json"), check=_floor_gpu_ok(_gpu, _want))
add("floor_gpu_a100_ambiguous", OPT, A, lambda d: ["floor", "--model", "qwen2.5-7b", "--gpu", "A100"],
    modes=("text", "json"), error="A100 80GB")
add("explain_gpu_a100_ambiguous", OPT, A, lambda d: ["explain", good_trace(d), "--gpu", "A100"],
    error="A100 40GB")
add("floor_gpu_unknown", OPT, A, lambda d: ["floor", "--model", "qwen2.5-7b", "--gpu", "Z9000"],
    modes=("text", "json"), error="unknown GPU")
add("floor_gpu_esc", OPT, A, lambda d: ["floor", "--model", "qwen2.5-7b", "--gpu", "\x1b[2J"],
    modes=("text", "json"), error="unknown GPU", tags={"strings"})
add("dtype_unknown", OPT, A, lambda d: ["explain", good_trace(d), "--model", "qwen2.5-7b",
                                        "--ctx", "10", "--dtype", "fp3"], error="dtype")
add("convention_unknown", OPT, A, lambda d: ["explain", good_trace(d), "--convention", "x"],
    error="convention")
add("model_unknown", OPT, A, lambda d: ["explain", good_trace(d), "--model", "gpt-9"],
    error="unknown model")


# == 14. compare and annotate (cli) ============================================================
CMP = "compare"
ANN = "annotate"
#: every payload at once, so one case checks them all in each medium
ALL_PAYLOADS = "".join(PAYLOADS.values())
LONG_NAME = "void gemv_kernel<" + "float, " * 2000 + ALL_PAYLOADS + ">"


def _side(d: Path, name: str, *, names: list[str] | None = None, gpu: str = H100,
          ann: str = "step#{i}", host_op: str | None = None, meta: dict | None = None,
          events: list | None = None) -> str:
    """A small decode trace (4 steps, 3 kernels each); ``host_op``: a CPU op over each step's gap,
    which names that gap in host attribution and in annotate's gap slices."""
    ev = events if events is not None else decode_steps(4, kernels_per_step=3, names=names,
                                                        annotate=ann)
    if host_op is not None:
        ev = ev + [cpu_op(host_op, i * 100.0 + 20, 75) for i in range(4)]
    extra = {"deviceProperties": [{"id": 0, "name": gpu}]}
    if meta is not None:
        extra["tracekit"] = meta
    write_json(d, doc(ev, **extra), name, gz=True)
    return name


def _hostile_side(where: str, payload: str) -> dict:
    if where == "kernel":
        return {"names": ["k0", "gemv_" + payload, "k2"]}
    if where == "gpu":
        return {"gpu": "NVIDIA H100 " + payload}
    if where == "annotation":
        return {"ann": "step" + payload.replace("{", "(").replace("}", ")") + "#{i}"}
    if where == "host_op":
        return {"host_op": "aten::" + payload}
    # capture metadata: the strings compare prints about each side
    return {"meta": {"model_name": payload, "mode": payload, "dtype": payload, "ctx": 64,
                     "attention": {"requested": payload}, "gpu": {"name": payload},
                     "timing": {"unprofiled_ms": [0.1, 0.11, 0.1, 0.12, 0.1]}}}


def compare_checks(d: dict) -> None:
    assert d["schema"] == "tracekit.compare/1"
    assert d["speedup"] is not None and d["speedup"] > 0
    if d["ci95"]:
        assert d["ci95"][0] <= d["speedup"] <= d["ci95"][1]
    for side in (d["a"], d["b"]):
        assert side["latency_ms"] > 0
        sm = side.get("summary") or {}
        if sm.get("gpu_busy_ms") is not None and sm.get("latency_ms") is not None:
            assert -1e-9 <= sm["gpu_busy_ms"] <= sm["latency_ms"] + 1e-9, sm


def _compare_strings(where: str, payload: str):
    def make(d: Path) -> list[str]:
        return ["compare", _side(d, "a.json.gz", **_hostile_side(where, payload)),
                _side(d, "b.json.gz")]
    return make


def _annotate_strings(where: str, payload: str):
    def make(d: Path) -> list[str]:
        return ["annotate", _side(d, "t.json.gz", **_hostile_side(where, payload)),
                "-o", "out.json.gz"]
    return make


for _where in ("kernel", "gpu", "annotation", "host_op", "metadata"):
    add(f"compare_str_{_where}", STR, C, _compare_strings(_where, ALL_PAYLOADS), expect=0,
        check=compare_checks, tags={"strings"})
    add(f"annotate_str_{_where}", STR, C, _annotate_strings(_where, ALL_PAYLOADS), expect=0,
        modes=("text",), writes=("out.json.gz",), tags={"strings"})
add("compare_str_long_kernel_name", STR, C, _compare_strings("kernel", LONG_NAME), expect=0,
    check=compare_checks, tags={"strings"})
add("annotate_str_long_host_op", STR, C, _annotate_strings("host_op", LONG_NAME), expect=0,
    modes=("text",), writes=("out.json.gz",), tags={"strings"})
add("compare_error_line_path_escape", STR, C,
    lambda d: ["compare", "bad\x1b[2J\u202e.json", _side(d, "b.json.gz")],
    error="matches no files", tags={"strings"})  # "[" makes it a pattern

_NO_STEPS = [annotation("not a step", 0, 10)]
_TIMING = {"timing": {"unprofiled_ms": [0.1, 0.11, 0.1]}}
for _id, _make, _err in (
    ("compare_no_decode_steps",
     lambda d: ["compare", _side(d, "a.json.gz", events=_NO_STEPS), _side(d, "b.json.gz")],
     "a.json.gz: no decode steps found"),
    ("compare_b_no_decode_steps",
     lambda d: ["compare", _side(d, "a.json.gz"), _side(d, "b.json.gz", events=_NO_STEPS)],
     "b.json.gz: no decode steps found"),
    ("compare_basis_sessions_without_timings",
     lambda d: ["compare", _side(d, "a.json.gz"), _side(d, "b.json.gz"), "--basis", "sessions"],
     "a.json.gz: --basis sessions needs unprofiled step timings"),
    ("compare_basis_sessions_one_session",
     lambda d: ["compare", _side(d, "a.json.gz", meta=_TIMING), _side(d, "b.json.gz", meta=_TIMING),
                "--basis", "sessions"], "needs at least 2 sessions"),
    ("compare_side_missing", lambda d: ["compare", "nope.json.gz", _side(d, "b.json.gz")],
     "nope.json.gz does not exist"),
    ("compare_glob_matches_nothing", lambda d: ["compare", "runs/*.json.gz", _side(d, "b.json.gz")],
     "matches no files"),
    ("compare_junk_side", lambda d: (trace_bytes(d, b"junk", "a.json"),
                                     ["compare", "a.json", _side(d, "b.json.gz")])[1],
     "a.json: is not valid JSON"),
):
    add(_id, CMP, C, _make, error=_err)
add("compare_gpu_metadata_not_an_object", CMP, C,
    lambda d: ["compare", _side(d, "a.json.gz", meta={"gpu": "H100", **_TIMING}),
               _side(d, "b.json.gz", meta=_TIMING)], expect=0, check=compare_checks)
# sessions metadata tracekit cannot use: dropped with a warning naming it (as explain does), and
# the comparison goes on with what is left (issue 22: an Error line or a warning, never silence)
add("compare_sessions_runs_not_a_list", CMP, C,
    lambda d: ["compare", _side(d, "a.json.gz", meta={"sessions": {"runs": "x"}}),
               _side(d, "b.json.gz")], expect=0, warns="sessions.runs", modes=("json",))
add("compare_sessions_run_not_an_object", CMP, C,
    lambda d: ["compare", _side(d, "a.json.gz", meta={"sessions": {"runs": ["x", 3]}}),
               _side(d, "b.json.gz")], expect=0, warns="sessions.runs", modes=("json",))
add("compare_basis_unknown", CMP, C,
    lambda d: ["compare", _side(d, "a.json.gz"), _side(d, "b.json.gz"), "--basis", "x"],
    expect=2, error="unknown --basis")
for _id, _make, _err, _code in (
    ("annotate_no_decode_steps",
     lambda d: ["annotate", _side(d, "t.json.gz", events=_NO_STEPS), "-o", "out.json.gz"],
     "t.json.gz: no decode steps found", 1),
    ("annotate_not_an_object", lambda d: (trace_bytes(d, b"[1]", "t.json"),
                                          ["annotate", "t.json", "-o", "out.json.gz"])[1],
     "t.json is not a JSON object", 1),
    ("annotate_no_trace_events", lambda d: (trace_bytes(d, b'{"a": 1}', "t.json"),
                                            ["annotate", "t.json", "-o", "out.json.gz"])[1],
     "no 'traceEvents'", 1),
    ("annotate_sqlite", lambda d: (_export(d), ["annotate", "t.sqlite", "-o", "out.json.gz"])[1],
     "Nsight Systems export", 1),
    ("annotate_output_is_input",
     lambda d: ["annotate", _side(d, "t.json.gz"), "-o", "t.json.gz"], "is the input trace", 2),
    ("annotate_output_dir_missing",
     lambda d: ["annotate", _side(d, "t.json.gz"), "-o", "nodir/out.json.gz"], "does not exist", 1),
    ("annotate_missing", lambda d: ["annotate", "nope.json.gz", "-o", "out.json.gz"],
     "nope.json.gz does not exist", 1),
):
    add(_id, ANN, C, _make, error=_err, expect=_code, modes=("text",))


def _annotated(d: Path) -> list[str]:
    _side(d, "t.json.gz")
    from tracekit.annotate import annotate  # the corpus runs from the repository root

    annotate(d / "t.json.gz", d / "seen.json.gz")
    return ["annotate", "seen.json.gz", "-o", "out.json.gz"]


add("annotate_already_annotated", ANN, C, _annotated, error="already annotated", modes=("text",))
# every output option replaces an existing file (tracekit/fileio.py), and none writes over an input
add("annotate_output_exists", ANN, C,
    lambda d: ["annotate", _side(d, "t.json.gz"), "-o", _side(d, "other.json.gz")], expect=0,
    modes=("text",))
for _id, _argv in {
    "explain_html_is_input": ["explain", "t.json.gz", "--html", "t.json.gz"],
    "explain_markdown_is_input_by_other_path": ["explain", "t.json.gz", "--markdown", "./t.json.gz"],
    "explain_html_is_graph_trace": ["explain", "t.json.gz", "--graph-trace", "g.json.gz",
                                    "--html", "g.json.gz"],
    "compare_html_is_side": ["compare", "t.json.gz", "g.json.gz", "--html", "g.json.gz"],
}.items():
    add(_id, OUT, C, lambda d, a=_argv: (_side(d, "t.json.gz"), _side(d, "g.json.gz"), a)[2],
        expect=2, error="is the input trace", modes=("text",))


# == 15. JSON nested 100,000 deep wherever tracekit reads JSON (issue 22, item 7) ===============
DEPTH = "json-depth"
_DEEP_OBJ = '{"a":' * 100_000 + "1" + "}" * 100_000


def _deep_config(*argv: str):
    def make(d: Path) -> list[str]:
        (d / "config.json").write_text(_DEEP_OBJ)
        return [a.replace("TRACE", good_trace(d)) if a == "TRACE" else a for a in argv]
    return make


add("deep_config_explain", DEPTH, A, _deep_config("explain", "TRACE", "--model", "config.json",
                                                   "--ctx", "10"), error="nested deeper")
add("deep_config_floor", DEPTH, A, _deep_config("floor", "--model", "config.json", "--ctx", "10"),
    error="nested deeper")
add("deep_config_capture", DEPTH, A, _deep_config("capture", "--model", "config.json", "--device",
                                                   "cpu", "--ctx", "16", "-o", "c.json.gz"),
    modes=("text",), error="nested deeper")
add("deep_config_dir", DEPTH, A, lambda d: (_deep_config()(d), ["floor", "--model", "."])[1],
    modes=("text", "json"), error="nested deeper")


def _nsys_meta(value: str):
    def make(d: Path) -> list[str]:
        from helpers import build_export

        con = sqlite3.connect(build_export(d / "t.sqlite", meta={}))
        con.execute("UPDATE TRACEKIT_CAPTURE SET value = ? WHERE key = 'meta'", (value,))
        con.commit()
        con.close()
        return ["explain", "t.sqlite"]
    return make


add("deep_nsys_meta", DEPTH, R, _nsys_meta(_DEEP_OBJ), expect=0, warns="TRACEKIT_CAPTURE")
add("deep_nsys_meta_array", DEPTH, R, _nsys_meta("[" * 100_000 + "]" * 100_000), expect=0,
    warns="TRACEKIT_CAPTURE")
add("nsys_meta_not_json", DEPTH, R, _nsys_meta("{not json"), expect=0, warns="TRACEKIT_CAPTURE")
add("deep_trace_meta_block", DEPTH, R, lambda d: trace_bytes(
    d, b'{"tracekit": ' + _DEEP_OBJ.encode() + b', "traceEvents": []}'), error="nest")


def _compare_deep_head(d: Path) -> list[str]:
    """compare reads a later file's metadata from its head alone (tracekit.capture.write)."""
    _side(d, "a.json.gz")
    (d / "b").mkdir()
    _side(d / "b", "1.json.gz")
    (d / "b" / "2.json").write_text('{"tracekit": ' + _DEEP_OBJ + ', "traceEvents": []}')
    return ["compare", "a.json.gz", "b"]


add("deep_compare_head", DEPTH, C, _compare_deep_head, expect=-1, modes=("text",))
add("deep_sweep_recipe", DEPTH, C, lambda d: ((d / "r.toml").write_text(
    "a = " + "[" * 100_000 + "]" * 100_000), ["sweep", "r.toml", "--list"])[1],
    modes=("text",), error="TOML")

# == 16. Digits that are not decimal: str.isdigit() is true, int() refuses (issue 22, item 8) ==
DIGITS = "unicode-digits"
for _id, _ev in {
    "tid_superscript": _k(tid="\u00b2"),
    "pid_superscript": _k(pid="\u00b9"),
    "stream_arabic_indic": _k(args={"stream": "\u0663"}),
    "correlation_superscript": _k(args={"correlation": "\u00b2"}),
    "device_fullwidth": _k(args={"device": "\uff11"}),
    "tid_double_minus": _k(tid="--5"),
    "tid_5000_digits": _k(tid="9" * 5000),
    "bytes_superscript": {**_k(cat="gpu_memcpy", name="Memcpy HtoD (Pageable -> Device)"),
                          "args": {"device": 0, "stream": 7, "correlation": 99_999,
                                   "bytes": "\u00b2"}},
}.items():
    add(_id, DIGITS, R, trace_doc(with_event(_ev)), expect=0, check=step_checks)
add("launch_tid_superscript", DIGITS, R, trace_doc(doc(
    [{**e, "tid": "\u00b2"} if e.get("cat") == "cuda_runtime" else e for e in good_events()])),
    expect=-1, check=step_checks)
add("profile_session_superscript", DIGITS, C, lambda d: ["capture", "--model", "tiny", "--device",
                                                         "cpu", "--profile-session", "\u00b2"],
    expect=2, modes=("text",), error="--profile-session")

# == 17. Values tracekit cannot interpret: an Error line or a warning naming the field ==========
# (issue 22, item 9)
UNINT = "uninterpretable-values"
for _id, (_meta, _field) in {
    "meta_median_fast": ({"model": _GOOD_MODEL, "ctx": 10, "timing": {"median_ms": "fast"}},
                         "timing.median_ms"),
    "meta_layers_string": ({"model": {**_GOOD_MODEL, "layers": "28"}, "ctx": 10}, "model.layers"),
    "meta_ctx_string_warns": ({"model": _GOOD_MODEL, "ctx": "2048"}, "ignored ctx"),
    "meta_model_name_int": ({"model": _GOOD_MODEL, "ctx": 10, "model_name": 7}, "model_name"),
    "meta_model_name_in_model_int": ({"model": {**_GOOD_MODEL, "name": 7}, "ctx": 10},
                                     "model.name"),
    "meta_versions_list_warns": ({"versions": [1, 2]}, "versions"),
    "meta_versions_number": ({"versions": {"torch": 2.1}}, "versions.torch"),
    "meta_dtype_int": ({"model": _GOOD_MODEL, "ctx": 10, "dtype": 16}, "dtype"),
    "meta_bandwidth_string": ({"copy_bandwidth_gbps": "fast"}, "copy_bandwidth_gbps"),
    "meta_timing_sessions_int": ({"timing_sessions": 5}, "timing_sessions"),
    "meta_timing_sessions_median_string": ({"timing_sessions": {"median_ms": "x", "sessions": 2}},
                                           "timing_sessions.median_ms"),
    "meta_clocks_string": ({"gpu_clocks_before": "hot"}, "gpu_clocks_before"),
    "meta_clocks_sm_string": ({"gpu_clocks_after": {"sm_mhz": "fast"}}, "gpu_clocks_after.sm_mhz"),
    "meta_sessions_string": ({"sessions": "many"}, "sessions"),
    "meta_sessions_runs_strings": ({"sessions": {"n": 2, "runs": ["a", "b"]}}, "sessions.runs"),
    "meta_activities_string": ({"profiler_activities": "cpu"}, "profiler_activities"),
}.items():
    add(_id, UNINT, R, trace_doc(doc(good_events(), tracekit=_meta)), expect=0, warns=_field,
        check=step_checks)
# null is "not measured" in our own CPU captures: kept, no warning
add("meta_nulls_not_measured", UNINT, R, trace_doc(doc(good_events(), tracekit={
    "model": _GOOD_MODEL, "ctx": 10, "device": "cuda", "copy_bandwidth_gbps": None,
    "versions": {"torch": "2.13.0", "cuda": None, "triton": None}})), expect=0,
    no_warning="capture metadata", check=step_checks)


def _copy_bytes(nbytes) -> dict:
    ops = [launch("cudaMemcpyAsync", 20, 1, 9001),
           {**kernel("Memcpy HtoD (Pageable -> Device)", 30, 10, 9001, cat="gpu_memcpy"),
            "args": {"device": 0, "stream": 7, "correlation": 9001, "bytes": nbytes}}]
    return doc(good_events() + ops)


for _id, _b in {"copy_bytes_1e30": 1e30, "copy_bytes_negative": -4096, "copy_bytes_string": "many",
                "copy_bytes_fraction_huge": 1.5e19, "copy_bytes_bool": True}.items():
    add(_id, UNINT, R, trace_doc(_copy_bytes(_b)), expect=0, warns="byte count", check=step_checks)
add("nsys_kernel_start_text", UNINT, R, _sql_case(
    "UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET start = 'abc' WHERE rowid = 1;"), expect=0,
    warns="CUPTI_ACTIVITY_KIND_KERNEL have a start or end")
add("nsys_memcpy_bytes_real", UNINT, R, _sql_case(
    "UPDATE CUPTI_ACTIVITY_KIND_MEMCPY SET bytes = 1e30;"), expect=0, warns="byte count")
add("nsys_memcpy_end_blob", UNINT, R, _sql_case(
    "UPDATE CUPTI_ACTIVITY_KIND_MEMCPY SET end = x'00' WHERE rowid = 1;"), expect=0,
    warns="CUPTI_ACTIVITY_KIND_MEMCPY have a start or end")
add("bandwidth_flag_string", UNINT, C, lambda d: ["explain", good_trace(d), "--bandwidth", "fast"],
    expect=2, error="bandwidth")
add("range_profiler_trace", UNINT, R, trace_doc(doc(
    [e for e in good_events() if e.get("cat") != "kernel"]
    + [{"ph": "X", "cat": "cuda_profiler_range", "name": f"range_{i}", "pid": 0, "tid": 7,
        "ts": Raw(str(BASE_US + i * 10)), "dur": 5, "args": {}} for i in range(77)])),
    expect=0, warns="range-profiler")


def by_id() -> dict[str, Case]:
    return {c.id: c for c in CASES}


assert len(by_id()) == len(CASES), "duplicate case ids"


if __name__ == "__main__":  # write every input for a look by hand
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus")
    for c in CASES:
        if c.slow:
            continue
        d = root / c.id
        d.mkdir(parents=True, exist_ok=True)
        print(c.id, c.cls, " ".join(c.make(d)))
