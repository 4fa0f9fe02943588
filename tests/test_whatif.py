"""The what-ifs say which program they predict, and carry intervals (tracekit/whatif.py).

The CUDA-Graphs what-if by default predicts *these kernels replayed*; with ``--graph-trace`` it
predicts the graph trace's own program. Checked against independent measurements: the graph
capture's **unprofiled** median (its CUDA-event timing in the capture metadata, read with a plain
``json.load``), a plain-JSON oracle of the graph trace's steps, and the eager step's very kernels
captured as a graph and replayed (the exact counterfactual of the default what-if).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
from helpers import stdlib_trace

from tracekit import whatif as wi
from tracekit.explain import explain
from tracekit.specs.gpus import match_gpu
from tracekit.trace import load

SAMPLES = Path(__file__).parent.parent / "sample_traces"

#: eager trace → the graph capture of the same GPU, model and prompt (HF static-cache graphs)
PAIRS = [
    ("h100/qwen2.5-7b_ctx2048_eager", "h100/qwen2.5-7b_ctx2048_cuda-graphs"),
    ("h100/qwen2.5-7b_ctx2048_eager_sdpa-flash", "h100/qwen2.5-7b_ctx2048_cuda-graphs"),
    ("h100/qwen2.5-7b_ctx8192_eager", "h100/qwen2.5-7b_ctx8192_cuda-graphs"),
    ("h100/llama-3.1-8b_ctx2048_eager", "h100/llama-3.1-8b_ctx2048_cuda-graphs"),
    ("h100/mistral-7b_ctx2048_eager", "h100/mistral-7b_ctx2048_cuda-graphs"),
    ("h200/qwen2.5-7b_ctx2048_eager", "h200/qwen2.5-7b_ctx2048_cuda-graphs"),
    ("h200/qwen2.5-7b_ctx2048_eager_sdpa-flash", "h200/qwen2.5-7b_ctx2048_cuda-graphs"),
    ("qwen2.5-7b_ctx2048_eager", "qwen2.5-7b_ctx2048_cuda-graphs"),  # H200
    ("qwen2.5-7b_ctx8192_eager", "qwen2.5-7b_ctx8192_cuda-graphs"),  # H200
]
PLAIN_EAGER = SAMPLES / "plain_qwen2.5-7b_ctx2048_eager_annotated.json.gz"
PLAIN_SAME_KERNELS = SAMPLES / "plain_qwen2.5-7b_ctx2048_graph_eager_kernels.json.gz"
PLAIN_HF_GRAPH = SAMPLES / "plain_qwen2.5-7b_ctx2048_graph_replay.json.gz"


def _path(name: str) -> Path:
    return SAMPLES / f"{name}.json.gz"


def _unprofiled_median_ms(path: Path) -> float:
    """The graph capture's own unprofiled step: the median of its CUDA-event-timed steps."""
    return statistics.median(stdlib_trace(path)["tracekit"]["timing"]["unprofiled_ms"])


