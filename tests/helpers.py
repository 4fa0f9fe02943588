"""What the tests share: run a command in-process, read its one ``Error:`` line; a plain interval
union and a json.load step oracle; a tiny Nsight Systems export; the streaming reader's cases.
(Traces built inline are in synth.py.)

    from helpers import error_line, run
    r = run("compare", a, b)
    assert r.exit_code == 1 and "no decode steps" in error_line(r)
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import sqlite3
import statistics
from decimal import Decimal
from pathlib import Path

import msgspec
from click.testing import CliRunner, Result

from tracekit.cli import app
from tracekit.explain import explain

#: hypothesis example counts are scaled by this (``TRACEKIT_HYPOTHESIS_SCALE``; 1 gives each
#: property its full count): 0.4 keeps the suite inside its time budget on a 2-core machine; each
#: run draws new examples (the non-derandomized ones), so coverage accumulates over runs
HYPOTHESIS_SCALE = float(os.environ.get("TRACEKIT_HYPOTHESIS_SCALE", "0.4"))


def examples(n: int) -> int:
    """A property's example count, ``n`` at full scale (:data:`HYPOTHESIS_SCALE`)."""
    return max(10, round(n * HYPOTHESIS_SCALE))


def stdlib_trace(path: Path | str) -> dict:
    """A trace file (gzip or not) as the standard library's ``json`` reads it — the tests' oracle,
    independent of tracekit's reader — parsed once per test process for the last few files asked
    for: several files' tests read the same committed trace. Callers only read it."""
    return _stdlib_trace(str(Path(path).resolve()))


@functools.lru_cache(maxsize=4)
def _stdlib_trace(path: str) -> dict:
    with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
        return json.load(f)


