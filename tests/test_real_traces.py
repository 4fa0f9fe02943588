"""Real decode traces captured on the GPU with a plain torch.profiler script (no tracekit metadata).

Expected step and kernel counts are not copied from a tracekit run: each test re-counts them from
the raw JSON with the standard library, using the embedding lookup (``indexSelect…``) that starts
every decode step as the independent step counter.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from helpers import lookup_windows, stdlib_trace

from tracekit.breakdown import step_table
from tracekit.steps import detect_steps
from tracekit.trace import load

SAMPLES = Path(__file__).parent.parent / "sample_traces"
PLAIN = {
    "eager_annotated": ("plain_qwen2.5-7b_ctx2048_eager_annotated.json.gz", "annotation"),
    "eager_schedule": ("plain_qwen2.5-7b_ctx2048_eager_schedule.json.gz", "profiler_step"),
    "graph_replay": ("plain_qwen2.5-7b_ctx2048_graph_replay.json.gz", "graph_launch"),
}


def _stdlib_counts(path: Path) -> tuple[int, int]:
    """(steps, kernels per step) counted with json.load: one embedding lookup starts each decode
    step, so the kernels between two consecutive lookups (in GPU time order) are one step's."""
    events = stdlib_trace(path)["traceEvents"]
    kernels = sorted((float(e["ts"]), e["name"]) for e in events if e.get("cat") == "kernel")
    starts = [i for i, (_, name) in enumerate(kernels) if "indexSelect" in name]
    per_step = {b - a for a, b in zip(starts, starts[1:])}
    assert len(per_step) == 1, per_step  # every step the same kernel sequence
    return len(starts), per_step.pop()


@pytest.fixture(scope="module", params=sorted(PLAIN))
def plain(request):
    name, method = PLAIN[request.param]
    path = SAMPLES / name
    trace = load(path)
    steps = detect_steps(trace)
    return path, method, trace, steps, step_table(trace, steps)


def test_step_count_and_kernels_per_step(plain):
    path, method, trace, steps, table = plain
    n_steps, per_step = _stdlib_counts(path)
    assert steps.method == method
    assert table.height == n_steps
    assert (table["kind"] == "decode").all()
    assert table["kernels"].to_list() == [per_step] * n_steps


def test_every_step_starts_with_the_embedding_lookup(plain):
    _, _, _, steps, _ = plain
    firsts = (steps.ops.filter(pl.col("step").is_not_null() & (pl.col("kind") == "kernel"))
              .sort("start_ns").group_by("step", maintain_order=True).agg(pl.col("name").first()))
    assert all("indexSelect" in n for n in firsts["name"])


def test_step_windows_busy_and_idle_match_json_load(plain):
    path, *_, table = plain
    timed = table.filter(pl.col("latency_ns").is_not_null())
    assert timed.height == table.height - 1
    got = list(zip(*(timed[c].to_list() for c in ("start_ns", "latency_ns", "gpu_busy_ns",
                                                   "idle_ns"))))
    assert got == lookup_windows(path)
    assert (timed["gpu_busy_ns"] > 0).all()


def test_eager_is_host_bound_and_graph_is_not(plain):
    _, method, _, _, table = plain
    t = table.filter(pl.col("latency_ns").is_not_null())
    host_share = (t["idle_host_bound_ns"] / t["latency_ns"]).median()
    if method == "graph_launch":
        assert host_share < 0.05
        assert (t["graph_launches"] == 1).all() and (t["launches"] == 1).all()
    else:
        assert host_share > 0.5  # docs/architecture.md ("Facts"): eager decode on these hosts is host-bound
        assert (t["launches"] >= t["kernels"]).all()


@pytest.mark.parametrize("name", ["plain_qwen2.5-7b_ctx2048_graph_replay.json.gz",
                                  "plain_qwen2.5-7b_ctx2048_graph_eager_kernels.json.gz",
                                  "qwen2.5-7b_ctx8192_cuda-graphs.json.gz"])
def test_graph_replay_kernels_map_to_their_launch(name):
    """Every graph-replay trace (no eager trace: there is nothing to map)."""
    trace = load(SAMPLES / name)
    steps = detect_steps(trace)
    graph_corr = trace.launches.filter(pl.col("kind") == "graph")["correlation"]
    mapped = trace.gpu_ops.filter(pl.col("correlation").is_in(graph_corr.implode()))
    assert mapped.height == trace.gpu_ops.height  # every replayed op found its cudaGraphLaunch
    assert steps.ops["step"].null_count() == 0


@pytest.mark.parametrize("key", ["eager_annotated", "graph_replay"])
def test_forward_passes_are_the_same_steps_without_markers(key):
    name, _ = PLAIN[key]
    trace = load(SAMPLES / name)
    trace.annotations = trace.annotations.clear()
    trace.launches = trace.launches.filter(pl.col("kind") != "graph")
    n_steps, per_step = _stdlib_counts(SAMPLES / name)
    steps = detect_steps(trace)
    table = step_table(trace, steps)
    assert steps.method == "forward_pass"
    # whole periods only: a cycle cut by the window's start is never invented into a step
    assert n_steps - 1 <= table.height <= n_steps
    assert set(table["kernels"].to_list()) == {per_step}


@pytest.mark.parametrize("name", sorted(
    str(p.relative_to(SAMPLES)) for p in SAMPLES.rglob("*cuda-graphs*.json.gz")))
def test_our_cuda_graphs_captures_warn_about_no_profiler_setting(name):
    """tracekit's own CUDA-Graphs captures record CPU activity; a replayed step has no CPU op to
    attribute, which is not a missing ProfilerActivity.CPU (the README's compare example)."""
    import tracekit

    meta = stdlib_trace(SAMPLES / name)["tracekit"]
    assert "cpu" in meta["profiler_activities"]
    warnings_ = tracekit.explain(SAMPLES / name).warnings
    assert not [w for w in warnings_ if "ProfilerActivity" in w or "capture metadata" in w]