def _oracle_steps(path: Path) -> list[dict]:
    """Per step of a tracekit capture, from the JSON alone: GPU ops launched inside the step's
    ``tracekit.step#i`` range (by correlation), GPU busy as the union of every op's interval over
    [first op, next step's first op), and that period."""
    ev = stdlib_trace(path)["traceEvents"]
    launch = {e["args"]["correlation"]: e["ts"] for e in ev
              if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {})}
    ops = [(e["ts"], e["ts"] + e.get("dur", 0), launch.get(e["args"].get("correlation")))
           for e in ev if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    ranges = sorted((e["ts"], e["ts"] + e["dur"]) for e in ev if e.get("cat") == "user_annotation"
                    and e["name"].startswith("tracekit.step#"))
    own = [[(s, t) for s, t, at in ops if at is not None and a <= at < b] for a, b in ranges]
    out = []
    for mine, nxt in zip(own, own[1:]):
        t0, t1 = min(s for s, _ in mine), min(s for s, _ in nxt)
        busy, cursor = 0.0, t0
        for s, t in sorted((max(s, t0), min(t, t1)) for s, t, _ in ops if s < t1 and t > t0):
            if t > cursor:
                busy += t - max(s, cursor)
                cursor = t
        out.append({"ops": len(mine), "busy_ms": busy / 1e3, "latency_ms": (t1 - t0) / 1e3})
    return out


@pytest.fixture(scope="module")
def pairs() -> dict:
    out = {}
    for eager, graph in PAIRS:
        out[eager] = {"default": explain(_path(eager)).whatif,
                      "program": explain(_path(eager), graph_trace=_path(graph)),
                      "measured_ms": _unprofiled_median_ms(_path(graph)),
                      "graph": graph}
    return out


# -- the graph trace's program ---------------------------------------------------------------
@pytest.mark.parametrize("eager", [e for e, _ in PAIRS])
def test_graph_program_prediction_against_the_unprofiled_graph_step(pairs, eager):
    """The issue's bar: within 15% of the measured graph step — here the graph capture's own
    unprofiled median, a measurement the prediction never reads (it reads the profiled steps)."""
    p = pairs[eager]
    w, measured = p["program"].whatif, p["measured_ms"]
    assert w["cuda_graphs_program"] == wi.GRAPH_PROGRAM
    assert abs(w["cuda_graphs_ms"] - measured) / measured < 0.15
    # the profiled steps it reads carry the profiler's own per-kernel cost, which only adds time
    assert w["cuda_graphs_ms"] > measured


def test_graph_program_interval_covers_the_other_sessions_graph_step(pairs):
    """The interval against measurements it never reads: the graph step of the *other* fresh
    sessions of the multi-session graph captures (their median, not the profiled session's own
    steps, whose profiled ÷ unprofiled ratio sets the interval's low end)."""
    checked = 0
    for eager, graph in PAIRS:
        runs = (stdlib_trace(_path(graph))["tracekit"].get("sessions") or {}).get("runs") or []
        others = [statistics.median(r["timing"]["unprofiled_ms"]) for r in runs
                  if not r.get("profiled") and r.get("session") != 0]
        if len(others) < 2:
            continue
        lo, hi = pairs[eager]["program"].whatif["cuda_graphs_interval_ms"]
        assert lo <= statistics.median(others) <= hi, (eager, lo, hi)
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("eager", [e for e, _ in PAIRS[:1] + PAIRS[4:5] + PAIRS[6:7]])
def test_graph_program_against_a_json_oracle(pairs, eager):
    """Its busy, ops and prediction, and the differences against the eager step, re-derived from
    both files with json.load: busy + ops × (idle ÷ ops) per step, medians over steps."""
    p = pairs[eager]
    w = p["program"].whatif
    g, e = _oracle_steps(_path(p["graph"])), _oracle_steps(_path(eager))
    g_ops, e_ops = statistics.median_low(s["ops"] for s in g), statistics.median_low(s["ops"] for s in e)
    g_busy = statistics.median(s["busy_ms"] for s in g)
    gap = statistics.median((s["latency_ms"] - s["busy_ms"]) / s["ops"] for s in g)
    gp = w["graph_program"]
    assert gp["ops_per_step"] == g_ops and gp["ops_delta"] == g_ops - e_ops
    assert gp["gpu_busy_ms"] == pytest.approx(g_busy, rel=1e-4)
    assert gp["busy_delta_ms"] == pytest.approx(g_busy - statistics.median(
        s["busy_ms"] for s in e if s["latency_ms"] is not None), abs=5e-3)
    assert w["cuda_graphs_ms"] == pytest.approx(g_busy + g_ops * gap, rel=1e-4)
    # HF's static-cache graph is another program: more GPU ops and more GPU busy than eager
    assert gp["ops_delta"] > 0 and gp["busy_delta_ms"] > 0
    # the same-kernels prediction is kept beside it, and it is the default's with this gap
    d = p["default"]
    assert w["cuda_graphs_same_kernels_ms"] == pytest.approx(
        d["cuda_graphs_ms"] + e_ops * (w["graph_gap_us"] - d["graph_gap_us"]) / 1e3, rel=1e-3)


@pytest.mark.parametrize("eager", [e for e, _ in PAIRS])
def test_the_default_predicts_the_same_kernels_not_hf_graphs(pairs, eager):
    """Without --graph-trace the what-if is these kernels replayed, which run fewer GPU ops than
    HF's graph program: it is faster than that program's measured step (11–35% here)."""
    p = pairs[eager]
    d = p["default"]
    assert d["cuda_graphs_program"] == wi.SAME_KERNELS and d["graph_program"] is None
    assert d["cuda_graphs_ms"] < p["measured_ms"]
    assert "these kernels replayed" in d["cuda_graphs_model"]


def test_same_kernels_interval_holds_their_measured_replay(explained):
    """The default's counterfactual, measured: the eager step's own kernels captured as one graph
    and replayed (same H200 session). Its step lies inside the default's interval, and the graph
    program predicted from that trace differs from this step by one GPU op."""
    w = explained(PLAIN_EAGER).whatif
    replay = load(PLAIN_SAME_KERNELS)
    from tracekit.breakdown import step_records
    from tracekit.steps import detect_steps

    lat = statistics.median(r["latency_ns"] / 1e6 for r in step_records(replay, detect_steps(replay))
                            if r["kind"] == "decode" and r["latency_ns"] is not None)
    lo, hi = w["cuda_graphs_interval_ms"]
    assert lo <= lat <= hi, (lo, lat, hi)
    g = explain(PLAIN_EAGER, graph_trace=PLAIN_SAME_KERNELS).whatif
    assert abs(g["graph_program"]["ops_delta"]) <= 1
    assert g["cuda_graphs_ms"] == pytest.approx(lat, rel=0.01)


#: the eager step and its very kernels replayed as one graph, measured in one process each:
#: H200 (plain script, Qwen2.5-7B ctx 2053) and an H100 (calibration campaign, Qwen2.5-7B ctx 2048)
REPLAY_PAIRS = [(PLAIN_EAGER, PLAIN_SAME_KERNELS),
                (SAMPLES / "campaign_h100/qwen2.5-7b_ctx2048_eager.json.gz",
                 SAMPLES / "campaign_h100/qwen2.5-7b_ctx2048_replay.json.gz")]
#: every committed same-kernels replay (the default gap's program)
SAME_KERNEL_REPLAYS = [PLAIN_SAME_KERNELS, *sorted(SAMPLES.glob("campaign_h100/*_replay.json.gz"))]


def _replay_gaps(path: Path) -> list[float]:
    from tracekit.breakdown import step_records
    from tracekit.steps import detect_steps

    g = load(path)
    assert match_gpu(g.meta["gpu_name"]).arch == "hopper"
    return [r["idle_ns"] / (r["kernels"] + r["memcpys"] + r["memsets"])
            for r in step_records(g, detect_steps(g))
            if r["kind"] == "decode" and r["latency_ns"] is not None]


@pytest.mark.parametrize(("eager", "replay"), REPLAY_PAIRS, ids=["h200", "h100"])
def test_replay_busy_range_covers_the_measured_replay(explained, eager, replay):
    e = explained(eager).summary["gpu_busy_ms"]
    r = explained(replay).summary["gpu_busy_ms"]
    low, high = wi.REPLAY_BUSY_RANGE
    assert low <= r / e <= high


def test_the_busy_range_is_the_committed_pairs_rounded_out(explained):
    ratios = [explained(r).summary["gpu_busy_ms"] / explained(e).summary["gpu_busy_ms"]
              for e, r in REPLAY_PAIRS]
    low, high = wi.REPLAY_BUSY_RANGE
    assert low == math.floor(min(ratios) * 100) / 100 and high == math.ceil(max(ratios) * 100) / 100


def test_default_gap_range_spans_every_committed_hopper_replay():
    """GRAPH_GAP_RANGE_NS re-derived: per-step idle ÷ ops over every committed graph replay of a
    Hopper GPU (tracekit captures and the plain ones: HF's graphs and the eager kernels
    replayed); the default is the median of the same-kernels replays' own medians."""
    files = [*SAMPLES.glob("*cuda-graphs*.json.gz"), *SAMPLES.glob("h100/*cuda-graphs*.json.gz"),
             *SAMPLES.glob("h200/*cuda-graphs*.json.gz"), PLAIN_HF_GRAPH, *SAME_KERNEL_REPLAYS]
    gaps = [x for f in files for x in _replay_gaps(f)]
    low, high = wi.GRAPH_GAP_RANGE_NS["hopper"]
    assert len(files) >= 11 and len(SAME_KERNEL_REPLAYS) == 3
    assert low <= min(gaps) < low + 1 and high - 1 < max(gaps) <= high + 1
    own = statistics.median(statistics.median(_replay_gaps(f)) for f in SAME_KERNEL_REPLAYS)
    assert wi.GRAPH_GAP_NS["hopper"] == pytest.approx(own, abs=1.0)


def test_a_graph_trace_of_another_model_or_gpu_is_warned_about():
    eager = _path("h100/qwen2.5-7b_ctx2048_eager")
    other_model = explain(eager, graph_trace=_path("h100/llama-3.1-8b_ctx2048_cuda-graphs"))
    assert any("--graph-trace is of another model (llama-3.1-8b)" in w for w in other_model.warnings)
    other_gpu = explain(eager, graph_trace=_path("h200/qwen2.5-7b_ctx2048_cuda-graphs"))
    assert any("--graph-trace is of another GPU (NVIDIA H200)" in w for w in other_gpu.warnings)
    other_ctx = explain(eager, graph_trace=_path("h100/qwen2.5-7b_ctx8192_cuda-graphs"))
    assert any("another prompt (ctx) (8192)" in w for w in other_ctx.warnings)
    same = explain(eager, graph_trace=_path("h100/qwen2.5-7b_ctx2048_cuda-graphs"))
    assert not any("--graph-trace" in w for w in same.warnings)


# -- intervals -------------------------------------------------------------------------------
@pytest.mark.parametrize("eager", [e for e, _ in PAIRS])
def test_every_interval_holds_its_point(pairs, eager):
    for w in (pairs[eager]["default"], pairs[eager]["program"].whatif):
        for key in ("cuda_graphs", "cuda_graphs_same_kernels", "at_floor"):
            lo, hi = w[f"{key}_interval_ms"]
            assert lo <= w[f"{key}_ms"] <= hi, key
        # graph replay of the same kernels removes every host gap; without-the-stalls only some
        if w.get("no_stalls_ms") is not None:
            assert w["cuda_graphs_same_kernels_ms"] <= w["no_stalls_ms"]


def test_at_floor_interval_is_the_floor_at_peak_and_at_measured_bandwidth():
    path = _path("h100/qwen2.5-7b_ctx2048_eager")
    d = explain(path).to_dict()
    measured = stdlib_trace(path)["tracekit"]["copy_bandwidth_gbps"]
    lo, hi = d["whatif"]["at_floor_interval_ms"]
    assert lo == pytest.approx(d["floor"]["bytes"] / (d["gpu"]["peak_gbps"] * 1e9) * 1e3)
    assert hi == pytest.approx(d["floor"]["bytes"] / (measured * 1e9) * 1e3)
    assert f"{measured:.0f} GB/s copy bandwidth" in d["whatif"]["at_floor_interval_basis"]
    # a trace without a measured bandwidth: a single value, and it says so
    plain = explain(PLAIN_EAGER, model="qwen2.5-7b", ctx=2053).whatif
    assert plain["at_floor_interval_ms"] == [plain["at_floor_ms"]] * 2
    assert plain["at_floor_interval_basis"].startswith("no measured copy bandwidth")


def test_cap_at_without_the_stalls():
    """A step whose own gaps are shorter than a replay's: the same-kernels prediction is capped
    at the without-the-stalls step; the graph trace's program (another program) is not."""
    w = {"cuda_graphs_ms": 5.0, "cuda_graphs_speedup": 2.0, "cuda_graphs_program": wi.SAME_KERNELS,
         "cuda_graphs_interval_ms": [4.5, 5.5], "cuda_graphs_same_kernels_ms": 5.0,
         "cuda_graphs_same_kernels_interval_ms": [4.5, 5.5], "cuda_graphs_model": "m",
         "no_stalls_ms": 4.8}
    wi.cap_by_no_stalls(w, {"latency_ms": 10.0})
    assert w["cuda_graphs_ms"] == 4.8 and w["cuda_graphs_interval_ms"] == [4.5, 4.8]
    assert w["cuda_graphs_speedup"] == pytest.approx(10.0 / 4.8)
    assert w["cuda_graphs_model"].endswith("capped at the without-the-stalls step")
    w2 = {**w, "cuda_graphs_ms": 6.0, "cuda_graphs_program": wi.GRAPH_PROGRAM,
          "cuda_graphs_same_kernels_ms": 5.0, "cuda_graphs_same_kernels_interval_ms": [4.5, 5.5],
          "cuda_graphs_interval_ms": [5.9, 6.1]}
    wi.cap_by_no_stalls(w2, {"latency_ms": 10.0})
    assert w2["cuda_graphs_ms"] == 6.0 and w2["cuda_graphs_same_kernels_ms"] == 4.8


def test_percentile_matches_linear_interpolation():
    assert wi.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 10) == pytest.approx(1.4)
    assert wi.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert wi.percentile([7.0], 90) == 7.0


