"""The unprofiled step: where its latency comes from, the split model, warnings and bad input."""

from __future__ import annotations

import gzip
import json
import random
import statistics
import subprocess
import sys

import pytest
from helpers import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from synth import decode_steps, stall_trace, write_trace

from tracekit.errors import BadInput
from tracekit.explain import explain
from tracekit.unprofiled import bimodal, split


def _capture(before, after=None, sessions=None):
    cap = {"schema": "tracekit.capture/1", "mode": "eager",
           "timing": {"steps": len(before), "warmup": 5, "unprofiled_ms": before}}
    if after is not None:
        cap["timing_after"] = {"steps": len(after), "warmup": 5, "unprofiled_ms": after}
    if sessions is not None:
        cap["sessions"] = sessions
    return {"tracekit": cap}


def test_flag_explains_the_real_step(tmp_path):
    e = explain(write_trace(tmp_path / "e.json.gz", decode_steps(5, kernel_us=2)),
                unprofiled_ms=0.05)
    u, busy = e.unprofiled, e.summary["gpu_busy_ms"]
    assert u["source"] == "flag" and u["latency_ms"] == 0.05
    assert u["profiler_overhead"] == pytest.approx(0.1 / 0.05)
    assert u["decomposition"]["launch_overhead_ms"] == pytest.approx(0.05 - busy)
    assert u["whatif"]["cuda_graphs_speedup"] == pytest.approx(0.05 / e.whatif["cuda_graphs_ms"])
    # the profiled decomposition stays as it was
    assert e.decomposition["latency_ms"] == pytest.approx(0.1)


def test_no_unprofiled_latency_is_null(tmp_path):
    e = explain(write_trace(tmp_path / "e.json.gz", decode_steps(3)))
    assert e.unprofiled is None and e.to_dict()["unprofiled"] is None


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_flag_must_be_a_positive_number(tmp_path, bad):
    with pytest.raises(BadInput, match="--unprofiled-ms"):
        explain(write_trace(tmp_path / "e.json.gz", decode_steps(3)), unprofiled_ms=bad)


def test_flag_below_gpu_busy_is_an_error(tmp_path):
    # GPU busy is 3 × 5 µs per step: 0.01 ms is shorter than the step's own kernels
    with pytest.raises(BadInput, match="--unprofiled-ms .*GPU busy"):
        explain(write_trace(tmp_path / "e.json.gz", decode_steps(3)), unprofiled_ms=0.01)


@pytest.mark.parametrize("value", ["0", "-2", "nan", "0.001"])
def test_cli_bad_flag_is_one_error_line(tmp_path, value):
    path = write_trace(tmp_path / "e.json.gz", decode_steps(3))
    r = subprocess.run([sys.executable, "-m", "tracekit", "explain", str(path),
                        f"--unprofiled-ms={value}", "--html", str(tmp_path / "r.html")],
                       capture_output=True, text=True)
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "--unprofiled-ms" in lines[0]
    assert not (tmp_path / "r.html").exists()


def test_capture_uses_the_steps_before_the_window_and_drift_warns(tmp_path):
    before, after = [0.060] * 9, [0.080] * 9
    e = explain(write_trace(tmp_path / "e.json.gz", decode_steps(5, kernel_us=2),
                            extra=_capture(before, after)))
    u = e.unprofiled
    # the steps after the profiled window are a drift check, not a sample (the host often stays
    # slower after torch.profiler stops in the same process)
    assert u["source"] == "capture" and u["latency_ms"] == pytest.approx(0.060)
    assert u["samples"]["before_ms"] == 0.060 and u["samples"]["after_ms"] == 0.080
    assert any("before the profiled window" in w for w in e.warnings)


def test_sessions_median_is_reported(tmp_path):
    runs = [{"session": i, "timing": {"unprofiled_ms": [0.05 + 0.01 * i] * 5},
             "timing_after": {"unprofiled_ms": [0.05 + 0.01 * i] * 5}, "profiled": i == 0}
            for i in range(5)]
    e = explain(write_trace(tmp_path / "e.json.gz", decode_steps(5, kernel_us=2),
                            extra=_capture([0.05] * 5, [0.05] * 5,
                                           {"n": 5, "profiled_session": 0, "runs": runs})))
    assert e.unprofiled["samples"]["sessions"] == 5
    assert e.unprofiled["samples"]["sessions_median_ms"] == pytest.approx(0.07)
    assert e.unprofiled["samples"]["sessions"] == 5
    # a trace is one process: it is decomposed against its own session's steps, and the
    # sessions' median is what to expect on average, with their range
    assert e.unprofiled["latency_ms"] == pytest.approx(0.05)
    assert e.unprofiled["expected_ms"] == pytest.approx(0.07)
    assert e.unprofiled["sessions_range_ms"] == pytest.approx([0.05, 0.09])
    assert e.unprofiled["expected_basis"] == "median of 5 sessions"
    assert e.unprofiled["samples"]["before_ms"] == pytest.approx(0.05)
    assert any("fresh sessions disagree" in w for w in e.warnings)  # 0.05–0.09 ms


