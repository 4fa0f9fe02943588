"""What-ifs: what one decode step would take under CUDA Graphs, and at the memory floor — each a
point with an interval, and each saying which program it predicts.

*CUDA Graphs* by default predicts **these kernels replayed**: the explained step's own GPU ops
with no launch gap but the one a graph replay leaves between ops,

    cuda_graphs_ms = GPU busy + GPU ops × per-op graph gap

That is not the program a framework's graph mode runs. transformers' static-cache graph, for one,
is another program: an attention mask turns off SDPA's GQA path, so it runs more kernels
(+232 GPU ops per step on Qwen2.5-7B, +264 on Llama-3.1-8B) and is busy longer (+1.3 to +4.4 ms
on an H100 from ctx 2048 to 8192) than the eager step. Given a trace of the real graph program (``--graph-trace``),
the what-if predicts *that program* — its own GPU busy + its GPU ops × its per-op gap, medians over
its decode steps (essentially its own step period) — keeps the same-kernels prediction beside it
(``cuda_graphs_same_kernels_ms``), and says the difference (``graph_program``).

The CUDA-Graphs what-if of the same kernels removes every host gap, so it is never slower than
"without the stalls" (which removes only some): it is capped there (:func:`cap_by_no_stalls`).

Intervals (``X_interval_ms`` = [low, high], the point always inside):

- CUDA Graphs: GPU busy at its 10th–90th percentile over decode steps (the program's: the
  explained trace's, or the graph trace's) plus GPU ops × the per-op gap at its 10th–90th
  percentile over the graph trace's decode steps; with no graph trace, the per-architecture
  default gap's range (:data:`GRAPH_GAP_RANGE_NS`: every committed graph replay of that
  architecture, not just the one the default came from). The same-kernels upper end also lets
  GPU busy move by :data:`REPLAY_BUSY_RANGE` (replayed kernels ran 1.1% shorter to 1.7% longer
  than eager in the two sessions that measured both). Both are profiled numbers, like the step
  they are compared with (``cuda_graphs_speedup``); the committed graph captures ran 2–4% faster
  unprofiled.
- At the floor: the floor at the peak bandwidth used (datasheet or ``--bandwidth``) and at the
  copy bandwidth the capture measured; without a measured bandwidth, [floor, floor] (said in
  ``at_floor_interval_basis``).

    tracekit explain eager.json.gz --graph-trace graphs.json.gz --json | jq .whatif
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tracekit.breakdown import step_records
from tracekit.errors import BadInput
from tracekit.specs.gpus import GpuSpec
from tracekit.steps import detect_steps
from tracekit.trace import Trace, load

#: Per-GPU-op gap left by a CUDA graph replay, by architecture (ns). Measured, not assumed: the
#: eager decode step captured as one CUDA graph and replayed (``capture/plain_profiler_decode.py
#: --which graph_eager_kernels``), its step's idle ÷ its GPU ops, on three committed replays:
#: 499 ns (NVIDIA H200, Qwen2.5-7B ctx 2053), 233 ns (an H100 host, Qwen2.5-7B ctx 2048) and
#: 112 ns (the same H100 host, Llama-3.1-8B ctx 3000). The default is their median; it differs by
#: host and program by 4×, which the range below carries. tests/test_whatif.py re-derives both
#: from the committed replays. No other architecture has been measured here, so none gets a
#: default: pass --graph-trace.
GRAPH_GAP_NS: dict[str, float] = {"hopper": 233.0}

#: The range of that gap over every committed graph replay of the architecture, per decode step
#: (ns): the default is applied to any Hopper part, model and context, so its interval is the
#: spread over all of them, not the traces it was fitted on. Hopper: 111 (H100, Llama-3.1-8B,
#: ctx 3000, the eager kernels replayed) to 566 (H100, Qwen2.5-7B, ctx 2048, HF's static-cache
#: graph) over 11 traces — H100 and H200, Qwen2.5-7B / Llama-3.1-8B / Mistral-7B, ctx 2048–8192.
GRAPH_GAP_RANGE_NS: dict[str, tuple[float, float]] = {"hopper": (111.0, 566.0)}

#: The same kernels replayed as one graph keep the GPU busy a little longer or shorter than they
#: did eager: the replay's GPU busy ÷ the eager step's was 1.017 on an H200 (Qwen2.5-7B ctx 2053)
#: and 0.989 on an H100 (Qwen2.5-7B ctx 2048; why either is not established here). The
#: same-kernels interval scales GPU busy by this range (tests/test_whatif.py re-derives it from
#: the committed pairs).
REPLAY_BUSY_RANGE = (0.98, 1.02)

#: ``whatif.cuda_graphs_program``: which program ``cuda_graphs_ms`` predicts
SAME_KERNELS = "these kernels replayed"
GRAPH_PROGRAM = "the graph trace's program"


def percentile(xs: list[float], q: float) -> float:
    """The q-th percentile (0–100) by linear interpolation between order statistics."""
    s = sorted(xs)
    if not s:
        raise ValueError("percentile of no values")
    pos = (len(s) - 1) * q / 100.0
    i = int(pos)
    j = min(i + 1, len(s) - 1)
    return s[i] + (s[j] - s[i]) * (pos - i)


@dataclass(frozen=True)
class GraphProgram:
    """A graph-replay trace's decode steps, reduced to what the what-if needs (medians and
    10th–90th percentiles over its decode steps that have a latency)."""

    source: str
    steps: int
    kernels: int               # kernels per step (lower median)
    ops: int                   # GPU ops per step: kernels + memcpys + memsets (lower median)
    gpu_busy_ms: float
    gpu_busy_p10_ms: float
    gpu_busy_p90_ms: float
    gap_ns: float              # per-op gap: a step's idle ÷ its GPU ops, median
    gap_p10_ns: float
    gap_p90_ns: float
    latency_ms: float          # its measured step period, median (profiled)
    gpu_name: str | None
    model_name: str | None     # from its capture metadata, when it has one
    ctx: int | None
    #: how much the profiler lengthened this program's step: its capture's profiled ÷
    #: unprofiled ratio when it has one, else :data:`REPLAY_PROFILER_INFLATION`
    inflation: float = 1.0
    #: where :attr:`inflation` came from, for the interval's basis
    inflation_source: str = "the most the committed graph captures showed"

    @property
    def predicted_ms(self) -> float:
        """The program's step: its busy + its GPU ops × its per-op gap."""
        return self.gpu_busy_ms + self.ops * self.gap_ns / 1e6

    @property
    def interval_ms(self) -> list[float]:
        """The spread over its steps; the low end also takes the profiler's lengthening of the
        replay off (the trace is profiled, the prediction is for the step a user runs)."""
        return _contain(self.predicted_ms,
                        (self.gpu_busy_p10_ms + self.ops * self.gap_p10_ns / 1e6) / self.inflation,
                        self.gpu_busy_p90_ms + self.ops * self.gap_p90_ns / 1e6)