def test_graph_trace_json_validates_and_names_the_program():
    """``tracekit explain --graph-trace G --json``: the new keys are in the schema's contract."""
    from click.testing import CliRunner
    from jsonschema import Draft202012Validator

    from tracekit.cli import app

    schema = json.loads((Path(__file__).parent.parent / "docs" / "schema"
                         / "tracekit.explain-1.schema.json").read_text())
    r = CliRunner().invoke(app, ["explain", str(_path("h100/llama-3.1-8b_ctx2048_eager")),
                                 "--graph-trace", str(_path("h100/llama-3.1-8b_ctx2048_cuda-graphs")),
                                 "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert list(Draft202012Validator(schema).iter_errors(doc)) == []
    w = doc["whatif"]
    assert w["cuda_graphs_program"] == wi.GRAPH_PROGRAM
    assert isinstance(w["graph_program"]["ops_delta"], int)
    bad = {**doc, "whatif": {**w, "cuda_graphs_interval_ms": [1.0]}}  # an interval is two numbers
    assert list(Draft202012Validator(schema).iter_errors(bad))


def test_against_another_step_keeps_the_point_and_interval(pairs):
    """What the unprofiled section uses: the same point and interval, the speed-up's interval
    the latency over the interval's ends (so it holds the speed-up)."""
    e = pairs["h100/llama-3.1-8b_ctx2048_eager"]["program"]
    w = e.whatif
    a = wi.against(w, 54.0)
    assert (a["ms"], a["interval_ms"], a["program"]) == (
        w["cuda_graphs_ms"], w["cuda_graphs_interval_ms"], wi.GRAPH_PROGRAM)
    lo, hi = a["speedup_interval"]
    assert a["speedup"] == pytest.approx(54.0 / w["cuda_graphs_ms"])
    assert lo <= a["speedup"] <= hi
    assert wi.against({"cuda_graphs_ms": None}, 54.0)["speedup"] is None