def run(*args: object) -> Result:
    """``tracekit ARGS…`` in this process (paths and numbers are passed as strings)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def error_line(result: Result) -> str:
    """The single line a failed command prints, ``Error: …``, with no traceback and nothing else."""
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def write_capture(path: Path, sessions: list[list[float]], *, model="qwen2.5-7b", ctx=2048,
                  gpu="NVIDIA H100 80GB HBM3", mode="eager", legacy=False) -> Path:
    """A timing-only capture (``--profile-session none``): metadata, no events."""
    def timing(ms):
        return {"steps": len(ms), "warmup": 5, "unprofiled_ms": ms,
                "median_ms": statistics.median(ms)}
    meta = {"schema": "tracekit.capture/1", "model_name": model, "ctx": ctx, "mode": mode,
            "dtype": "bf16", "gpu": {"name": gpu}, "timing": timing(sessions[0]),
            "attention": {"requested": "sdpa", "kernels": []}}
    if not legacy:
        meta["sessions"] = {"n": len(sessions), "profiled_session": None, "runs": [
            {"session": i, "timing": timing(s), "timing_after": None, "profiled": False}
            for i, s in enumerate(sessions)]}
    with gzip.open(path, "wt") as f:
        json.dump({"tracekit": meta, "schemaVersion": 1, "traceEvents": []}, f)
    return path


def merge_intervals(intervals):
    """The union of [start, end) intervals as sorted disjoint pairs: a plain loop, for oracles."""
    out: list[list] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def ns(v) -> int:
    """A trace's µs timestamp or duration (a decimal string, ``Decimal`` or number with up to three
    decimals) as integer ns, without going through a binary float."""
    whole, _, frac = str(v).partition(".")
    sign = -1 if whole.startswith("-") else 1
    return sign * (abs(int(whole)) * 1000 + int((frac + "000")[:3]))


def oracle_steps(events: list[dict], is_step) -> list[dict]:
    """Each step of a Kineto trace from its events alone (``json.load`` with ``parse_float=str``
    or ``Decimal``), written from the definitions in docs/architecture.md: a step (a host range
    ``is_step(event)`` picks) owns the GPU ops whose launch (same ``correlation``) started inside
    it; its window runs from its first op to the next step's first op; GPU busy is the union of
    every GPU op clipped to the window and idle the rest of it. A step with no later successor has
    no latency (None). Times in ns."""
    x = [e for e in events if isinstance(e, dict) and e.get("ph") == "X"]
    launch = {e["args"]["correlation"]: ns(e["ts"]) for e in x
              if e.get("cat") in ("cuda_runtime", "cuda_driver")
              and "correlation" in (e.get("args") or {})}
    ops = [(ns(e["ts"]), ns(e["ts"]) + ns(e.get("dur", 0)), launch.get(e["args"].get("correlation")))
           for e in x if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    ranges = sorted((ns(e["ts"]), ns(e["ts"]) + ns(e["dur"])) for e in x if is_step(e))
    own = [[(s, t) for s, t, at in ops if at is not None and a <= at <= b] for a, b in ranges]
    out = []
    for i, mine in enumerate(own):
        t0 = min(s for s, _ in mine) if mine else None
        nxt = own[i + 1] if i + 1 < len(own) else []
        w = min(s for s, _ in nxt) if nxt and mine else None
        timed = w is not None and w > t0
        hi = w if timed else (max(t for _, t in mine) if mine else None)
        busy = sum(b - a for a, b in merge_intervals(
            [(max(s, t0), min(t, hi)) for s, t, _ in ops if mine and min(t, hi) > max(s, t0)]))
        out.append({"start": t0, "latency": hi - t0 if timed else None,
                    "busy": busy if mine else None, "ops": len(mine)})
    return out


# -- a tiny Nsight Systems export (the tables and columns ``nsys export --type sqlite`` writes) ---
# two decode steps: an eager one (runtime and driver launches, an async copy) and a graph one (one
# cudaGraphLaunch whose three kernels share its correlation id), then a blocking copy
PID = 4242
TID = 4243
GTID = (PID << 24) | TID
T0 = 1_000_000_000  # ns, the session clock

STRINGS = {
    1: "void gemv_kernel<float, 128>(float const*, float*, int)",
    2: "void rmsnorm_kernel<__nv_bfloat16>(__nv_bfloat16*, int)",
    3: "triton_poi_fused_add_0",
    10: "cudaLaunchKernel_v7000",
    11: "cuLaunchKernel",
    12: "cudaMemcpyAsync_v3020",
    13: "cudaGraphLaunch_v10000",
    14: "cudaStreamSynchronize_v3020",
    15: "cudaMemcpy_v3020",
    16: "cudaGetDevice_v3020",
    17: "cudaMemsetAsync_ptsz_v7000",
    20: "tracekit.step#1",
}


def build_export(path: Path, *, meta: dict | None = None) -> Path:
    """The export at ``path`` (tests/test_nsys_reader.py checks its arithmetic)."""
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INTEGER NOT NULL, end INTEGER NOT NULL,
            deviceId INTEGER, contextId INTEGER, streamId INTEGER, correlationId INTEGER,
            globalPid INTEGER, demangledName INTEGER, shortName INTEGER, mangledName INTEGER,
            gridX INTEGER, gridY INTEGER, gridZ INTEGER, blockX INTEGER, blockY INTEGER,
            blockZ INTEGER, graphNodeId INTEGER);
        CREATE TABLE CUPTI_ACTIVITY_KIND_MEMCPY (start INTEGER, end INTEGER, deviceId INTEGER,
            contextId INTEGER, streamId INTEGER, correlationId INTEGER, globalPid INTEGER,
            bytes INTEGER, copyKind INTEGER, srcKind INTEGER, dstKind INTEGER);
        CREATE TABLE CUPTI_ACTIVITY_KIND_MEMSET (start INTEGER, end INTEGER, deviceId INTEGER,
            contextId INTEGER, streamId INTEGER, correlationId INTEGER, globalPid INTEGER,
            value INTEGER, bytes INTEGER, graphNodeId INTEGER, memKind INTEGER);
        CREATE TABLE CUPTI_ACTIVITY_KIND_RUNTIME (start INTEGER, end INTEGER, eventClass INTEGER,
            globalTid INTEGER, correlationId INTEGER, nameId INTEGER, returnValue INTEGER,
            callchainId INTEGER);
        CREATE TABLE NVTX_EVENTS (start INTEGER, end INTEGER, eventType INTEGER, rangeId INTEGER,
            category INTEGER, color INTEGER, text TEXT, globalTid INTEGER, endGlobalTid INTEGER,
            textId INTEGER, domainId INTEGER);
        CREATE TABLE TARGET_INFO_GPU (id INTEGER, name TEXT, busLocation TEXT, totalMemory INTEGER,
            smCount INTEGER);
        CREATE TABLE TARGET_INFO_CUDA_DEVICE (gpuId INTEGER, cudaId INTEGER, pid INTEGER,
            computeMajor INTEGER, computeMinor INTEGER);
    """)
    con.executemany("INSERT INTO StringIds VALUES (?, ?)", STRINGS.items())
    t = T0
    runtime = [
        # start, end, correlation, nameId -- step 0 (eager): 3 launches, 1 async copy
        (t + 100, t + 104, 1, 10),
        (t + 110, t + 116, 2, 11),
        (t + 120, t + 123, 3, 12),
        (t + 125, t + 126, 4, 16),  # not a launch: ignored
        # step 1 (graph): one graph launch, a memset, then a sync and a blocking copy
        (t + 1000, t + 1010, 5, 13),
        (t + 1012, t + 1014, 6, 17),
        (t + 1020, t + 1900, 7, 14),
        (t + 1950, t + 2000, 8, 15),
    ]
    con.executemany(
        "INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME VALUES (?, ?, 1, ?, ?, ?, 0, NULL)",
        [(s, e, GTID, corr, name) for s, e, corr, name in runtime],
    )
    kernels = [
        # start, end, stream, correlation, name id, grid, block
        (t + 105, t + 111, 7, 1, 1, (2, 1, 1), (128, 1, 1)),
        (t + 117, t + 121, 7, 2, 3, (8, 1, 1), (256, 1, 1)),
        (t + 1012, t + 1020, 7, 5, 2, (1, 1, 1), (32, 1, 1)),
        (t + 1021, t + 1030, 7, 5, 1, (2, 1, 1), (128, 1, 1)),
        (t + 1031, t + 1035, 7, 5, 3, (8, 1, 1), (256, 1, 1)),
    ]
    con.executemany(
        "INSERT INTO CUPTI_ACTIVITY_KIND_KERNEL VALUES "
        "(?, ?, 0, 1, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, NULL)",
        [
            (s, e, st, corr, PID, name, name, *grid, *block)
            for s, e, st, corr, name, grid, block in kernels
        ],
    )
    con.executemany(
        "INSERT INTO CUPTI_ACTIVITY_KIND_MEMCPY VALUES (?, ?, 0, 1, ?, ?, ?, ?, ?, ?, ?)",
        [
            (t + 124, t + 130, 7, 3, PID, 4096, 8, 3, 3),  # DtoD async, step 0
            (t + 1960, t + 1970, 7, 8, PID, 2, 2, 3, 1),
        ],  # DtoH blocking
    )
    con.execute(
        "INSERT INTO CUPTI_ACTIVITY_KIND_MEMSET VALUES (?, ?, 0, 1, 7, 6, ?, 0, 512, NULL, 3)",
        (t + 1036, t + 1037, PID),
    )
    nvtx = [
        # start, end, eventType, text, textId
        (t + 50, t + 2100, 59, "tracekit.profile", None),
        (t + 90, t + 995, 59, "tracekit.step#0", None),
        (t + 995, t + 1940, 59, None, 20),  # text interned in StringIds
        (t + 10, None, 75, "my-domain", None),  # a domain creation, not a range
        (t + 20, None, 34, "a mark", None),
    ]
    con.executemany(
        "INSERT INTO NVTX_EVENTS VALUES (?, ?, ?, NULL, NULL, NULL, ?, ?, NULL, ?, 0)",
        [(s, e, typ, text, GTID, tid) for s, e, typ, text, tid in nvtx],
    )
    con.execute(
        "INSERT INTO TARGET_INFO_GPU VALUES (5, 'NVIDIA H100 80GB HBM3', '0000:00:1e.0', "
        "85520809984, 132)"
    )
    con.execute("INSERT INTO TARGET_INFO_CUDA_DEVICE VALUES (5, 0, ?, 9, 0)", (PID,))
    if meta is not None:
        con.execute("CREATE TABLE TRACEKIT_CAPTURE (key TEXT PRIMARY KEY, value TEXT)")
        con.execute("INSERT INTO TRACEKIT_CAPTURE VALUES ('meta', ?)", (json.dumps(meta),))
    con.commit()
    con.close()
    return path