def read_graph_program(graph: Trace, *, source: str = "graph trace",
                       step_marker: str | None = None) -> GraphProgram:
    """Read a graph-replay trace's decode steps. :class:`BadInput` when it replays no CUDA graph
    or has fewer than two steps (no step period)."""
    steps = detect_steps(graph, step_marker=step_marker)
    t = [r for r in step_records(graph, steps)
         if r["kind"] == "decode" and r["latency_ns"] is not None]
    if not t or sum(r["graph_launches"] for r in t) == 0:
        raise BadInput("--graph-trace has no CUDA-graph decode steps to calibrate from "
                       "(it needs cudaGraphLaunch calls and at least two steps)")
    t = [r for r in t if r["kernels"] + r["memcpys"] + r["memsets"]]
    if not t:
        raise BadInput("--graph-trace's decode steps hold no GPU op")
    ops = [r["kernels"] + r["memcpys"] + r["memsets"] for r in t]
    busy = [r["gpu_busy_ns"] / 1e6 for r in t]
    gap = [float(r["idle_ns"]) / o for r, o in zip(t, ops)]
    cap = graph.capture or {}
    model = cap.get("model_name")
    if model is None and isinstance(cap.get("model"), dict):
        model = cap["model"].get("name")
    ctx = cap.get("ctx")
    return GraphProgram(
        source=source, steps=len(t),
        kernels=int(statistics.median_low([r["kernels"] for r in t])),
        ops=int(statistics.median_low(ops)),
        gpu_busy_ms=statistics.median(busy), gpu_busy_p10_ms=percentile(busy, 10),
        gpu_busy_p90_ms=percentile(busy, 90),
        gap_ns=statistics.median(gap), gap_p10_ns=percentile(gap, 10),
        gap_p90_ns=percentile(gap, 90),
        latency_ms=statistics.median(r["latency_ns"] / 1e6 for r in t),
        gpu_name=graph.meta.get("gpu_name"),
        model_name=model if isinstance(model, str) else None,
        ctx=ctx if type(ctx) is int else None,
        **_inflation(cap),
    )


