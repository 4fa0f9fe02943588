"""Traces made by ``tracekit capture`` on the GPU (sample_traces/, see MANIFEST.md): explain needs no
flags for them; Nsight Systems and Kineto agree on the same decode; the CUDA-Graphs what-if predicts
a measured graph replay."""

from __future__ import annotations

import gzip
import json
import statistics
from pathlib import Path

import polars as pl
import pytest
from helpers import oracle_steps, stdlib_trace

from tracekit.explain import explain
from tracekit.report.markdown import render_markdown
from tracekit.specs.kernels import short_name
from tracekit.steps import detect_steps
from tracekit.trace import load

SAMPLES = Path(__file__).parent.parent / "sample_traces"
CAPTURES = {
    "qwen2.5-7b_ctx2048_eager.json.gz": ("qwen2.5-7b", 2048, "eager"),
    "qwen2.5-7b_ctx2048_cuda-graphs.json.gz": ("qwen2.5-7b", 2048, "cuda-graphs"),
    "qwen2.5-7b_ctx2048_compile.json.gz": ("qwen2.5-7b", 2048, "compile"),
    "qwen2.5-7b_ctx8192_eager.json.gz": ("qwen2.5-7b", 8192, "eager"),
    "qwen2.5-7b_ctx8192_cuda-graphs.json.gz": ("qwen2.5-7b", 8192, "cuda-graphs"),
    "llama-3.1-8b_ctx4096_eager.json.gz": ("llama-3.1-8b", 4096, "eager"),
}


def _raw(name: str, **kw) -> dict:
    return json.load(gzip.open(SAMPLES / name), **kw) if kw else stdlib_trace(SAMPLES / name)


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_capture_traces_explain_with_no_flags(name, explained):
    model, ctx, mode = CAPTURES[name]
    meta = _raw(name)["tracekit"]
    e = explained(SAMPLES / name)
    d = e.to_dict()
    assert d["source"]["detection_method"] == "tracekit"
    assert d["source"]["decode_steps"] == meta["profiled"]["steps"] == 10
    assert d["model"]["name"] == model and d["model"]["source"] == "capture"
    assert d["model"]["ctx"] == meta["ctx_first_step"] == ctx + meta["timing"]["warmup"] + meta["timing"]["steps"]
    assert meta["mode"] == mode
    assert d["floor"]["floor_ms"] is not None and d["floor"]["missing"] is None
    assert d["gpu"]["measured_gbps"] == meta["copy_bandwidth_gbps"]
    assert d["decomposition"]["kernel_excess_ms"] > 0  # the floor is below what the GPU did
    # the decomposition's parts against json.load: medians of the steps' latency and GPU busy
    # (tests/helpers.oracle_steps), overhead = latency - busy, excess = busy - floor
    steps = oracle_steps(_raw(name, parse_float=str)["traceEvents"],
                         lambda e: e.get("cat") == "user_annotation"
                         and e["name"].startswith("tracekit.step#"))
    timed = [s for s in steps if s["latency"] is not None]
    assert len(steps) == 10 and len(timed) == 9
    lat = statistics.median(s["latency"] for s in timed) / 1e6
    busy = statistics.median(s["busy"] for s in timed) / 1e6
    dec = d["decomposition"]
    assert dec["latency_ms"] == pytest.approx(lat, rel=1e-9)
    assert dec["launch_overhead_ms"] == pytest.approx(lat - busy, rel=1e-9)
    assert dec["kernel_excess_ms"] == pytest.approx(busy - dec["floor_ms"], rel=1e-9)


@pytest.mark.parametrize("name", [n for n, (_, _, m) in CAPTURES.items() if m != "compile"])
def test_kernels_per_step_match_an_independent_count(name, explained):
    # one embedding lookup starts every decode step (compile fuses it away, hence not there)
    events = _raw(name)["traceEvents"]
    kernels = sorted((float(e["ts"]), e["name"]) for e in events if e.get("cat") == "kernel")
    starts = [i for i, (_, n) in enumerate(kernels) if "indexSelect" in n]
    per_step = {b - a for a, b in zip(starts, starts[1:])}
    e = explained(SAMPLES / name)
    assert set(e.steps["kernels"]) == per_step
    assert e.steps.height == len(starts)


def test_modes_rank_as_expected(explained):
    lat = {m: explained(SAMPLES / f"qwen2.5-7b_ctx2048_{m}.json.gz").summary["latency_ms"]
           for m in ("eager", "cuda-graphs", "compile")}
    assert lat["compile"] < lat["cuda-graphs"] < lat["eager"]
    graphs = explained(SAMPLES / "qwen2.5-7b_ctx2048_cuda-graphs.json.gz")
    assert graphs.summary["graph_launches"] == 1 and graphs.summary["launches"] == 1


# -- Nsight Systems and Kineto on the same decode ----------------------------------------------
NSYS = SAMPLES / "qwen2.5-7b_ctx2048_eager_nsys.sqlite.gz"
KINETO = SAMPLES / "qwen2.5-7b_ctx2048_eager.json.gz"


def _kernel_names_per_step(path: Path) -> list[list[str]]:
    trace = load(path)
    steps = detect_steps(trace)
    ops = steps.ops.filter(pl.col("step").is_not_null() & (pl.col("kind") == "kernel")).sort("start_ns")
    return [[short_name(n) for n in g["name"]] for _, g in ops.group_by("step", maintain_order=True)]


