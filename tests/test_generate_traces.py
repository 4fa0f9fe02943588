"""HF ``generate()`` under a plain profiler, with no marker at all: one step per forward pass.

The traces under ``sample_traces/generate/h100`` were made by ``capture/generate_traces.py`` on an
H100 (see the MANIFEST). A forward pre-hook counted the passes and the token ids each was fed,
outside the profiler's view: ``passes.json`` is that ground truth. The oracle here is independent
of tracekit's detection: it cuts the trace at each ``aten::embedding`` CPU op (one per forward
pass of these models), takes every kernel whose launch call starts in a cut, and computes the
cut's kernel count and GPU busy (interval union) with ``json.load`` alone.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import statistics
from pathlib import Path

import pytest

from tracekit.explain import explain
from tracekit.trace import load

GEN = Path(__file__).parent.parent / "sample_traces" / "generate" / "h100"
PASSES = json.loads((GEN / "passes.json").read_text())
KINETO = ["gen7b_qwen2.5-7b.json.gz", "gen_batch4_qwen2.5-0.5b.json.gz"]


def _ns(us: float) -> int:
    return round(us * 1000)


def _oracle(name: str) -> list[dict]:
    """Per forward pass (cut at each aten::embedding CPU op): kernels launched in it, their busy."""
    with gzip.open(GEN / name) as f:
        ev = json.load(f)["traceEvents"]
    launch = {e["args"]["correlation"]: _ns(e["ts"]) for e in ev
              if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {})}
    cuts = sorted(_ns(e["ts"]) for e in ev if e.get("cat") == "cpu_op" and e["name"] == "aten::embedding")
    kernels = [(launch[e["args"]["correlation"]], _ns(e["ts"]), _ns(e["ts"] + e["dur"]))
               for e in ev if e.get("cat") == "kernel"]
    # generate()'s own set-up before the first pass (masks, cache positions): the prefill step's
    out = [{"kernels": sum(at < cuts[0] for at, _, _ in kernels), "busy_ns": None, "setup": True}]
    for i, a in enumerate(cuts):
        b = cuts[i + 1] if i + 1 < len(cuts) else float("inf")
        mine = sorted((s, t) for at, s, t in kernels if a <= at < b)
        busy, end = 0, None
        for s, t in mine:  # union of the intervals
            if end is None or s > end:
                busy, end = busy + t - s, t
            elif t > end:
                busy, end = busy + t - end, t
        out.append({"kernels": len(mine), "busy_ns": busy})
    return out


@pytest.mark.parametrize("name", KINETO)
def test_one_step_per_forward_pass_the_prefill_apart(name):
    truth = PASSES[name]["passes"]  # [batch, tokens] each pass was fed
    d = explain(GEN / name).to_dict()
    assert d["source"]["detection_method"] == "forward_pass"
    assert d["source"]["steps_found"] == len(truth)
    kinds = [s["kind"] for s in d["steps"]]
    assert kinds == ["prefill" if tokens > 1 else "decode" for _, tokens in truth]
    assert d["summary"]["steps"] == sum(tokens == 1 for _, tokens in truth)


@pytest.mark.parametrize("name", KINETO)
def test_each_step_holds_the_kernels_of_its_pass(name):
    """Kernel counts equal and GPU busy within 1% of the oracle's, pass by pass (the last pass
    has no successor: its busy is its own kernels', as tracekit's last step)."""
    setup, *want = _oracle(name)
    d = explain(GEN / name).to_dict()
    assert len(want) == len(d["steps"])
    # the prefill's step opens with the trace's first kernel: it also holds generate()'s set-up
    assert d["steps"][0]["kernels"] == want[0]["kernels"] + setup["kernels"]
    for step, w in zip(d["steps"][1:], want[1:]):
        assert step["kernels"] == w["kernels"], step["step"]
    for step, w in zip(d["steps"][1:-1], want[1:-1]):  # decode passes with a successor
        # tracekit's window runs from the pass's first kernel to the next pass's first kernel:
        # the busy of the oracle's pass, give or take an op that runs on across the boundary
        assert abs(step["gpu_busy_ms"] * 1e6 - w["busy_ns"]) <= 0.01 * w["busy_ns"], step["step"]


def test_the_batch_comes_from_the_recorded_shapes():
    """record_shapes=True: every pass of the batch-4 generate() fed [4, tokens] token ids."""
    truth = PASSES["gen_batch4_qwen2.5-0.5b.json.gz"]["passes"]
    assert {b for b, _ in truth} == {4}
    d = explain(GEN / "gen_batch4_qwen2.5-0.5b.json.gz").to_dict()
    assert [s["batch"] for s in d["steps"]] == [b for b, _ in truth]
    s = d["summary"]
    assert s["batch"] == 4 and s["batch_source"] == "marker"
    # four sequences a step, each step the median of the decode steps' latencies
    lat = statistics.median(x["latency_ms"] for x in d["steps"]
                            if x["kind"] == "decode" and x["latency_ms"] is not None)
    assert s["tokens_per_s_total"] == pytest.approx(4 * 1e3 / lat, rel=1e-12)


def test_without_shapes_the_prefill_is_told_by_its_kernels():
    """gen7b recorded no shapes: the first pass is the prefill because its GEMM and attention
    kernels are other kernels than the decode passes run, and it takes longer."""
    truth = PASSES["gen7b_qwen2.5-7b.json.gz"]
    assert truth["record_shapes"] is False
    d = explain(GEN / "gen7b_qwen2.5-7b.json.gz").to_dict()
    assert d["steps"][0]["kind"] == "prefill" and d["steps"][0]["batch"] is None


def test_nsight_without_nvtx_finds_the_passes(tmp_path):
    """generate() under Nsight Systems with no NVTX range: the passes from the kernels alone."""
    name = "gen_nsys_qwen2.5-0.5b.sqlite.gz"
    truth = PASSES[name]["passes"]
    db = tmp_path / "x.sqlite"
    with gzip.open(GEN / name) as f:
        db.write_bytes(f.read())
    con = sqlite3.connect(db)
    (n_kernels,) = con.execute("SELECT count(*) FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()
    con.close()
    d = explain(GEN / name).to_dict()
    assert d["source"]["detection_method"] == "forward_pass"
    assert [s["kind"] for s in d["steps"]] == [
        "prefill" if tokens > 1 else "decode" for _, tokens in truth]
    # every kernel is in a step: the model's initialisation kernels run before the first pass
    # opens and are most of a pass, so they join the prefill's step
    assert sum(s["kernels"] for s in d["steps"]) == n_kernels


def test_a_static_cache_generate_replays_one_graph_per_token():
    """generate(cache_implementation="static"): HF compiles the decode step and replays it as a
    CUDA graph, one per token; the eager prefill is no graph replay and belongs to no step."""
    name = "gen_static_qwen2.5-0.5b.json.gz"
    truth = PASSES[name]["passes"]
    tr = load(GEN / name)
    graphs = tr.launches.filter(tr.launches["kind"] == "graph").height
    d = explain(tr).to_dict()
    assert d["source"]["detection_method"] == "graph_launch"
    assert d["source"]["steps_found"] == graphs == sum(tokens == 1 for _, tokens in truth)


def test_the_reports_name_the_batch_in_the_throughput():
    """Batch 4: tokens/s per sequence and in all, in every medium; batch 1 keeps one row."""
    from tracekit.report.html import render_html
    from tracekit.report.markdown import render_markdown

    d = explain(GEN / "gen_batch4_qwen2.5-0.5b.json.gz").to_dict()
    s = d["summary"]
    md = render_markdown(d)
    assert f"tokens/s in all (4 sequences) | {s['tokens_per_s_total']:.1f}" in md
    assert f"tokens/s per sequence (batch 4) | {s['tokens_per_s']:.1f}" in md
    assert "per sequence of a batch of 4" in render_html(d, None, plotlyjs="cdn")
    one = render_markdown(explain(GEN / "gen7b_qwen2.5-7b.json.gz").to_dict())
    assert "| tokens/s |" in one and "in all" not in one


def test_a_trace_without_shapes_is_not_decoded_twice(monkeypatch):
    """The shapes are read by a second pass over the file only where the trace recorded them: a
    trace without (gen7b, no record_shapes) gets its kinds from the kernels, never from a second
    decode of the whole document."""
    import tracekit.trace.shapes as shapes

    class Refuse:
        def decode(self, data):
            raise AssertionError("decoded a trace that recorded no shapes")

    monkeypatch.setattr(shapes, "_DOC", Refuse())
    monkeypatch.setattr(shapes, "_LIST", Refuse())
    assert not shapes._has_shapes(GEN / "gen7b_qwen2.5-7b.json.gz")
    assert shapes._has_shapes(GEN / "gen_batch4_qwen2.5-0.5b.json.gz")
    d = explain(GEN / "gen7b_qwen2.5-7b.json.gz").to_dict()
    assert d["steps"][0]["kind"] == "prefill"