def test_overhead_below_one_warns(tmp_path):
    e = explain(write_trace(tmp_path / "e.json.gz", decode_steps(5, kernel_us=2),
                            extra=_capture([0.2] * 10)))
    assert e.unprofiled["profiler_overhead"] == pytest.approx(0.5)
    assert not e.unprofiled["reliable"]
    assert any("faster than the unprofiled one" in w for w in e.warnings)


def test_bimodal_samples_warn(tmp_path):
    rng = random.Random(0)
    samples = [0.065 + rng.uniform(-0.002, 0.002) for _ in range(10)] + \
              [0.100 + rng.uniform(-0.004, 0.004) for _ in range(20)]
    e = explain(write_trace(tmp_path / "e.json.gz", decode_steps(5, kernel_us=2),
                            extra=_capture(samples)))
    assert any("bimodal" in w for w in e.warnings)


@settings(max_examples=examples(50), deadline=None)
@given(st.lists(st.floats(50, 52), min_size=10, max_size=60))
def test_one_narrow_mode_is_not_bimodal(xs):
    assert bimodal(xs) is None


@settings(max_examples=examples(50), deadline=None)
@given(st.lists(st.floats(60, 62), min_size=8, max_size=30),
       st.lists(st.floats(95, 100), min_size=8, max_size=30))
def test_two_separated_modes_are_bimodal(lo, hi):
    # each mode holds >= 8 of <= 60 samples: above the 20% a cluster needs
    m = bimodal(lo + hi)
    assert m is not None and 60 <= m[0] <= 62 and 95 <= m[1] <= 100


def test_split_model_arithmetic():
    # an H100-like eager step: 93 ms profiled (49 of it one stall), 55 ms unprofiled, 7 ms busy,
    # 5000 recorded events at 5 µs each: issue 43.8 → 18.8 ms, the stall is the rest
    sp = split(u=55.0, p=93.0, busy=7.0, other=0.2, stall_p=49.0, events=5000, cost_ns=5000.0)
    assert sp["host_issue_ms"] == pytest.approx(43.8 - 25.0)
    assert sp["stall_ms"] == pytest.approx(55.0 - 18.8 - 0.2)
    assert sp["launch_issue_ms"] == pytest.approx(55.0 - 7.0 - 0.2 - 36.0)
    # no calibration: the split is unknown, not guessed
    assert split(u=55.0, p=93.0, busy=7.0, other=0.2, stall_p=49.0, events=5000,
                 cost_ns=None)["stall_ms"] is None
    # no stall: everything above the busy time and other idle is launch issue
    free = split(u=20.0, p=46.0, busy=7.0, other=0.2, stall_p=0.0, events=5200, cost_ns=None)
    assert free["stall_ms"] == 0 and free["launch_issue_ms"] == pytest.approx(12.8)
    assert free["cost_us_per_event"] == pytest.approx(26.0 / 5200 * 1e3)


def _other(e) -> float:
    classes = e.decomposition["launch_overhead_by_class_ms"]
    return sum(v for c, v in classes.items() if c != "host_bound")


def test_stall_trace_with_flag_estimates_the_cost_from_the_trace(tmp_path):
    """No capture calibration: the cost is the trace's own (P − U) ÷ events, the stall assumed as
    long unprofiled (point) up to 35% longer under the profiler (the range) — never another
    machine's number, and said so."""
    e = explain(stall_trace(tmp_path, gpu_name="NVIDIA L4"), unprofiled_ms=0.8)
    u, h, p = e.unprofiled, e.host, e.summary["latency_ms"]
    events, stall_p = h["events_per_step"], h["stall_ms"]
    assert u["calibration_source"] == "trace-estimate" and not u["reliable"]
    assert u["profiler_cost_us"] == pytest.approx((p - 0.8) / events * 1e3)
    low = (p - 0.8 - stall_p * 0.35 / 1.35) / events * 1e3
    assert u["profiler_cost_interval_us"] == pytest.approx([low, (p - 0.8) / events * 1e3])
    # at the point, the unprofiled stall is the profiled one (it is "as long unprofiled")
    assert u["decomposition"]["stall_ms"] == pytest.approx(stall_p)
    lo, hi = u["decomposition"]["stall_interval_ms"]
    assert lo < stall_p <= hi + 1e-12
    assert "not measured on this host" in e.verdict