def test_nsight_and_kineto_agree_on_kernels_and_busy_per_step(explained):
    """The same command, captured once through Kineto and once under Nsight Systems (CUPTI serves
    one tracer at a time, so the two tools see two runs of the same decode, on the same GPU)."""
    n, k = explained(NSYS), explained(KINETO)
    assert n.source["format"] == "nsys" and k.source["format"] == "kineto"
    assert n.source["detection_method"] == k.source["detection_method"] == "tracekit"
    assert n.model["ctx"] == k.model["ctx"]
    assert n.steps["kernels"].to_list() == k.steps["kernels"].to_list()
    # the very same kernels in the very same order, step by step (compared by short name: the
    # two tools demangle differently, e.g. "(anonymous namespace)" vs "<unnamed>")
    assert _kernel_names_per_step(NSYS) == _kernel_names_per_step(KINETO)
    for a, b in zip(n.step_rows, k.step_rows):
        assert a["gpu_busy_ms"] == pytest.approx(b["gpu_busy_ms"], rel=0.02)


def test_nsight_says_it_cannot_tell_stalls_from_launch_issue(explained):
    """The same eager decode: the Kineto trace has the CPU ops that split the host's time into
    launch issue and stalls (the cuDNN plan build); the Nsight export has CUDA calls only, so it
    says host attribution needs a torch.profiler trace, and its unprofiled split is not reliable
    (though its capture metadata says the capture's profiler recorded CPU activity)."""
    n, k = explained(NSYS), explained(KINETO)
    assert "cpu" in load(NSYS).capture["profiler_activities"]
    assert n.host is None and k.host is not None and k.host["stall_ms"] > 0
    said = [w for w in n.warnings if w.startswith("no CPU ops in an Nsight Systems export")]
    assert len(said) == 1 and "torch.profiler" in said[0]
    assert not any("no CPU ops" in w for w in k.warnings)
    assert n.unprofiled["decomposition"]["stall_ms"] is None
    assert n.unprofiled["reliable"] is False
    assert "launch issue and stalls are not told apart" in render_markdown(n.to_dict())


# -- the CUDA-Graphs what-if against a measured graph replay ---------------------------------
EAGER = SAMPLES / "plain_qwen2.5-7b_ctx2048_eager_annotated.json.gz"
SAME_KERNELS_GRAPH = SAMPLES / "plain_qwen2.5-7b_ctx2048_graph_eager_kernels.json.gz"
HF_STATIC_GRAPH = SAMPLES / "plain_qwen2.5-7b_ctx2048_graph_replay.json.gz"


def test_cuda_graphs_whatif_predicts_the_replay_of_the_same_kernels(explained):
    """The eager trace's prediction (GPU busy + ops × the Hopper per-op gap) against the eager
    step's own kernels captured as a CUDA graph and replayed, same model, ctx and GPU session."""
    w = explained(EAGER).whatif
    predicted = w["cuda_graphs_ms"]
    measured = explained(SAME_KERNELS_GRAPH).summary["latency_ms"]
    assert abs(predicted - measured) / measured < 0.15
    lo, hi = w["cuda_graphs_interval_ms"]
    assert lo <= measured <= hi


def test_hf_static_cache_graphs_do_more_gpu_work_than_the_whatif_sees(explained):
    """transformers' static-cache path (needed to capture a graph) passes an attention mask, which
    turns off SDPA's GQA path: repeat_kv copies and a masked kernel add GPU time no eager trace
    shows. The what-if's error against that graph is this extra work, not launch overhead."""
    eager, hf = explained(EAGER), explained(HF_STATIC_GRAPH)
    # the same kernels replayed with this GPU's own per-op gap (the graph trace's)
    predicted = explain(EAGER, graph_trace=HF_STATIC_GRAPH).whatif["cuda_graphs_same_kernels_ms"]
    extra_busy = hf.summary["gpu_busy_ms"] - eager.summary["gpu_busy_ms"]
    assert extra_busy > 1.0  # ms
    assert hf.summary["kernels"] > eager.summary["kernels"]
    # add the extra work back and the prediction lands on the measurement
    assert predicted + extra_busy == pytest.approx(hf.summary["latency_ms"], rel=0.05)


def test_a_graph_step_names_the_host_stall_that_idles_half_of_it(explained):
    """Two graph replays: HF's static-cache graph idles the GPU under a tenth of its step, and the
    verdict points at the kernels; the int4 torch.compile step idles half of it in one host stall
    (Dynamo's frame evaluation around the compiled region), and the verdict names that stall
    beside the GPU's time instead of calling the kernels all there is to speed up."""
    for path, idle in ((SAMPLES / "h100" / "qwen2.5-7b_ctx2048_cuda-graphs.json.gz", False),
                       (SAMPLES / "quant" / "h100" / "qwen2.5-7b_ctx2048_compile_int4.json.gz",
                        True)):
        e = explained(path)
        share = e.decomposition["launch_overhead_ms"] / e.summary["latency_ms"]
        assert (0.25 <= share < 0.5) is idle, share
        assert e.verdict.startswith("Kernel-bound")
        assert ("; besides, " in e.verdict) is idle
        assert ("the kernels, not launches, are what to speed up" in e.verdict) is not idle
    assert "waiting for the host: one stall per step in Torch-Compiled Region" in e.verdict