#: a CUDA-graph replay's profiled ÷ unprofiled step where the graph trace does not say: the
#: highest of the committed graph captures' ratios (1.066–1.092 on H100 and H200, Qwen/Llama/
#: Mistral, ctx 2048–8192), rounded up
REPLAY_PROFILER_INFLATION = 1.10


def _inflation(cap: dict) -> dict[str, Any]:
    """The graph capture's own profiled ÷ unprofiled ratio (1–1.5), else the default, and which
    (the :class:`GraphProgram` fields)."""
    r = cap.get("profiler_overhead_ratio")
    if isinstance(r, (int, float)) and not isinstance(r, bool) and 1.0 <= r <= 1.5:
        return {"inflation": float(r),
                "inflation_source": "the graph capture's profiled ÷ unprofiled step"}
    return {"inflation": REPLAY_PROFILER_INFLATION}


def graph_gap_ns(graph: Trace, *, step_marker: str | None = None) -> float:
    """The per-GPU-op idle of a graph-replay trace: median over decode steps of idle ÷ ops."""
    return read_graph_program(graph, step_marker=step_marker).gap_ns


# -- calibration: a graph trace, or the architecture's default ---------------------------------
@dataclass(frozen=True)
class Calibration:
    """The per-op graph gap the same-kernels prediction uses (point and range, ns), where it came
    from, and the graph program when a graph trace was given."""

    gap_ns: float | None
    gap_low_ns: float | None
    gap_high_ns: float | None
    source: str | None
    program: GraphProgram | None = None


def calibrate(graph_trace: str | Path | Trace | None, gspec: GpuSpec | None) -> Calibration:
    """From ``--graph-trace`` when given, else the default for the GPU's architecture (none for
    an architecture not measured here)."""
    if graph_trace is not None:
        g = graph_trace if isinstance(graph_trace, Trace) else load(graph_trace)
        src = "graph trace" if isinstance(graph_trace, Trace) else f"graph trace {graph_trace}"
        p = read_graph_program(g, source=src)
        return Calibration(p.gap_ns, p.gap_p10_ns, p.gap_p90_ns, src, p)
    if gspec is not None and gspec.arch in GRAPH_GAP_NS:
        low, high = GRAPH_GAP_RANGE_NS[gspec.arch]
        return Calibration(GRAPH_GAP_NS[gspec.arch], low, high,
                           f"default for {gspec.arch}: the median of three replays "
                           "measured on an H100 and an H200")
    return Calibration(None, None, None, None)


def same_run_warnings(program: GraphProgram, *, model_name: str | None, ctx: int | None,
                      gpu_name: str | None) -> list[str]:
    """Where both traces say, the graph trace should be of the same model, prompt and GPU."""
    out = []
    for what, theirs, ours in (("model", program.model_name, model_name),
                               ("prompt (ctx)", program.ctx, ctx),
                               ("GPU", program.gpu_name, gpu_name)):
        if theirs is not None and ours is not None and theirs != ours:
            out.append(f"--graph-trace is of another {what} ({theirs}) than this trace ({ours}): "
                       "the CUDA-Graphs what-if predicts that program, not this one's")
    return out


# -- the what-ifs ------------------------------------------------------------------------------
def replays_graphs(summary: dict) -> bool:
    """Whether the decode step replays CUDA graphs (a few launches per graph launch): its host
    issues a handful of calls, so there is no launch issue or stall to tell apart."""
    graphs = summary.get("graph_launches") or 0
    return graphs > 0 and (summary.get("launches") or 0) <= 4 * graphs


def _contain(point: float, low: float, high: float) -> list[float]:
    """[low, high] ordered and widened to hold the point."""
    return [min(low, high, point), max(low, high, point)]


