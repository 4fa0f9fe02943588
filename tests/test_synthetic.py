"""Exact arithmetic on tiny inline traces: every expected number is worked out by hand."""

from __future__ import annotations

import polars as pl
import pytest
from synth import Raw, annotation, decode_steps, kernel, launch, us, write_trace

from tracekit.breakdown import step_table
from tracekit.errors import NoStepsError
from tracekit.steps import detect_steps
from tracekit.trace import load


def _table(tmp_path, events, **kw):
    trace = load(write_trace(tmp_path / "t.json.gz", events, **kw))
    steps = detect_steps(trace)
    return trace, steps, step_table(trace, steps)


def test_host_bound_steps(tmp_path):
    # kernels at +4, +8, +12 µs (2 µs each) in each 100 µs step; every launch ends after the
    # previous kernel finished, so all idle is host-bound.
    _, steps, t = _table(tmp_path, decode_steps(4, kernel_us=2))
    assert steps.method == "annotation"
    assert t.height == 4
    first = t.row(0, named=True)
    assert first["latency_ns"] == 100_000
    assert first["gpu_busy_ns"] == 6_000
    assert first["idle_ns"] == 94_000
    assert first["idle_host_bound_ns"] == 94_000
    assert first["kernels"] == 3 and first["launches"] == 3
    assert t["latency_ns"][-1] is None  # the last step has no successor
    assert t["span_ns"][-1] == 10_000  # first kernel start (+4) to last kernel end (+14)


def test_two_overlapping_streams_counted_once(tmp_path):
    ev = [
        annotation("step#0", 0, 50), annotation("step#1", 100, 50),
        launch("cudaLaunchKernel", 1, 1, 1), kernel("a", 10, 10, 1, stream=7),   # 10..20
        launch("cudaLaunchKernel", 2, 1, 2), kernel("b", 15, 10, 2, stream=8),   # 15..25
        launch("cudaLaunchKernel", 101, 1, 3), kernel("a", 110, 10, 3, stream=7),
        launch("cudaLaunchKernel", 102, 1, 4), kernel("b", 115, 10, 4, stream=8),
    ]
    _, _, t = _table(tmp_path, ev)
    row = t.row(0, named=True)
    assert row["latency_ns"] == 100_000
    assert row["gpu_busy_ns"] == 15_000  # union 10..25, not 10 + 10
    assert row["idle_ns"] == 85_000
    # the tail gap 25..110 ends at step 1's first kernel, whose launch (101..102) had not ended
    # when the GPU went idle at 25: the GPU waited for the host
    assert row["idle_host_bound_ns"] == 85_000
    assert row["idle_launch_latency_ns"] == row["idle_sync_ns"] == row["idle_other_ns"] == 0


def test_gap_classes(tmp_path):
    ev = [
        annotation("step#0", 0, 90), annotation("step#1", 100, 90),
        # k0 10..15; k1 was queued long before (launch ended at 3): 5 µs launch latency
        launch("cudaLaunchKernel", 1, 1, 1), kernel("k0", "10", "5", 1),
        launch("cudaLaunchKernel", 2, 1, 2), kernel("k1", "20", "5", 2),
        # k2's launch ends at 33, after k1 ended at 25: 9 µs host-bound (25..34)
        launch("cudaLaunchKernel", 30, 3, 3), kernel("k2", "34", "5", 3),
        # a D2H copy right after k2 (39..41); the host syncs until 45, then launches k3: the
        # 41..50 gap is sync
        launch("cudaMemcpyAsync", 35, 1, 4), kernel("Memcpy DtoH (Device -> Pinned)", "39", "2", 4,
                                                     cat="gpu_memcpy"),
        launch("cudaStreamSynchronize", 36, 9, 99),
        launch("cudaLaunchKernel", 46, 2, 5), kernel("k3", "50", "5", 5),
        # next step: first kernel at 110; its launch (101..103) ended before k3 finished? no:
        # k3 ends at 55, launch ended at 103 > 55 -> host-bound tail 55..110
        launch("cudaLaunchKernel", 101, 2, 6), kernel("k0", "110", "5", 6),
    ]
    tr, steps, t = _table(tmp_path, ev)
    assert tr.syncs.height == 1
    row = t.row(0, named=True)
    assert row["latency_ns"] == 100_000
    assert row["gpu_busy_ns"] == 5_000 * 4 + 2_000
    assert row["idle_launch_latency_ns"] == 5_000
    assert row["idle_host_bound_ns"] == 9_000 + 55_000
    assert row["idle_sync_ns"] == 9_000
    assert row["idle_other_ns"] == 0
    assert row["idle_ns"] == row["latency_ns"] - row["gpu_busy_ns"]
    assert row["memcpys"] == 1 and row["kernels"] == 4
    assert row["launches"] == 5  # 4 kernel launches + 1 memcpy; the sync call is no launch


