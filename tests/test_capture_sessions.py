"""Multi-session captures (``--sessions N``) and ``--attention``, on the CPU with the tiny model.

Each session is a fresh process; the tests check what one output must hold — every session's
own timings, which session profiled, a summary over sessions that an independent mean and median
of the sessions' medians reproduce — and that the profiled session's trace survives the metadata
rewrite event for event.
"""

from __future__ import annotations

import gzip
import json
import statistics
from pathlib import Path

import pytest
from helpers import run

from tracekit.capture.write import replace_meta, write_trace
from tracekit.trace.capture_meta import read_capture_meta

TINY = ["capture", "--model", "tiny", "--device", "cpu", "--ctx", "24", "--steps", "4",
        "--warmup", "1", "--profile-steps", "2", "--quiet"]


def _doc(path: Path) -> dict:
    with gzip.open(path, "rt") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def two_sessions_run(tmp_path_factory) -> tuple[Path, str]:
    pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("sess") / "two.json.gz"
    r = run(*TINY, "--sessions", "2", "--profile-session", "1", "-o", str(out))
    assert r.exit_code == 0, r.output
    return out, r.output


@pytest.fixture(scope="module")
def two_sessions(two_sessions_run) -> Path:
    return two_sessions_run[0]


def test_every_session_is_recorded(two_sessions: Path) -> None:
    meta = _doc(two_sessions)["tracekit"]
    s = meta["sessions"]
    assert s["n"] == 2 and s["profiled_session"] == 1
    assert [r["session"] for r in s["runs"]] == [0, 1]
    assert [r["profiled"] for r in s["runs"]] == [False, True]
    for one in s["runs"]:
        ms = one["timing"]["unprofiled_ms"]
        assert len(ms) == 4 and all(x > 0 for x in ms)
        assert one["timing"]["median_ms"] == pytest.approx(statistics.median(ms), abs=1e-6)
    # only the profiled session times steps after its profiled window
    assert s["runs"][0]["timing_after"] is None and len(s["runs"][1]["timing_after"]["unprofiled_ms"]) == 4
    medians = [r["timing"]["median_ms"] for r in s["runs"]]
    assert meta["timing_sessions"]["median_ms"] == pytest.approx(statistics.median(medians), abs=1e-6)
    assert meta["timing_sessions"]["mean_ms"] == pytest.approx(statistics.mean(medians), abs=1e-6)
    # the top-level metadata is the profiled session's own
    assert meta["timing"] == s["runs"][1]["timing"] and meta["session"] == 1


def test_every_session_calibrates_and_the_interval_spans_them(two_sessions_run) -> None:
    """Each session measures the profiler's cost in its own process (the unprofiled one too);
    the trace's calibration is the profiled session's point, its interval spanning every
    session's (the cost differs more between processes than within one)."""
    two_sessions, output = two_sessions_run
    pc = _doc(two_sessions)["tracekit"]["profiler_cost"]
    per = pc["sessions"]
    assert len(per) == 2 and all(p is not None for p in per)
    # the profiled session (1) is the point, and its own interval is the second entry's
    assert per[1]["ns_per_event"] == pc["ns_per_event"]
    lo = min(p["interval_ns"][0] for p in per)
    hi = max(p["interval_ns"][1] for p in per)
    assert pc["interval_ns"] == [lo, hi]
    assert lo <= min(p["ns_per_event"] for p in per) and max(p["ns_per_event"] for p in per) <= hi
    assert "2 processes" in pc["interval_basis"]
    # each session's stall-free calibration step, unprofiled: the profiled session's own samples
    # are in the trace's calibration, and its median is kept beside the other session's
    assert per[1]["unprofiled_median_ms"] == pytest.approx(
        statistics.median(pc["unprofiled_ms"]), abs=1e-5)
    assert per[0]["unprofiled_median_ms"] > 0
    # the capture's summary says it, with the interval
    line = next(ln for ln in output.splitlines()
                if ln.startswith("profiler cost"))
    assert f"{pc['ns_per_event'] / 1e3:.2f} µs per host event" in line
    assert f"({lo / 1e3:.2f}–{hi / 1e3:.2f}; every session's interval (2 processes)" in line


def test_the_summary_prints_the_latency_compare_reports(two_sessions_run) -> None:
    """The capture's summary leads with the mean of the session medians: the number `tracekit
    compare` and `tracekit sweep` give for the same capture."""
    from tracekit.compare import compare

    path, output = two_sessions_run
    line = next(ln for ln in output.splitlines() if ln.startswith("unprofiled"))
    latency = compare(path, path, resamples=200).to_dict()["a"]["latency_ms"]
    assert f"{latency:.2f} ms/step (mean of 2 session medians" in line, line


