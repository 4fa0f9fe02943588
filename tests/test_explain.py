"""The answer: floor, decomposition, what-ifs and verdict — arithmetic on synthetic traces and the
CUDA-Graphs what-if validated against a real graph trace of the same model, context and GPU."""

from __future__ import annotations

import json

import pytest
from helpers import error_line, run
from synth import decode_steps, write_trace

from tracekit.errors import BadInput
from tracekit.explain import GRAPH_GAP_NS, explain, graph_gap_ns
from tracekit.specs.gpus import get_gpu, match_gpu
from tracekit.specs.models import get_model
from tracekit.trace import load
from tracekit.whatif import GRAPH_GAP_RANGE_NS


def test_gpu_names_match_most_specific_first():
    assert match_gpu("NVIDIA H100 80GB HBM3").name == "H100 SXM5"
    assert match_gpu("NVIDIA H100 PCIe").name == "H100 PCIe"
    assert match_gpu("NVIDIA H100 NVL").name == "H100 NVL"
    assert match_gpu("NVIDIA H200").peak_gbps == 4800
    assert match_gpu("NVIDIA GH200 480GB").name == "GH200 (HBM3)"
    assert match_gpu("NVIDIA L40S").name == "L40S" and match_gpu("NVIDIA L4").name == "L4"
    assert match_gpu("NVIDIA A100-SXM4-80GB").peak_gbps == 2039
    assert match_gpu("NVIDIA A100 80GB PCIe").peak_gbps == 1935
    assert match_gpu("NVIDIA A100-PG509-200").peak_gbps == 1555
    assert match_gpu("Mystery GPU 9000") is None
    # AMD Instinct, as ROCm names them (the MI300X under virtualisation adds "VF"); an MI250X or
    # MI250 device is one of its two dies, with half the package's 3276.8 GB/s
    assert match_gpu("AMD Instinct MI300X VF").name == match_gpu("AMD Instinct MI300X").name == "MI300X"
    assert match_gpu("AMD Instinct MI325X").peak_gbps == 6000
    assert match_gpu("AMD Instinct MI250X").name == "MI250X (one GCD)"
    assert match_gpu("AMD Instinct MI250").name == "MI250 (one GCD)"
    assert match_gpu("AMD Instinct MI250X").peak_gbps * 2 == 3276.8
    assert get_gpu("mi210").peak_gbps == 1638.4 and get_gpu("MI300X").peak_gbps == 5300
    assert match_gpu("AMD Radeon Graphics") is None
    with pytest.raises(BadInput, match="known: .*H100 SXM5"):
        get_gpu("Mystery GPU 9000")


def test_byte_accounting_exact_vs_all_weights():
    m = get_model("qwen2.5-7b")
    exact, allw = m.step_bytes(2048, "bf16", "exact"), m.step_bytes(2048, "bf16", "all-weights")
    # the exact count reads one embedding row instead of the 152064-row table, and writes one token
    assert allw["weights"] - exact["weights"] == (m.vocab - 1) * m.hidden * 2
    assert exact["kv_write"] == m.kv_bytes_per_token("bf16") == 28 * 2 * 4 * 128 * 2
    assert exact["kv_read"] == allw["kv_read"] == 2048 * 57344
    tied = get_model("llama-3.2-1b")  # tied embeddings: the table is read once, by the head
    t_exact = tied.step_bytes(0, "bf16", "exact")
    assert t_exact["weights"] == tied.param_count() * 2


def _eager_trace(tmp_path, n=6):
    # 100 µs steps, 3 × 2 µs kernels, all idle host-bound (see tests/synth.py)
    return write_trace(tmp_path / "e.json.gz", decode_steps(n, kernel_us=2))