# -- the streaming reader's cases, shared by test_stream_reader.py and test_reader_workers.py ---
SAMPLES = Path(__file__).resolve().parents[1] / "sample_traces"
JSON_TRACES = sorted(SAMPLES.glob("*.json.gz")) + sorted((SAMPLES / "peer" / "hta").glob("*.json.gz"))
TABLES = ("gpu_ops", "launches", "annotations", "syncs", "cpu_ops")


def explain_bytes(trace) -> bytes:
    """``explain``'s JSON document of a loaded trace, or its error, as bytes to compare."""
    try:
        doc = explain(trace).to_dict()
    except Exception as exc:  # the same error both ways is the same behaviour
        return f"{type(exc).__name__}: {exc}".encode()
    return msgspec.json.encode(doc)


def same_trace(a, b) -> None:
    """Two loads of one trace hold the same tables, meta and warnings."""
    for t in TABLES:
        assert getattr(a, t).equals(getattr(b, t)), t
        assert getattr(a, t).schema == getattr(b, t).schema, t
    assert {**a.meta, "path": None} == {**b.meta, "path": None}
    assert a.warnings == b.warnings


NASTY = ["a},{b", 'q"}, {"x', "back\\slash}]", "日本語カーネル😀" * 40, "x" * 5000,
         "end}\n]", "\u00e9" * 3]


