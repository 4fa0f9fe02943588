"""Validated on a GPU, not assumed: tracekit's host attribution, its unprofiled-step model and
its what-ifs against what the same GPU measured in *other* processes.

The committed multi-session captures (``sample_traces/h100/`` and ``sample_traces/h200/``: Qwen2.5-7B
shape, ctx 2048, eager with the default SDPA, eager with flash SDPA, cuda-graphs; ≥ 5 fresh
sessions each, one profiled) hold the measurements. Every measured number below is computed here
from the raw files with ``json.load`` and ``statistics`` — the median over sessions of each
session's median unprofiled step — and the stall is named by an independent oracle (the CPU op on
the launching thread spanning the largest GPU gap of each step).

The predictions are tracekit's, from the default-SDPA trace alone. These captures predate the
capture's own profiler calibration, so the per-event profiler cost is the **trace estimate**
(``calibration_source: trace-estimate``): nothing is fitted to these two hosts (two different
machines, 2.35 and 5.57 µs per event as their traces estimate it), and the flash and graph steps
it is checked against are other captures, other processes. Targets (issue "What-ifs you can trust
on any host"): without the stalls within 20% of the measured flash step, its interval covering
it; the CUDA-Graphs speed-up of the graph program (``--graph-trace``) within 15% of the measured
ratio — the default predicts the eager kernels replayed, which HF's static-cache graph is not.

A third host (``sample_traces/campaign_h100/``: a capture that measured its own profiler cost, 2
sessions, with the same step's replay as one graph) is checked at the end: against the stall-free
step its own process ran, the flash capture's processes and the replay.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from helpers import stall_oracle, stdlib_trace

from tracekit.explain import explain

SAMPLES = Path(__file__).parent.parent / "sample_traces"
GPUS = {"h100": "NVIDIA H100 80GB HBM3", "h200": "NVIDIA H200"}
#: the CUDA-Graphs speed-up target
GRAPHS_TOLERANCE = 0.15


def _path(gpu: str, mode: str) -> Path:
    return SAMPLES / gpu / f"qwen2.5-7b_ctx2048_{mode}.json.gz"


def _measured(gpu: str, mode: str) -> float:
    """Median over the capture's fresh sessions of each session's median unprofiled step (ms)."""
    meta = stdlib_trace(_path(gpu, mode))["tracekit"]
    runs = meta["sessions"]["runs"]
    assert len(runs) >= 5
    return statistics.median(statistics.median(r["timing"]["unprofiled_ms"]) for r in runs)


@pytest.fixture(scope="module", params=sorted(GPUS))
def gpu(request, explained):
    g = request.param
    return {
        "gpu": g,
        "default": explained(_path(g, "eager")),
        "flash": explained(_path(g, "eager_sdpa-flash")),
        "measured": {m: _measured(g, m) for m in ("eager", "eager_sdpa-flash", "cuda-graphs")},
    }


def _own(gpu: str, mode: str) -> float:
    """The profiled session's own median unprofiled step (ms), from the raw file."""
    meta = stdlib_trace(_path(gpu, mode))["tracekit"]
    return statistics.median(meta["timing"]["unprofiled_ms"])


def test_a_stall_free_trace_reports_its_own_profiler_cost(gpu):
    """No stall needs no calibration; the flash trace's own (profiled − unprofiled) ÷ events is
    reported as this capture's cost, against the raw file's own session."""
    f = gpu["flash"]
    assert f.host["stalls"] == [] or f.host["stall_ms"] == 0
    events = f.host["events_per_step"]
    cost_us = (f.summary["latency_ms"] - _own(gpu["gpu"], "eager_sdpa-flash")) / events * 1e3
    assert f.unprofiled["profiler_cost_us"] == pytest.approx(cost_us, rel=1e-6)
    assert f.unprofiled["calibration_source"] == "this-capture"


def test_the_trace_is_decomposed_against_its_own_session(gpu):
    """A trace is one process: its unprofiled latency is that process's steps; the sessions'
    median is what to expect on average."""
    for mode, e in (("eager", gpu["default"]), ("eager_sdpa-flash", gpu["flash"])):
        u = e.unprofiled
        assert u["latency_ms"] == pytest.approx(_own(gpu["gpu"], mode), rel=1e-9)
        assert u["expected_ms"] == pytest.approx(gpu["measured"][mode], rel=1e-9)
        assert u["sessions_range_ms"][0] <= u["expected_ms"] <= u["sessions_range_ms"][1]