def cuda_graphs(summary: dict, decode: list[dict], calib: Calibration) -> dict:
    """The CUDA-Graphs what-if of one explained trace: ``ms`` and ``interval_ms`` of the program
    it predicts (``program``), the same-kernels prediction beside it, the per-op gap, the model
    sentence and a ``note`` where there is no prediction. ``summary``/``decode``: the
    explanation's summary and its decode step rows (``gpu_busy_ms``, ``latency_ms``)."""
    program = GRAPH_PROGRAM if calib.program is not None else SAME_KERNELS
    out: dict[str, Any] = {"ms": None, "interval_ms": None, "interval_basis": None, "program": program,
           "same_kernels_ms": None, "same_kernels_interval_ms": None,
           "same_kernels_interval_basis": None, "gap_ns": calib.gap_ns, "gap_source": calib.source,
           "graph_program": None, "model": "no per-op graph gap known", "note": None}
    lat, busy = summary.get("latency_ms"), summary.get("gpu_busy_ms")
    if calib.gap_ns is not None:
        out["model"] = (f"{SAME_KERNELS}: GPU busy + GPU ops × {calib.gap_ns / 1e3:.3f} µs "
                        f"per-op gap ({calib.source})")
    if lat is None or busy is None:
        return out
    if replays_graphs(summary):
        out["note"] = "the trace already replays CUDA graphs"
        return out
    if calib.gap_ns is None:
        out["note"] = "no per-op graph gap for this GPU: pass --graph-trace with a graph-replay trace"
        return out
    gap_low = calib.gap_low_ns if calib.gap_low_ns is not None else calib.gap_ns
    gap_high = calib.gap_high_ns if calib.gap_high_ns is not None else calib.gap_ns
    ops = (summary.get("kernels") or 0) + (summary.get("memcpys") or 0) + (summary.get("memsets") or 0)
    timed = [r["gpu_busy_ms"] for r in decode
             if r.get("latency_ms") is not None and r.get("gpu_busy_ms") is not None]
    b_lo, b_hi = (percentile(timed, 10), percentile(timed, 90)) if timed else (busy, busy)
    same = busy + ops * calib.gap_ns / 1e6
    out["same_kernels_ms"] = same
    out["same_kernels_interval_ms"] = _contain(
        same, b_lo * REPLAY_BUSY_RANGE[0] + ops * gap_low / 1e6,
        b_hi * REPLAY_BUSY_RANGE[1] + ops * gap_high / 1e6)
    gap_what = ("its 10th–90th percentile over the graph trace's steps" if calib.program else
                "its range over every committed graph replay of this architecture")
    out["same_kernels_interval_basis"] = (
        f"GPU busy at its 10th–90th percentile over this trace's decode steps (× "
        f"{REPLAY_BUSY_RANGE[0]:g}–{REPLAY_BUSY_RANGE[1]:g}: replayed kernels run a little "
        f"shorter or longer) + GPU ops × the "
        f"per-op gap at {gap_what} ({gap_low:.0f}–{gap_high:.0f} ns)")
    p = calib.program
    if p is None:
        out["ms"], out["interval_ms"] = same, out["same_kernels_interval_ms"]
        out["interval_basis"] = out["same_kernels_interval_basis"]
        return out
    out["ms"], out["interval_ms"] = p.predicted_ms, p.interval_ms
    out["interval_basis"] = (
        f"the graph trace's GPU busy and per-op gap at their 10th–90th percentiles over its "
        f"{p.steps} profiled decode steps, the low end divided by the profiler's lengthening of "
        f"the replay ({p.inflation:.3f}×: {p.inflation_source})")
    out["graph_program"] = {
        "kernels_per_step": p.kernels, "ops_per_step": p.ops, "gpu_busy_ms": p.gpu_busy_ms,
        "gap_us": p.gap_ns / 1e3, "step_ms": p.latency_ms, "steps": p.steps,
        "ops_delta": p.ops - ops, "busy_delta_ms": p.gpu_busy_ms - busy,
        "model_name": p.model_name, "ctx": p.ctx, "gpu": p.gpu_name,
    }
    out["model"] = (f"{GRAPH_PROGRAM}: its GPU busy {p.gpu_busy_ms:.3f} ms + its {p.ops} GPU ops "
                    f"× {p.gap_ns / 1e3:.3f} µs ({p.source}); it runs {p.ops - ops:+d} GPU ops "
                    f"and {p.gpu_busy_ms - busy:+.3f} ms of GPU busy against this step "
                    f"({SAME_KERNELS}: {same:.3f} ms)")
    return out