def test_graph_launch_membership_and_steps(tmp_path):
    # three replays of one graph (3 kernels each, one correlation id per replay), no annotations
    ev = []
    for i in range(3):
        t0 = i * 50
        corr = 10 + i
        ev.append(launch("cudaGraphLaunch", t0, 8, corr))
        for j in range(3):
            ev.append(kernel(f"g{j}", f"{t0 + 5 + j * 4}.5", "3", corr))
    _, steps, t = _table(tmp_path, ev)
    assert steps.method == "graph_launch"
    assert t["kernels"].to_list() == [3, 3, 3]
    assert t["graph_launches"].to_list() == [1, 1, 1]
    row = t.row(0, named=True)
    assert row["latency_ns"] == 50_000
    assert row["gpu_busy_ns"] == 9_000
    # inside a replay the kernels were queued by one call: launch latency, not host-bound
    assert row["idle_launch_latency_ns"] == 2 * 1_000
    # the next replay's call started at +50 after the GPU went idle at +16.5: host-bound
    assert row["idle_host_bound_ns"] == 50_000 - 9_000 - 2_000


def test_nanosecond_fractions_are_exact(tmp_path):
    ev = [annotation("step#0", 0, 20), annotation("step#1", 100, 20),
          launch("cudaLaunchKernel", 1, 1, 1), kernel("k", "10.123", "1.761", 1),
          launch("cudaLaunchKernel", 101, 1, 2), kernel("k", "110.124", "1.761", 2)]
    tr, _, t = _table(tmp_path, ev)
    k = tr.gpu_ops.sort("start_ns")
    assert (k["end_ns"] - k["start_ns"]).to_list() == [1761, 1761]
    assert t["latency_ns"][0] == 100_001
    assert t["gpu_busy_ns"][0] == 1761


def test_old_capitalized_categories_absolute_us(tmp_path):
    ev = [
        {"ph": "X", "cat": "Runtime", "name": "cudaLaunchKernel", "pid": 1, "tid": 1,
         "ts": 1683564901951734, "dur": 15, "args": {"correlation": 1}},
        {"ph": "X", "cat": "Kernel", "name": "old_kernel", "pid": 0, "tid": 7,
         "ts": 1683564901951760, "dur": 3, "args": {"correlation": 1, "stream": 7, "device": 0}},
        {"ph": "X", "cat": "Memcpy", "name": "Memcpy HtoD", "pid": 0, "tid": 7,
         "ts": 1683564901951770, "dur": 2, "args": {"correlation": 2, "stream": 7, "device": 0}},
    ]
    tr = load(write_trace(tmp_path / "old.json", ev, gz=False))
    assert tr.gpu_ops["kind"].to_list() == ["kernel", "memcpy"]
    assert tr.gpu_ops["start_ns"][0] == 1683564901951760000
    assert tr.launches["kind"].to_list() == ["kernel"]


def test_driver_launches_unknown_categories_and_missing_dur(tmp_path):
    ev = decode_steps(2, kernel_us=2)
    ev.append(launch("cuLaunchKernelEx", 60, 2, 500, cat="cuda_driver"))
    ev.append(kernel("triton_poi_fused", "63", "1", 500))
    ev.append({"ph": "X", "cat": "mystery", "name": "x", "pid": 1, "tid": 1, "ts": 1, "dur": 1})
    ev.append({"ph": "X", "cat": "kernel", "name": "nodur", "pid": 0, "tid": 7, "ts": us(70),
               "args": {"correlation": 501, "stream": 7}})
    tr = load(write_trace(tmp_path / "d.json.gz", ev))
    assert tr.launches.filter(pl.col("api") == "driver").height == 1
    assert tr.meta["skipped_categories"] == {"mystery": 1}
    assert any("mystery" in w for w in tr.warnings)
    nodur = tr.gpu_ops.filter(pl.col("name") == "nodur")
    assert nodur["end_ns"][0] == nodur["start_ns"][0]
    steps = detect_steps(tr)
    t = step_table(tr, steps)
    assert t["kernels"].to_list() == [3 + 2, 3]  # the driver-launched and dur-less ops join step 0