def test_the_named_stall_is_the_cudnn_plan_build(gpu):
    oracle = stall_oracle(_path(gpu["gpu"], "eager"))
    assert {name for name, *_ in oracle} == {"aten::_cudnn_attention_forward"}
    top = gpu["default"].host["stalls"][0]
    assert top["op"] == "aten::_cudnn_attention_forward" and top["cause_id"] == "cudnn_sdpa_plan"
    assert gpu["default"].verdict.startswith("Host-stalled:")
    assert "CUDA Graphs" not in gpu["default"].verdict
    # flash attention has no such stall: its verdict is the per-launch issue cost
    assert gpu["flash"].verdict.startswith("Launch-bound:")


def test_stall_size_against_the_default_minus_flash_difference(gpu):
    """The unprofiled stall against what forcing flash saved in the profiled session's process
    scale: its own default step minus the flash sessions' median, within 20%."""
    difference = _own(gpu["gpu"], "eager") - gpu["measured"]["eager_sdpa-flash"]
    predicted = gpu["default"].unprofiled["decomposition"]["stall_ms"]
    assert predicted == pytest.approx(difference, rel=0.20)
    # the profiled trace's stall (the oracle's) is the same order, inflated by the profiler
    oracle = stall_oracle(_path(gpu["gpu"], "eager"))
    profiled = sum(idle for _, idle, *_ in oracle) / len(oracle)
    assert 0.8 * difference < profiled < 1.5 * difference


def test_without_the_stalls_predicts_the_flash_step(gpu):
    u = gpu["default"].unprofiled
    assert u["calibration_source"] == "trace-estimate" and u["reliable"] is False
    predicted, (lo, hi) = u["whatif"]["no_stalls_ms"], u["whatif"]["no_stalls_interval_ms"]
    measured = gpu["measured"]["eager_sdpa-flash"]
    assert predicted == pytest.approx(measured, rel=0.20)
    assert lo <= measured <= hi
    assert lo <= predicted <= hi
    # never below the GPU's own work, and never slower than the graph what-if's "no host gaps"
    assert lo >= gpu["default"].summary["gpu_busy_ms"]
    assert u["whatif"]["cuda_graphs_ms"] <= predicted


@pytest.mark.parametrize("attention", ["eager", "eager_sdpa-flash"])
def test_cuda_graphs_speedup_against_the_measured_ratio(gpu, attention):
    """The graph what-if against the measured graph step, both over the sessions' medians: with
    the graph capture given (--graph-trace) it predicts that program, HF's static-cache graph,
    within the target; the default predicts these kernels replayed, which HF's graph is not — it
    runs more kernels, so the default's speed-up is the larger one."""
    e = gpu["default"] if attention == "eager" else gpu["flash"]
    m = gpu["measured"]
    measured = m[attention] / m["cuda-graphs"]
    g = explain(_path(gpu["gpu"], attention), graph_trace=_path(gpu["gpu"], "cuda-graphs"))
    assert g.whatif["cuda_graphs_program"] == "the graph trace's program"
    program = g.unprofiled["expected_ms"] / g.unprofiled["whatif"]["cuda_graphs_ms"]
    assert program == pytest.approx(measured, rel=GRAPHS_TOLERANCE)
    same_kernels = e.unprofiled["expected_ms"] / e.unprofiled["whatif"]["cuda_graphs_ms"]
    assert same_kernels > measured


# -- a capture that measured its own profiler cost (calibration campaign, one H100 host) -------
CAMPAIGN = SAMPLES / "campaign_h100"


@pytest.fixture(scope="module")
def campaign(explained):
    path = CAMPAIGN / "qwen2.5-7b_ctx2048_eager.json.gz"
    return {"path": path, "e": explained(path), "meta": stdlib_trace(path)["tracekit"],
            "flash": json.loads((CAMPAIGN / "qwen2.5-7b_ctx2048_flash.meta.json").read_text())}


def test_an_old_capture_calibration_is_read_at_half_its_cost(campaign):
    """This capture counted each calibration step's events at half (the GPU-side copies of its
    ranges held none): explain halves the cost its metadata says, and says so."""
    pc, u = campaign["meta"]["profiler_cost"], campaign["e"].unprofiled
    assert "events_basis" not in pc and "cuda" in campaign["meta"]["profiler_activities"]
    assert u["calibration_source"] == "this-capture"
    assert u["profiler_cost_us"] == pytest.approx(pc["ns_per_event"] / 2 / 1e3)
    assert u["profiler_cost_interval_us"] == pytest.approx([x / 2 / 1e3 for x in pc["interval_ns"]])
    assert "half the cost its metadata says" in u["calibration"]