def at_floor(decomp: dict, floor: dict, peak: float | None) -> dict:
    """The at-the-floor what-if: the floor at the peak bandwidth used, with the interval from it
    to the floor at the capture's measured copy bandwidth."""
    point = decomp.get("floor_ms")
    measured_ms, measured = floor.get("measured_floor_ms"), floor.get("measured_gbps")
    out = {"ms": point, "interval_ms": None, "interval_basis": None,
           "model": (f"{decomp['convention']} bytes ÷ {peak:g} GB/s"
                     if peak and point is not None else "no floor")}
    if point is None:
        return out
    if measured_ms is not None and measured:
        out["interval_ms"] = _contain(point, point, measured_ms)
        out["interval_basis"] = (f"the floor at {peak:g} GB/s and at the {measured:.0f} GB/s "
                                 "copy bandwidth the capture measured")
    else:
        out["interval_ms"] = [point, point]
        out["interval_basis"] = ("no measured copy bandwidth in the trace: the interval is the "
                                 f"floor at {peak:g} GB/s alone")
    return out


def section(summary: dict, decode: list[dict], decomp: dict, floor: dict, peak: float | None,
            calib: Calibration) -> dict:
    """The JSON ``whatif`` section (before ``no_stalls``, which the host attribution adds)."""
    lat = summary.get("latency_ms")
    g, f = cuda_graphs(summary, decode, calib), at_floor(decomp, floor, peak)
    return {
        "cuda_graphs_ms": g["ms"],
        "cuda_graphs_speedup": lat / g["ms"] if lat and g["ms"] else None,
        "graph_gap_us": calib.gap_ns / 1e3 if calib.gap_ns is not None else None,
        "graph_gap_source": calib.source,
        "at_floor_ms": f["ms"],
        "at_floor_speedup": lat / f["ms"] if lat and f["ms"] else None,
        "note": g["note"],
        "cuda_graphs_model": g["model"],
        "at_floor_model": f["model"],
        "cuda_graphs_program": g["program"],
        "cuda_graphs_interval_ms": g["interval_ms"],
        "cuda_graphs_interval_basis": g["interval_basis"],
        "cuda_graphs_same_kernels_ms": g["same_kernels_ms"],
        "cuda_graphs_same_kernels_interval_ms": g["same_kernels_interval_ms"],
        "graph_program": g["graph_program"],
        "at_floor_interval_ms": f["interval_ms"],
        "at_floor_interval_basis": f["interval_basis"],
    }


def cap_by_no_stalls(w: dict, summary: dict) -> None:
    """Graph replay of the same kernels removes every host gap, "without the stalls" only the
    stalls: the first is never the slower. Where the per-op gap model says otherwise (a step
    whose own gaps are shorter than a replay's), the same-kernels prediction is capped at the
    without-the-stalls step, and the model says so. The graph trace's program is another program
    and is left as measured."""
    cap = w.get("no_stalls_ms")
    same = w.get("cuda_graphs_same_kernels_ms")
    if cap is None or same is None or same <= cap:
        return
    w["cuda_graphs_same_kernels_ms"] = cap
    w["cuda_graphs_same_kernels_interval_ms"] = [
        min(v, cap) for v in w["cuda_graphs_same_kernels_interval_ms"]]
    if w.get("cuda_graphs_program") == SAME_KERNELS:
        lat = summary.get("latency_ms")
        w["cuda_graphs_ms"] = cap
        w["cuda_graphs_interval_ms"] = w["cuda_graphs_same_kernels_interval_ms"]
        w["cuda_graphs_speedup"] = lat / cap if lat and cap else None
        w["cuda_graphs_model"] += "; capped at the without-the-stalls step"


def against(whatif: dict, latency_ms: float | None) -> dict:
    """The CUDA-Graphs what-if of a ``whatif`` section set against another step's latency (the
    unprofiled one): ``ms``, ``interval_ms``, ``program`` as the section has them, ``speedup``
    and ``speedup_interval`` ([latency ÷ high, latency ÷ low]). One point and one interval
    wherever the what-if is shown."""
    ms, iv = whatif.get("cuda_graphs_ms"), whatif.get("cuda_graphs_interval_ms")
    out = {"ms": ms, "interval_ms": iv, "program": whatif.get("cuda_graphs_program"),
           "speedup": None, "speedup_interval": None}
    if ms and latency_ms:
        out["speedup"] = latency_ms / ms
        if iv and iv[0] and iv[1]:
            out["speedup_interval"] = [latency_ms / iv[1], latency_ms / iv[0]]
    return out