def _tiny_floor_ms(ctx: int, gbps: float) -> float:
    """The ``tiny`` model's bf16 floor from its config numbers, written out here rather than taken
    from tracekit.floor: 2 layers, hidden 64, MLP 128, 4 heads and 2 KV heads of 16, vocab 512,
    untied embeddings."""
    layer = 64 * 4 * 16 + 2 * 64 * 2 * 16 + 4 * 16 * 64 + 3 * 64 * 128 + 2 * 64  # q, k+v, o, MLP, norms
    params_read = 2 * layer + 64 + 64 + 512 * 64  # layers, final norm, one embedding row, lm_head
    kv_per_token = 2 * 2 * 2 * 16 * 2  # layers × (K, V) × kv_heads × head_dim × bf16 bytes
    total = params_read * 2 + ctx * kv_per_token + kv_per_token  # weights + KV read + KV written
    return total / (gbps * 1e9) * 1e3


def test_decomposition_against_the_trace_and_the_config(tmp_path):
    # A made-up model small enough that its floor fits inside 6 µs of GPU busy on 3350 GB/s.
    e = explain(_eager_trace(tmp_path), model="tiny", ctx=100)
    d = e.to_dict()
    dec = d["decomposition"]
    # the oracle: each 100 µs step runs three 2 µs kernels back to back with gaps between them
    # (tests/synth.py): busy 6 µs, and the 94 µs rest the GPU waits for the host's launches
    floor = _tiny_floor_ms(100 + 2, 3350.0)  # the median ctx of the 5 timed steps (100..104)
    assert dec["latency_ms"] == pytest.approx(0.1)
    assert dec["floor_ms"] == pytest.approx(floor, rel=1e-9)
    assert dec["kernel_excess_ms"] == pytest.approx(0.006 - floor, rel=1e-9)
    assert dec["launch_overhead_ms"] == pytest.approx(0.094)
    assert dec["launch_overhead_by_class_ms"]["host_bound"] == pytest.approx(0.094)
    assert sum(v for c, v in dec["launch_overhead_by_class_ms"].items() if c != "host_bound") == 0
    assert dec["r_floor"] == pytest.approx(floor / 0.1)
    assert [s["latency_ms"] is not None for s in d["steps"]] == [True] * 5 + [False]
    for i, step in enumerate(d["steps"]):
        assert step["ctx"] == 100 + i
        assert step["floor_ms"] == pytest.approx(_tiny_floor_ms(100 + i, 3350.0), rel=1e-9)
        assert step["gpu_busy_ms"] == pytest.approx(0.006)
        assert step["kernel_excess_ms"] == pytest.approx(0.006 - step["floor_ms"], rel=1e-9)
        if step["latency_ms"] is not None:
            assert step["idle_ms"] == pytest.approx(0.094)
    assert d["gpu"]["peak_gbps"] == 3350 and d["gpu"]["matched"] == "H100 SXM5"
    json.dumps(d, allow_nan=False)


def test_negative_kernel_excess_warns(tmp_path):
    e = explain(_eager_trace(tmp_path), model="qwen2.5-7b", ctx=2048)  # 4 ms floor vs 6 µs busy
    assert e.decomposition["kernel_excess_ms"] < 0
    assert any("floor is wrong" in w for w in e.warnings)


def test_foreign_trace_without_model_names_the_missing_flags(tmp_path):
    e = explain(_eager_trace(tmp_path))
    assert e.floor["floor_ms"] is None
    assert e.floor["missing"] == "pass --model, --ctx to compute the memory floor"
    assert e.decomposition["launch_overhead_ms"] == pytest.approx(0.094)
    assert "Launch-bound" in e.verdict and "pass --model" in e.verdict


def test_unknown_gpu_gives_null_floor_not_a_guess(tmp_path):
    path = write_trace(tmp_path / "u.json.gz", decode_steps(4, kernel_us=2), gpu_name="Voodoo 5")
    e = explain(path, model="tiny", ctx=10)
    assert e.gpu["peak_gbps"] is None and e.floor["floor_ms"] is None
    assert "--gpu or --bandwidth" in e.floor["missing"]
    assert explain(path, model="tiny", ctx=10, bandwidth_gbps=1000).floor["peak_gbps"] == 1000