def test_gpu_ops_are_recognised_by_category_not_stream(tmp_path):
    # an Inductor launcher cpu_op carrying a `stream` arg must not become GPU time (HTA's trap)
    ev = decode_steps(2, kernel_us=2)
    ev.append({"ph": "X", "cat": "cpu_op", "name": "triton_poi_fused_add_0", "pid": 100,
               "tid": 100, "ts": us(20), "dur": 94, "args": {"stream": 7, "correlation": 77}})
    tr = load(write_trace(tmp_path / "s.json.gz", ev))
    assert "triton_poi_fused_add_0" not in tr.gpu_ops["name"].to_list()


def test_several_devices(tmp_path):
    ev = decode_steps(2, kernel_us=2)
    ev.append(launch("cudaLaunchKernel", 30, 1, 900))
    ev.append(kernel("other_gpu", "40", "3", 900, device=1, stream=13))
    tr = load(write_trace(tmp_path / "m.json.gz", ev))
    assert sorted(tr.gpu_ops["device"].unique().to_list()) == [0, 1]
    assert tr.meta["gpu_name"] == "NVIDIA H100 80GB HBM3"


def test_step_marker_and_profiler_step_priority(tmp_path):
    ev = decode_steps(3, kernel_us=2, annotate="decode#{i}")
    for i in range(3):
        ev.append(annotation(f"ProfilerStep#{i + 7}", i * 100, 99))
    tr = load(write_trace(tmp_path / "p.json.gz", ev))
    assert detect_steps(tr).method == "profiler_step"
    s = detect_steps(tr, step_marker=r"^decode#")
    assert s.method == "marker" and s.table.height == 3
    with pytest.raises(NoStepsError, match="matched no annotation"):
        detect_steps(tr, step_marker="nope")


def test_kernel_period_without_annotations(tmp_path):
    names = ["embedding_lookup"] + [f"layer_{j % 3}" for j in range(9)] + ["lm_head", "argmax"]
    ev = decode_steps(5, kernel_us=1, launch_us=3, annotate=None, names=names, period=200)
    tr = load(write_trace(tmp_path / "k.json.gz", ev))
    steps = detect_steps(tr)
    assert steps.method == "forward_pass"
    t = step_table(tr, steps)
    assert t["kernels"].to_list() == [len(names)] * 5
    first = steps.ops.filter(pl.col("step") == 0).sort("start_ns")["name"][0]
    assert first == "embedding_lookup"
    assert t["latency_ns"][0] == 200_000


def test_prefill_and_partial_steps_are_flagged(tmp_path):
    ev = decode_steps(6, kernel_us=2)
    # step 0 becomes a prefill: its kernels run 40 µs each
    ev = [e if not (e["cat"] == "kernel" and float(e["ts"]) - 4_929_294_000_000 < 100)
          else {**e, "dur": Raw("40")} for e in ev]
    # the last step loses two of its three kernels (cut off by the profiler window)
    drop = {e["args"]["correlation"] for e in ev if e["cat"] == "kernel"
            and float(e["ts"]) - 4_929_294_000_000 > 500 and e["name"] != "k0"}
    ev = [e for e in ev if not (e["cat"] == "kernel" and e["args"]["correlation"] in drop)]
    _, steps, t = _table(tmp_path, ev)
    assert t["kind"].to_list() == ["prefill", "decode", "decode", "decode", "decode", "partial"]
    assert any("prefill" in w for w in steps.warnings)


def test_no_steps_found(tmp_path):
    ev = [launch("cudaLaunchKernel", 1, 1, 1), kernel("only", "5", "1", 1)]
    tr = load(write_trace(tmp_path / "n.json.gz", ev))
    with pytest.raises(NoStepsError, match="pass --step-marker"):
        detect_steps(tr)


def test_cpu_only_trace_gets_host_steps(tmp_path):
    ev = [annotation(f"step#{i}", i * 100, 90) for i in range(4)]
    ev.append({"ph": "X", "cat": "cpu_op", "name": "aten::mm", "pid": 100, "tid": 100,
               "ts": us(5), "dur": 10, "args": {}})
    tr = load(write_trace(tmp_path / "c.json.gz", ev))
    assert not tr.has_gpu
    steps = detect_steps(tr)
    t = step_table(tr, steps)
    assert t["latency_ns"].to_list()[:3] == [100_000] * 3
    assert t["gpu_busy_ns"].null_count() == 4