def test_no_cost_when_the_profiled_step_is_not_longer(tmp_path):
    # P ≤ U: no profiler cost can be read from the trace, so the split is unknown, not guessed
    e = explain(stall_trace(tmp_path), unprofiled_ms=1.2)
    assert e.unprofiled["decomposition"]["stall_ms"] is None
    assert e.unprofiled["calibration_source"] is None and "unknown" in e.unprofiled["calibration"]
    assert "(profiled; the unprofiled step is 1.20 ms)" in e.verdict


def test_a_capture_calibration_splits_the_real_step(tmp_path):
    """A capture that measured its host's profiler cost: that cost, ``this-capture``."""
    path = stall_trace(tmp_path)
    cost_ns = 0.5  # per event: the synthetic step's events are ns apart
    cap = {"schema": "tracekit.capture/1", "mode": "eager",
           "timing": {"steps": 30, "warmup": 5, "unprofiled_ms": [0.9] * 30},
           "profiler_cost": {"ns_per_event": cost_ns, "interval_ns": [0.45, 0.55]}}
    doc = json.load(gzip.open(path))
    doc["tracekit"] = cap
    with gzip.open(path, "wt") as f:
        json.dump(doc, f)
    e = explain(path)
    u, h = e.unprofiled, e.host
    assert u["calibration_source"] == "this-capture"
    assert u["profiler_cost_us"] == pytest.approx(cost_ns / 1e3)
    assert u["profiler_cost_interval_us"] == pytest.approx([0.45e-3, 0.55e-3])
    # the point: the stall as long as profiled (one op, a handful of events inside it)
    assert e.summary["latency_ms"] > 0.9
    assert u["decomposition"]["stall_ms"] == pytest.approx(h["stall_ms"])
    # the interval holds the split at the measured cost too: the profiled issue time less the
    # measured cost per event, the stall the rest
    h_u = max(e.summary["latency_ms"] - h["stall_ms"] - _other(e)
              - cost_ns * h["events_per_step"] / 1e6, e.summary["gpu_busy_ms"])
    s_lo, s_hi = u["decomposition"]["stall_interval_ms"]
    assert s_lo <= 0.9 - h_u - _other(e) <= s_hi and s_lo <= h["stall_ms"] <= s_hi
    lo, hi = u["whatif"]["no_stalls_interval_ms"]
    assert e.summary["gpu_busy_ms"] <= lo <= u["whatif"]["no_stalls_ms"] <= hi
    assert lo <= max(h_u, e.summary["gpu_busy_ms"]) + _other(e) <= hi
    assert "this host's measured profiler cost" in e.verdict
    # the trace's own P − U implies a cost the measurement does not hold: not reliable, and said
    assert u["reliable"] is False and "outside the measured range" in u["calibration"]


def test_a_failed_capture_calibration_falls_back_to_the_trace_estimate(tmp_path, monkeypatch):
    """A calibration that failed on the GPU box never fails the capture: the metadata says why,
    and explain estimates the cost from the trace instead of using a missing number."""
    from tracekit.capture import calibrate

    def boom(*a, **k):
        raise RuntimeError("No available kernel.\nmore")

    monkeypatch.setattr(calibrate, "profiled", boom)
    pc = calibrate.measure(lambda: None, [1.0] * 10, device="cpu", kinds=["cpu"],
                           backend=lambda: None, what="x")
    assert pc == {"error": "RuntimeError: No available kernel.", "ns_per_event": None}
    path = stall_trace(tmp_path)
    doc = json.load(gzip.open(path))
    doc["tracekit"] = {"schema": "tracekit.capture/1", "mode": "eager", "profiler_cost": pc,
                       "timing": {"steps": 30, "warmup": 5, "unprofiled_ms": [0.9] * 30}}
    with gzip.open(path, "wt") as f:
        json.dump(doc, f)
    assert explain(path).unprofiled["calibration_source"] == "trace-estimate"