def nasty_events() -> list[dict]:
    """120 steps of events whose names hold JSON punctuation, multi-byte UTF-8 and long runs."""
    ev = []
    t = 1_000_000
    for i in range(120):
        name = NASTY[i % len(NASTY)] + f"#{i}"
        ev.append({"ph": "X", "cat": "cpu_op", "name": name, "pid": 1, "tid": 2, "ts": t,
                   "dur": 3, "args": {"Input Dims": [[1, 2], []], "nested": {"a": [{"b": "}]"}]}}})
        ev.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1,
                   "tid": 2, "ts": t + 1, "dur": 2, "args": {"correlation": i}})
        ev.append({"ph": "X", "cat": "kernel", "name": f"k{i % 5}_{NASTY[i % len(NASTY)]}",
                   "pid": 0, "tid": 7, "ts": f"{t + 5}.{i % 1000:03d}", "dur": 1.5,
                   "args": {"device": 0, "stream": 7, "correlation": i}})
        ev.append({"ph": "f", "id": i, "cat": "ac2g", "name": "ac2g", "pid": 0, "tid": 7,
                   "ts": t + 5})
        t += 100
    return ev


def layouts(ev: list[dict]) -> dict[str, bytes]:
    """The events as a document in four layouts (timestamps written verbatim)."""
    def num(e):  # ts written verbatim (exact decimals)
        return {**e, "ts": "@@" + str(e["ts"]) + "@@"}

    def fix(s: str) -> bytes:
        return s.replace('"@@', "").replace('@@"', "").encode()

    meta = {"deviceProperties": [{"id": 0, "name": "NVIDIA H100 80GB HBM3"},
                                 {"id": 1, "name": "x},{y"}]}
    first = {"traceEvents": [num(e) for e in ev], **meta, "traceName": "t"}
    last = {**meta, "tracekit": {"ctx": 5, "note": '"traceEvents": ['}, "traceEvents":
            [num(e) for e in ev], "after": [{"a": 1}, {"b": 2}]}
    return {
        "compact": fix(json.dumps(first, separators=(",", ":"), ensure_ascii=False)),
        "pretty": fix(json.dumps(last, indent=2, ensure_ascii=False)),
        "spaces": fix(json.dumps(last, ensure_ascii=True)),
        "bare-array": fix(json.dumps([num(e) for e in ev], indent=1, ensure_ascii=False)),
    }