def test_the_events_per_step_count_skips_the_ranges_gpu_copies(campaign):
    """Counted the fixed way over the trace's own step ranges: one count per step (not one per
    range and its GPU-side copy), each the events explain counts for that step."""
    from tracekit.capture.calibrate import events_per_step

    counts = events_per_step(campaign["path"], prefix="tracekit.step#")
    ranges = [e for e in stdlib_trace(campaign["path"])["traceEvents"]
              if str(e.get("name", "")).startswith("tracekit.step#")]
    assert len(ranges) == 2 * len(counts) == 20  # a CPU range and its GPU-side copy per step
    assert min(counts) > 0
    assert statistics.median(counts) == campaign["e"].host["events_per_step"]


def test_without_the_stalls_against_the_stall_free_step_measured_in_the_same_process(campaign):
    """The capture's process also ran the step with flash attention, unprofiled (its calibration
    steps, which the what-if does not read): the step without the stall, in the host state the
    trace was taken in. The what-if lands within 20% of it, inside its interval."""
    u = campaign["e"].unprofiled
    assert len(campaign["meta"]["profiler_cost"]["sessions"]) == 2  # no stall-free medians kept
    same_process = statistics.median(campaign["meta"]["profiler_cost"]["unprofiled_ms"])
    assert "flash" in campaign["meta"]["profiler_cost"]["workload"]
    predicted, (lo, hi) = u["whatif"]["no_stalls_ms"], u["whatif"]["no_stalls_interval_ms"]
    assert predicted == pytest.approx(same_process, rel=0.20)
    assert lo <= same_process <= hi
    # and the report puts that measurement beside the what-if, labelled: in the calibration
    # sentence, as its own JSON field, in the what-if table and in the verdict
    assert f"flash attention at {same_process:.2f} ms unprofiled in this process" in u["calibration"]
    assert u["stall_free_measured"] == {"ms": pytest.approx(same_process), "sessions_ms": [],
                                        "attention": "flash"}
    doc = campaign["e"].to_dict()
    from tracekit.report.text import whatif_rows

    row = next(r for r in whatif_rows(doc) if r[0] == "without the stalls")
    assert f"measured with flash attention forced: {same_process:.3f} ms unprofiled" in row[3]
    assert (f"measured with flash attention forced: {same_process:.1f} ms in this process"
            in campaign["e"].verdict)


def test_without_the_stalls_against_the_flash_capture_in_other_processes(campaign):
    """The flash capture (two other processes, whose stall-free steps took 19.0 and 28.6 ms on
    this host): their median lies inside the what-if's interval."""
    u = campaign["e"].unprofiled
    runs = campaign["flash"]["sessions"]["runs"]
    measured = statistics.median(statistics.median(r["timing"]["unprofiled_ms"]) for r in runs)
    lo, hi = u["whatif"]["no_stalls_interval_ms"]
    assert lo <= measured <= hi
    assert u["whatif"]["no_stalls_ms"] == pytest.approx(measured, rel=0.20)


def test_the_default_graph_what_if_against_this_hosts_replay_of_the_same_kernels(campaign, explained):
    """The eager kernels captured as one graph and replayed on the same H100 (another process):
    its profiled step period against the same-kernels what-if, which is a profiled number too."""
    from tracekit.breakdown import step_records
    from tracekit.steps import detect_steps
    from tracekit.trace import load

    replay = load(CAMPAIGN / "qwen2.5-7b_ctx2048_replay.json.gz")
    period = statistics.median(r["latency_ns"] / 1e6 for r in step_records(replay, detect_steps(replay))
                               if r["kind"] == "decode" and r["latency_ns"] is not None)
    w, s = campaign["e"].whatif, campaign["e"].summary
    assert w["cuda_graphs_program"] == "these kernels replayed"
    assert w["cuda_graphs_ms"] == pytest.approx(period, rel=0.15)
    lo, hi = w["cuda_graphs_interval_ms"]
    assert lo <= period <= hi
    # this replay is one of the three the default gap is the median of: left out, the other two
    # (H200 499 ns, this host's Llama replay 112 ns) still predict it within the target
    others = [SAMPLES / "plain_qwen2.5-7b_ctx2048_graph_eager_kernels.json.gz",
              CAMPAIGN / "llama-3.1-8b_ctx3000_replay.json.gz"]
    gaps = []
    for f in others:
        t = load(f)
        gaps.append(statistics.median(r["idle_ns"] / (r["kernels"] + r["memcpys"] + r["memsets"])
                                      for r in step_records(t, detect_steps(t))
                                      if r["kind"] == "decode" and r["latency_ns"] is not None))
    ops = s["kernels"] + s["memcpys"] + s["memsets"]
    assert s["gpu_busy_ms"] + ops * statistics.median(gaps) / 1e6 == pytest.approx(period, rel=0.15)