def test_the_no_stalls_interval_widens_by_the_sessions_stall_free_steps(tmp_path):
    """A capture whose sessions each ran the stall-free step (its calibration, unprofiled): the
    interval widens by how far those steps sit from the profiled session's own, each way — the
    same step in other processes."""
    path = stall_trace(tmp_path)
    doc = json.load(gzip.open(path))
    base = {"ns_per_event": 0.5, "interval_ns": [0.45, 0.55], "unprofiled_ms": [0.40] * 10,
            "workload": "decode steps, SDPA flash attention"}
    doc["tracekit"] = {"schema": "tracekit.capture/1", "mode": "eager",
                       "timing": {"steps": 30, "warmup": 5, "unprofiled_ms": [0.9] * 30},
                       "profiler_activities": ["cpu", "cuda"],
                       "profiler_cost": {**base, "events_basis": "the calibration steps' CPU ranges"}}
    with gzip.open(path, "wt") as f:
        json.dump(doc, f)
    narrow = explain(path).unprofiled["whatif"]["no_stalls_interval_ms"]
    # the same capture, its two sessions' stall-free steps at 0.30 and 0.60 ms (own: 0.40)
    doc["tracekit"]["profiler_cost"]["sessions"] = [
        {"ns_per_event": 0.5, "interval_ns": [0.45, 0.55], "unprofiled_median_ms": 0.30},
        {"ns_per_event": 0.5, "interval_ns": [0.45, 0.55], "unprofiled_median_ms": 0.60}]
    with gzip.open(path, "wt") as f:
        json.dump(doc, f)
    e = explain(path)
    lo, hi = e.unprofiled["whatif"]["no_stalls_interval_ms"]
    # no step noise, no drift, no session timings: only the stall-free steps widen it
    assert lo == pytest.approx(max(narrow[0] * (1 - 0.25), e.summary["gpu_busy_ms"]))
    assert hi == pytest.approx(narrow[1] * 1.5)
    # a count that says its basis is not halved
    assert e.unprofiled["profiler_cost_us"] == pytest.approx(0.5e-3)


def test_the_stall_free_step_is_a_measurement_only_where_flash_was_forced(tmp_path):
    """``unprofiled.stall_free_measured`` is the calibration's unprofiled steps only where the
    calibration forced flash attention in place of the trace's own: a calibration that ran the
    step as captured (a flash capture, a CPU one) measured no step without the stall."""
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "sample_traces" / "campaign_h100" / \
        "qwen2.5-7b_ctx2048_eager.json.gz"
    doc = json.load(gzip.open(src))
    pc = doc["tracekit"]["profiler_cost"]
    pc["sessions"] = [{"unprofiled_median_ms": 20.5}, {"unprofiled_median_ms": 27.25}]
    flash = tmp_path / "flash.json.gz"
    with gzip.open(flash, "wt") as f:
        json.dump(doc, f)
    got = explain(str(flash)).to_dict()["unprofiled"]["stall_free_measured"]
    assert got["sessions_ms"] == [20.5, 27.25]
    assert got["ms"] == pytest.approx(statistics.median(pc["unprofiled_ms"]))
    pc["workload"] = "decode steps, as captured"
    plain = tmp_path / "as_captured.json.gz"
    with gzip.open(plain, "wt") as f:
        json.dump(doc, f)
    e = explain(str(plain))
    assert e.unprofiled["stall_free_measured"] is None
    assert "measured with flash attention forced" not in e.verdict


def test_disagreeing_sessions_are_shown_with_the_numa_node_each_ran_on(tmp_path):
    """Where the capture recorded where each session's launching thread ran (``host_cpus``), the
    warning about sessions that disagree lays each session's median beside its NUMA node — here
    the H200 capture's ten sessions (59–99 ms), their nodes written in by this test; with one node
    for all, or none recorded, the warning says nothing of nodes."""
    from pathlib import Path

    src = Path(__file__).resolve().parents[1] / "sample_traces" / "h200" / \
        "qwen2.5-7b_ctx2048_eager.json.gz"
    doc = json.load(gzip.open(src))
    runs = doc["tracekit"]["sessions"]["runs"]

    def explained(nodes):
        for r, n in zip(runs, nodes):
            r["host_cpus"] = {"policy": "none", "allowed": "0-15", "gpu": None,
                              "launching_thread": {"before_timing": {"cpu": 3, "numa_node": n},
                                                   "after_timing": {"cpu": 3, "numa_node": n}}}
        path = tmp_path / f"h200_{len(set(nodes))}.json.gz"
        with gzip.open(path, "wt") as f:
            json.dump(doc, f)
        return [w for w in explain(str(path)).warnings if "fresh sessions disagree" in w]

    nodes = [i % 2 for i in range(len(runs))]
    (w,) = explained(nodes)
    listed = w.split("each session's median with the NUMA node its launching thread ran on: ")[1]
    want = [f"{statistics.median(r['timing']['unprofiled_ms']):.1f} ms (node {n})"
            for r, n in zip(runs, nodes)]
    assert listed.split(", ") == want
    (w,) = explained([0] * len(runs))
    assert "NUMA" not in w