def test_summary_over_sessions_mean_and_median() -> None:
    from tracekit.capture.sessions import session_summary

    runs = [{"timing": {"median_ms": m}} for m in (10.0, 15.0, 11.0)]
    t = session_summary(runs)
    assert (t["mean_ms"], t["median_ms"], t["session_medians_ms"]) == (12.0, 11.0, [10.0, 15.0, 11.0])


@pytest.mark.parametrize(("mean", "head"), [
    (12.0, "12.000 ms/step (mean of 3 session medians, as compare and sweep report it; median 11.000"),
    (None, "11.000 ms/step (median of 3 session medians; p10"),  # captures made before mean_ms
])
def test_reports_name_the_statistic_over_sessions(mean, head) -> None:
    from tracekit.report.text import capture_rows

    t = {"sessions": 3, "session_medians_ms": [10.0, 11.0, 15.0], "median_ms": 11.0,
         "p10_ms": 10.2, "p90_ms": 14.2, **({"mean_ms": mean} if mean is not None else {})}
    rows = dict(capture_rows({"source": {"capture": {"mode": "eager", "timing_sessions": t}}}))
    assert rows["unprofiled, over sessions"].startswith(head), rows


def test_the_profiled_session_trace_is_kept(two_sessions: Path) -> None:
    doc = _doc(two_sessions)
    steps = {e["name"] for e in doc["traceEvents"] if e.get("cat") == "user_annotation"}
    assert steps == {"tracekit.step#0", "tracekit.step#1"}
    assert read_capture_meta(two_sessions) == doc["tracekit"]  # still the first key


@pytest.mark.slow  # runs a model on the CPU (torch)
def test_no_profiled_session(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    out = tmp_path / "none.json.gz"
    r = run(*TINY, "--sessions", "1", "--profile-session", "none", "-o", str(out))
    assert r.exit_code == 0, r.output
    doc = _doc(out)
    assert doc["traceEvents"] == []
    assert doc["tracekit"]["profiled"] is None and doc["tracekit"]["sessions"]["profiled_session"] is None
    assert not any(run["profiled"] for run in doc["tracekit"]["sessions"]["runs"])
    assert [p.name for p in tmp_path.iterdir()] == ["none.json.gz"]  # no temporaries left


def test_replace_meta_keeps_every_event(tmp_path: Path) -> None:
    events = [{"ph": "X", "cat": "kernel", "name": f"k{i}", "ts": i, "dur": 1} for i in range(50)]
    src = tmp_path / "a.json.gz"
    write_trace(lambda p: Path(p).write_text(json.dumps({"traceEvents": events})), {"x": 1}, src)
    dst = tmp_path / "b.json.gz"
    replace_meta(src, {"x": 2, "sessions": {"n": 3}}, dst)
    doc = _doc(dst)
    assert doc["tracekit"] == {"x": 2, "sessions": {"n": 3}} and doc["traceEvents"] == events


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--sessions", "0"], "--sessions must be at least 1, got 0"),
        (["--sessions", "2", "--profile-session", "2"], "--profile-session must be 'none' or a session index from 0 to 1"),
        (["--profile-session", "first"], "--profile-session must be a session index"),
        (["--attention", "flashy"], "unknown --attention 'flashy'"),
    ],
)
def test_bad_session_and_attention_options(args: list[str], needle: str) -> None:
    r = run("capture", "--model", "tiny", "--device", "cpu", *args)
    assert r.exit_code == 2
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], r.output


@pytest.mark.slow  # runs a model on the CPU (torch)
def test_an_sdpa_backend_the_device_lacks_is_one_error(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    r = run(*TINY, "--attention", "sdpa-cudnn", "-o", str(tmp_path / "x.json.gz"))
    assert r.exit_code == 1
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("Error: --attention sdpa-cudnn: PyTorch has no such SDPA kernel")
    assert "Traceback" not in r.output and not list(tmp_path.iterdir())


@pytest.mark.parametrize(("attention", "op"), [
    ("sdpa-math", "aten::_scaled_dot_product_attention_math"),
    ("eager", None),
])
@pytest.mark.slow  # runs a model on the CPU (torch)
def test_attention_that_ran_is_recorded(tmp_path: Path, attention: str, op: str | None) -> None:
    pytest.importorskip("transformers")
    out = tmp_path / "a.json.gz"
    r = run(*TINY, "--attention", attention, "-o", str(out))
    assert r.exit_code == 0, r.output
    doc = _doc(out)
    names = {e["name"] for e in doc["traceEvents"] if e.get("cat") == "cpu_op"}
    ran = doc["tracekit"]["attention"]
    assert ran["requested"] == attention
    if op is None:  # transformers' eager attention: matmul + softmax, no SDPA op at all
        assert ran["ops"] == {} and not any(n.startswith("aten::_scaled_dot_product") for n in names)
        assert "aten::softmax" in names or "aten::_softmax" in names
    else:
        assert op in ran["ops"] and op in names