# -- host stalls on a real trace (tests/test_host.py, test_validation.py) ------------------------
def stall_oracle(path: Path) -> list[tuple[str, float, int, int]]:
    """Per tracekit step: (name of the innermost CPU op on the launching thread covering at least
    half of the step's largest GPU gap, the idle inside that op instance in ms, its 1-based
    occurrence among the step's ops of that name, how many there are)."""
    ev = stdlib_trace(path)["traceEvents"]
    x = [e for e in ev if e.get("ph") == "X"]
    steps = sorted((float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in x
                   if e.get("cat") == "user_annotation" and e["name"].startswith("tracekit.step#"))
    launches = {e["args"]["correlation"]: e for e in x
                if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {})}
    gpu = [e for e in x if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    cpu = [e for e in x if e.get("cat") == "cpu_op"]
    out = []
    for i, (s, t) in enumerate(steps[:-1]):
        nxt = steps[i + 1]

        def in_range(e, lo, hi):
            lz = launches.get(e["args"].get("correlation"))
            return lz is not None and lo <= float(lz["ts"]) < hi

        ops = sorted((e for e in gpu if in_range(e, s, t)), key=lambda e: float(e["ts"]))
        first_next = min((e for e in gpu if in_range(e, *nxt)), key=lambda e: float(e["ts"]))
        ops.append(first_next)
        gaps, run_end = [], float(ops[0]["ts"]) + float(ops[0]["dur"])
        for e in ops[1:]:
            if float(e["ts"]) > run_end:
                gaps.append((run_end, float(e["ts"]), e))
            run_end = max(run_end, float(e["ts"]) + float(e["dur"]))
        a, b, ender = max(gaps, key=lambda g: g[1] - g[0])
        tid = launches[ender["args"]["correlation"]]["tid"]
        mid = (a + b) / 2
        holding = [e for e in cpu if e["tid"] == tid and float(e["ts"]) <= mid < float(e["ts"]) + float(e["dur"])
                   and min(b, float(e["ts"]) + float(e["dur"])) - max(a, float(e["ts"])) >= (b - a) / 2]
        op = min(holding, key=lambda e: float(e["dur"]))
        lo, hi = float(op["ts"]), float(op["ts"]) + float(op["dur"])
        idle = sum(g[1] - g[0] for g in gaps if lo <= (g[0] + g[1]) / 2 < hi)
        same = sorted(float(e["ts"]) for e in cpu if e["name"] == op["name"] and s <= float(e["ts"]) < t)
        out.append((op["name"], idle / 1e3, same.index(float(op["ts"])) + 1, len(same)))
    return out


def lookup_windows(path: Path) -> list[tuple[int, int, int, int]]:
    """(start, latency, GPU busy, idle) in ns of each decode step that has a successor, with
    json.load: a step runs from its embedding lookup's start to the next one's; busy is the union
    of the GPU ops (kernels, copies, memsets) clipped to that window, idle the rest of it.
    Timestamps are read as decimals, so nanoseconds are exact."""
    events = json.load(gzip.open(path), parse_float=Decimal)["traceEvents"]
    ops = [(int(Decimal(e["ts"]) * 1000), int((Decimal(e["ts"]) + Decimal(e["dur"])) * 1000),
            e["cat"] == "kernel" and "indexSelect" in e["name"])
           for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    starts = sorted(a for a, _, lookup in ops if lookup)
    out = []
    for t0, t1 in zip(starts, starts[1:]):
        busy = sum(b - a for a, b in merge_intervals(
            [(max(a, t0), min(b, t1)) for a, b, _ in ops if min(b, t1) > max(a, t0)]))
        out.append((t0, t1 - t0, busy, t1 - t0 - busy))
    return out