def test_cuda_graphs_whatif_arithmetic(tmp_path):
    e = explain(_eager_trace(tmp_path))
    # GPU busy 6 µs + 3 ops × the Hopper default gap
    assert e.whatif["cuda_graphs_ms"] == pytest.approx(0.006 + 3 * GRAPH_GAP_NS["hopper"] / 1e6)
    assert e.whatif["cuda_graphs_speedup"] == pytest.approx(0.1 / e.whatif["cuda_graphs_ms"])


def test_verdict_names_the_regime(tmp_path):
    e = explain(_eager_trace(tmp_path), model="tiny", ctx=100)
    assert e.verdict.startswith("Launch-bound: 94% of each 0.10 ms step is the GPU waiting for the host")
    assert "CUDA Graphs would bring the step to" in e.verdict


# -- real traces: the what-if against a measured graph trace ---------------------------------
from pathlib import Path  # noqa: E402

SAMPLES = Path(__file__).parent.parent / "sample_traces"
EAGER = SAMPLES / "plain_qwen2.5-7b_ctx2048_eager_annotated.json.gz"
GRAPH = SAMPLES / "plain_qwen2.5-7b_ctx2048_graph_replay.json.gz"
SAME_KERNELS_GRAPH = SAMPLES / "plain_qwen2.5-7b_ctx2048_graph_eager_kernels.json.gz"


@pytest.mark.parametrize("trace", [
    "qwen2.5-7b_ctx8192_cuda-graphs.json.gz",  # H200, another context
    "h100/qwen2.5-7b_ctx2048_cuda-graphs.json.gz",  # H100
    "h100/qwen2.5-7b_ctx8192_cuda-graphs.json.gz",
    "h100/llama-3.1-8b_ctx2048_cuda-graphs.json.gz",  # another model
])
def test_hopper_default_gap_range_holds_other_graph_replays(trace):
    """The per-op gap of a graph replay differs by host and program (111–566 ns on the
    committed Hopper replays); HF's static-cache graphs, none of them the same-kernels replays the
    default point comes from, fall inside the default's range — and above its point."""
    g = load(SAMPLES / trace)
    assert match_gpu(g.meta["gpu_name"]).arch == "hopper"
    low, high = GRAPH_GAP_RANGE_NS["hopper"]
    assert GRAPH_GAP_NS["hopper"] < graph_gap_ns(g) <= high and low < GRAPH_GAP_NS["hopper"]


def test_graph_trace_calibration_and_already_graphed():
    e = explain(EAGER, graph_trace=GRAPH)
    assert e.whatif["graph_gap_source"].startswith("graph trace")
    g = explain(GRAPH)
    assert g.whatif["cuda_graphs_ms"] is None and g.whatif["note"] == "the trace already replays CUDA graphs"
    with pytest.raises(BadInput, match="no CUDA-graph decode steps"):
        explain(GRAPH, graph_trace=EAGER)


def test_gpu_events_without_a_timeline_are_named_as_such(tmp_path) -> None:
    """A trace whose every kernel sits at ts 0 with no duration (a torch.profiler session
    exported after a second one ran in the process) has step ranges and kernels but no GPU
    timeline: the error says that, not that the steps hold no decode step."""
    events = decode_steps(4)
    for e in events:
        if e.get("cat") == "kernel":
            e["ts"], e["dur"] = 0, 0
    n = sum(e.get("cat") == "kernel" for e in events)
    path = write_trace(tmp_path / "z.json.gz", events)
    line = error_line(run("explain", str(path)))
    assert f"all {n} GPU events" in line and "no GPU timeline" in line
    # one kernel with its time back: a timeline, explained (or failing for another reason)
    events[next(i for i, e in enumerate(events) if e.get("cat") == "kernel")].update(ts=5, dur=2)
    r = run("explain", str(write_trace(tmp_path / "y.json.gz", events)))
    assert "no GPU timeline" not in r.output
