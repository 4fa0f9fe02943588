"""The answer: split each decode step into memory floor + kernel excess + launch overhead.

    latency = floor + kernel_excess + launch_overhead
      floor            bytes the step must move ÷ peak bandwidth        (tracekit/floor.py)
      kernel_excess    gpu_busy − floor: kernels slower than streaming their bytes
      launch_overhead  idle: the GPU waiting (host_bound / launch_latency / sync / other)

Per step the three terms add up exactly. The summary uses medians over decode steps: the median
latency and the median GPU busy are split the same way, and the median idle of each gap class is
scaled to the summary's launch overhead so that the summary adds up exactly too.

What-ifs: *CUDA Graphs* — GPU busy + GPU ops × the per-op gap a graph replay leaves (calibrated from
a graph trace, ``graph_trace=``, else the measured default for the GPU's architecture); *at the
floor* — latency ÷ floor.

    >>> from tracekit import explain
    >>> result = explain("trace.json.gz", model="qwen2.5-7b", ctx=2048)   # doctest: +SKIP
    >>> result.to_dict()["verdict"]                                        # doctest: +SKIP
"""

from __future__ import annotations

import functools
import inspect
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from tracekit import __version__
from tracekit import host as host_attr
from tracekit import unprofiled as unprof
from tracekit.breakdown import GAP_CLASSES, kernel_category_rows, step_records, top_kernel_rows
from tracekit.capture.write import json_safe
from tracekit.errors import BadInput
from tracekit.floor import CONVENTIONS, floor_ms, step_floor
from tracekit.memory import release
from tracekit.specs.gpus import GpuSpec, get_gpu, match_gpu
from tracekit.specs.models import MAX_CTX, ModelSpec, dtype_bytes, get_model, known_models
from tracekit.specs.quant import UNQUANTIZED_DTYPE, capture_floor_dtype, is_quantized
from tracekit.steps import Steps, detect_steps, training_evidence
from tracekit.trace import Trace, load

if TYPE_CHECKING:
    import polars as pl

SCHEMA = "tracekit.explain/1"

#: the DRAM bandwidths --bandwidth accepts (GB/s): a Jetson has ~68, a B200 8000
MIN_GBPS, MAX_GBPS = 1.0, 100_000.0


def check_ctx(ctx: int | None) -> None:
    """A context length must be a token count a KV cache can hold."""
    if ctx is not None and (type(ctx) is not int or not 0 <= ctx <= MAX_CTX):
        raise BadInput(f"--ctx must be a number of tokens from 0 to {MAX_CTX}, got {ctx}")

#: Per-GPU-op gap left by a CUDA graph replay, by architecture (ns). Measured, not assumed: the
#: eager Qwen2.5-7B-shaped decode step (bf16, ctx 2053, 1312 GPU ops) captured as one CUDA graph and
#: replayed 10 times on an NVIDIA H200 (PyTorch 2.11, CUDA 13): 0.652 ms idle per step = 497 ns
#: per op (HF's static-cache graph of the same model: 489 ns). tests/test_explain.py re-derives it
#: from sample_traces/plain_qwen2.5-7b_ctx2048_graph_eager_kernels.json.gz. No other architecture
#: has been measured here, so none gets a default: pass --graph-trace.
GRAPH_GAP_NS: dict[str, float] = {"hopper": 497.0}


@dataclass(repr=False)
class Explanation:
    """Everything ``tracekit explain`` says about one trace.

    ``to_dict()`` is the JSON contract (``tracekit.explain/1``); the attributes below hold its
    sections as plain dicts and lists. For a notebook: ``steps``, ``gaps``, ``kernels`` and
    ``categories`` are polars DataFrames (``to_pandas(name)`` for pandas), ``to_markdown()`` and
    ``to_html()`` render the reports, ``figures()`` returns the report's plotly figures, and a
    notebook cell showing an Explanation renders the compact report.

        >>> import tracekit
        >>> e = tracekit.explain(tracekit.sample_path())          # doctest: +SKIP
        >>> e.steps.select("step", "latency_ms", "gpu_busy_ms")  # doctest: +SKIP
    """

    source: dict
    model: dict
    gpu: dict
    #: the contract's ``steps`` (one dict per step); the ``steps`` attribute is its DataFrame
    step_rows: list[dict] = field(metadata={"json": "steps"})
    summary: dict
    floor: dict
    decomposition: dict
    whatif: dict
    kernels_by_category: list[dict]
    top_kernels: list[dict]
    verdict: str
    warnings: list[str]
    #: host attribution (tracekit/host.py): launch issue vs stalls, by op; None without CPU ops
    host: dict | None = None
    #: the unprofiled step (tracekit/unprofiled.py); None when its latency is unknown
    unprofiled: dict | None = None
    #: the one context story: prompt length and the KV length over the profiled steps
    context: dict = field(default_factory=dict)
    #: with ``baseline=`` (a bf16 trace): how much of the quantized step's byte saving it
    #: realises (tracekit/quantized.py); an additive key, absent from the document without one
    quantization: dict | None = field(default=None, metadata={"omit_if_none": True})
    # for renderers and DataFrames, not serialized: computed on first use
    _timeline: Callable[[], dict] | None = field(default=None, repr=False)
    _trace: Trace | None = field(default=None, repr=False)
    _steps: Steps | None = field(default=None, repr=False)
    _host: object | None = field(default=None, repr=False)  # host.HostAttribution

    @functools.cached_property
    def timeline(self) -> dict:
        """One representative decode step's ops and classified gaps (see breakdown.step_gaps)."""
        return self._timeline() if self._timeline else {}

    @property
    def trace(self) -> Trace | None:
        """The normalized trace this explanation was computed from."""
        return self._trace

    def to_dict(self) -> dict:
        """The JSON contract: one versioned document, unknown values null, counts integers."""
        d = {"schema": SCHEMA, "tracekit_version": __version__}
        for f in fields(self):
            if f.name.startswith("_") or (f.metadata.get("omit_if_none")
                                          and getattr(self, f.name) is None):
                continue
            d[f.metadata.get("json", f.name)] = json_safe(getattr(self, f.name))
        return d

    # -- DataFrames (tracekit/frames.py) --------------------------------------------------------
    @property
    def steps(self) -> pl.DataFrame:
        """One row per detected step: latency, GPU busy, idle by class, counts, floor."""
        from tracekit.frames import steps_frame

        return steps_frame(self.step_rows)

    @functools.cached_property
    def gaps(self) -> pl.DataFrame:
        """One row per GPU idle gap: step, start, duration, class, the op that ended it, host op."""
        import polars as pl

        from tracekit.frames import GAPS_SCHEMA, gaps_frame

        if self._trace is None or self._steps is None or not self._trace.has_gpu:
            return pl.DataFrame(schema=GAPS_SCHEMA)
        host_ops = None
        if self._host is not None:
            host_ops = {(s, a): op for s, a, op in
                        self._host.gaps.select("step", "start_ns", "op").iter_rows()}
        return gaps_frame(self._trace, self._steps, host_ops)

    @functools.cached_property
    def kernels(self) -> pl.DataFrame:
        """Every kernel name over the decode steps: category, ms and calls per step, median µs."""
        from tracekit.frames import kernels_frame

        if self._steps is None:
            import polars as pl

            return pl.DataFrame(self.top_kernels)
        return kernels_frame(self._steps)

    @property
    def categories(self) -> pl.DataFrame:
        """Kernel categories per decode step (the contract's ``kernels_by_category``)."""
        from tracekit.frames import categories_frame

        return categories_frame(self.kernels_by_category)

    def to_pandas(self, name: str | None = None):
        """``steps``, ``gaps``, ``kernels`` or ``categories`` as a pandas DataFrame; all four in a
        dict when ``name`` is None. Needs pandas (not pyarrow)."""
        from tracekit.frames import FRAMES, to_pandas

        if name is None:
            return {n: to_pandas(getattr(self, n)) for n in FRAMES}
        if name not in FRAMES:
            raise BadInput(f"unknown table {name!r}; known: {', '.join(FRAMES)}")
        return to_pandas(getattr(self, name))

    # -- reports --------------------------------------------------------------------------------
    def to_markdown(self, path: str | Path | None = None) -> str | Path:
        """The Markdown summary (``tracekit explain --markdown``), to paste into an issue; with
        ``path``, written there (atomically, replacing a file) and the path returned."""
        from tracekit.report.markdown import render_markdown

        text = render_markdown(self.to_dict())
        if path is None:
            return text
        from tracekit.fileio import atomic_write_text

        return atomic_write_text(path, text)

    def to_html(self, path: str | Path | None = None, *, plotlyjs: str = "inline") -> str | Path:
        """The self-contained HTML report (``tracekit explain --html``) as a string; with
        ``path``, written there (atomically, replacing a file) and the path returned instead of
        the page (a few MB a notebook cell would echo). ``plotlyjs="cdn"`` makes a small file that
        needs the network."""
        from tracekit.report.html import render_html

        page = render_html(self.to_dict(), self.timeline, plotlyjs=plotlyjs)
        if path is None:
            return page
        from tracekit.fileio import atomic_write_text

        return atomic_write_text(path, page)

    def figures(self) -> dict:
        """The HTML report's plotly figures by name: ``waterfall``, ``steps``, ``timeline``
        (absent when there is nothing to draw)."""
        from tracekit.report.html import figures

        return figures(self.to_dict(), self.timeline)

    def _repr_html_(self) -> str:
        from tracekit.report.html import render_compact

        return render_compact(self.to_dict())

    def __repr__(self) -> str:
        what = " on ".join(str(x) for x in (self.model.get("name"), self.gpu.get("name")) if x)
        lat = self.summary.get("latency_ms")
        return (f"<Explanation {what or self.source.get('file')}: "
                f"{self.source.get('decode_steps')} decode steps"
                f"{f', {lat:.3f} ms/step' if lat is not None else ''} — {self.verdict}>")




# -- entry point ------------------------------------------------------------------------------
def explain(
    trace: str | Path | Trace,
    *,
    step_marker: str | None = None,
    model: str | ModelSpec | None = None,
    ctx: int | None = None,
    gpu: str | None = None,
    bandwidth: float | None = None,
    dtype: str | None = None,
    group_size: int | None = None,
    convention: str = "exact",
    graph_trace: str | Path | Trace | None = None,
    unprofiled_ms: float | None = None,
    baseline: str | Path | Trace | None = None,
    bandwidth_gbps: float | None = None,
) -> Explanation:
    """Explain a decode trace. Flags override what the trace's capture metadata says.

    The options are ``tracekit explain``'s, by the same names (``--graph-trace`` is
    ``graph_trace=``); ``bandwidth_gbps=`` is the older name of ``bandwidth=`` (GB/s).
    """
    if convention not in CONVENTIONS:
        raise BadInput(f"unknown convention {convention!r}; known: {', '.join(CONVENTIONS)}")
    check_ctx(ctx)
    if bandwidth_gbps is not None:
        if bandwidth is not None and bandwidth != bandwidth_gbps:
            raise BadInput("pass bandwidth= or its older name bandwidth_gbps=, not both")
        bandwidth = bandwidth_gbps
    if bandwidth is not None and (type(bandwidth) not in (int, float)
                                  or not MIN_GBPS <= bandwidth <= MAX_GBPS):
        raise BadInput(f"--bandwidth must be a number of GB/s from {MIN_GBPS:g} to {MAX_GBPS:g}, "
                       f"got {bandwidth!r}")
    for name, value in (("model", model), ("gpu", gpu), ("dtype", dtype),
                        ("step_marker", step_marker)):
        if value is not None and not isinstance(value, (str, Path, ModelSpec) if name == "model"
                                                else str):
            raise BadInput(f"{name}= must be a string, got {value!r}")
    if isinstance(model, Path):
        model = str(model)  # a config.json or checkpoint directory
    if group_size is not None:
        if type(group_size) is not int:
            raise BadInput(f"--group-size must be a positive integer, got {group_size!r}")
        from tracekit.specs.quant import with_group_size

        dtype = with_group_size(dtype or "int4", group_size)
    unprof.check_flag(unprofiled_ms, None)
    tr = trace if isinstance(trace, Trace) else load(trace)
    release()  # what the streaming reader freed
    spec, ctx0, dtype, model_src = _resolve_model(tr, model, ctx, dtype)
    steps = detect_steps(tr, step_marker=step_marker,
                         layers=spec.layers if spec is not None else None)
    table = step_records(tr, steps)
    release()
    warnings = list(tr.warnings) + list(steps.warnings)

    gspec, peak, peak_src = _resolve_gpu(tr, gpu, bandwidth)
    measured = (tr.capture or {}).get("copy_bandwidth_gbps")
    cap = tr.capture or {}
    # not for a range-profiler trace (the reader has said what it is and what to capture instead)
    # nor a `tracekit capture --device cpu` trace (its GPU is absent on purpose)
    if (not tr.has_gpu and cap.get("device") != "cpu"
            and not (tr.meta.get("skipped_categories") or {}).get("cuda_profiler_range")):
        warnings.append("no GPU activity in this trace: host-side step times only "
                        "(profile with ProfilerActivity.CUDA to see the GPU)")

    rows = _step_rows(table, spec, ctx0, dtype, peak, convention)
    decode = [r for r in rows if r["kind"] == "decode"]
    summary = _summary(decode)
    training = training_evidence(tr, steps)
    if training:
        summary["tokens_per_s"] = summary["tokens_per_s_total"] = None
        warnings.append(f"the steps look like training iterations, not decode steps ({training}): "
                        "tokens/s is not reported and the memory floor of decode does not apply")
    floor = _floor_section(spec, ctx0, decode, dtype, peak, measured, convention)
    decomp = _decomposition(summary, floor, spec, ctx0, dtype, peak, convention, warnings)
    gap_ns, gap_src = _graph_gap(graph_trace, gspec, tr, step_marker)
    whatif = _whatif(summary, decomp, peak, gap_ns, gap_src)
    unprof.check_flag(unprofiled_ms, summary["gpu_busy_ms"])
    attribution = host_attr.attribute(tr, steps) if tr.has_gpu else None
    release()  # the attribution's temporaries, before the kernel tables
    if attribution is None and tr.has_gpu and "cpu" not in (cap.get("profiler_activities") or ()):
        # a capture that recorded CPU activity and has no CPU op is CUDA Graphs replay: the step
        # is one cudaGraphLaunch, and there is no host op to attribute (not a missing activity)
        warnings.append("no CPU ops in this trace: host attribution (what the host was doing "
                        "while the GPU waited) needs CPU activity — profile with "
                        "ProfilerActivity.CPU as well as CUDA")
    host = _host_section(attribution, rows, summary, decomp)
    _no_stalls(whatif, summary, host)
    real = _unprofiled(tr, gspec, unprofiled_ms, summary, decomp, host, whatif, warnings)
    kcat = _categories(steps, spec, dtype, floor)
    explanation = Explanation(
        source=_source(tr, steps, rows),
        model=_model_section(spec, ctx0, dtype, model_src),
        gpu={
            "name": tr.meta.get("gpu_name"), "matched": gspec.name if gspec else None,
            "arch": gspec.arch if gspec else None, "peak_gbps": peak, "peak_source": peak_src,
            "measured_gbps": measured,
        },
        step_rows=rows, summary=summary, floor=floor, decomposition=decomp, whatif=whatif,
        kernels_by_category=kcat, context=_context(tr, decode, floor, model_src, ctx),
        top_kernels=top_kernel_rows(steps, 10) if tr.has_gpu else [],
        verdict="", warnings=warnings, host=host, unprofiled=real,
        _timeline=functools.partial(_timeline, tr, steps, table, attribution), _trace=tr, _steps=steps,
        _host=attribution,
    )
    explanation.verdict = verdict(explanation)
    if baseline is not None:  # the quantized step against the bf16 one (same model, GPU, ctx)
        from tracekit.quantized import realised_savings

        base = explain(baseline, step_marker=step_marker, model=model, gpu=gpu,
                       bandwidth=bandwidth, convention=convention)
        explanation.quantization = realised_savings(explanation.to_dict(), base.to_dict())
    return explanation


# -- resolution of model and GPU --------------------------------------------------------------
def _resolve_model(tr: Trace, model, ctx, dtype):
    cap = tr.capture or {}
    spec, src = None, None
    if isinstance(model, ModelSpec):
        spec, src = model, "argument"
    elif model is not None:
        spec, src = get_model(model), "flag"
    elif isinstance(cap.get("model"), dict):
        spec, src = _spec_from_capture(cap["model"]), "capture"
    ctx0 = ctx if ctx is not None else cap.get("ctx_first_step", cap.get("ctx"))
    # a quantized capture's floor counts its scheme's stored format (tracekit.specs.quant)
    dtype = dtype or capture_floor_dtype(cap) or cap.get("dtype") or "bf16"
    return spec, ctx0, dtype, src


def _spec_from_capture(d: dict) -> ModelSpec | None:
    names = {f.name for f in fields(ModelSpec)} - {"extra"}
    try:
        return ModelSpec(**{k: v for k, v in d.items() if k in names})
    except (TypeError, BadInput):
        # an older or damaged block: fall back on the registry entry it names, never on a path
        name = d.get("name")
        if isinstance(name, str) and name.strip().lower() in known_models():
            return get_model(name)
        return None


def _resolve_gpu(tr: Trace, gpu, bandwidth):
    gspec: GpuSpec | None = get_gpu(gpu) if gpu else match_gpu(tr.meta.get("gpu_name"))
    if bandwidth is not None:
        return gspec, float(bandwidth), "flag"
    if gspec is not None:
        return gspec, float(gspec.peak_gbps), "datasheet"
    return None, None, None


# -- per step ---------------------------------------------------------------------------------
def _ms(ns) -> float | None:
    return None if ns is None else ns / 1e6


def _step_rows(table: list[dict], spec, ctx0, dtype, peak, convention) -> list[dict]:
    rows = []
    for i, r in enumerate(table):
        row = {
            "step": r["step"], "name": r["name"], "kind": r["kind"],
            "latency_ms": _ms(r["latency_ns"]), "span_ms": _ms(r["span_ns"]),
            "gpu_busy_ms": _ms(r["gpu_busy_ns"]), "idle_ms": _ms(r["idle_ns"]),
            "idle_by_class_ms": {c: _ms(r[f"idle_{c}_ns"]) for c in GAP_CLASSES},
            "kernels": r["kernels"], "memcpys": r["memcpys"], "memsets": r["memsets"],
            "launches": r["launches"], "graph_launches": r["graph_launches"],
            "launch_host_ms": _ms(r["launch_host_ns"]), "cpu_ms": _ms(r["cpu_ns"]),
            "ctx": None, "floor_ms": None, "kernel_excess_ms": None, "r_floor": None,
            "batch": r.get("batch"), "outside_ops": r.get("outside_ops"),
        }
        if ctx0 is not None:
            row["ctx"] = ctx0 + i
        if spec is not None and ctx0 is not None and peak is not None:
            f = step_floor(spec, ctx0 + i, peak, dtype=dtype, convention=convention,
                           batch=r.get("batch") or 1)
            row["floor_ms"] = f.floor_ms
            if row["gpu_busy_ms"] is not None:
                row["kernel_excess_ms"] = row["gpu_busy_ms"] - f.floor_ms
            if row["latency_ms"]:
                row["r_floor"] = f.floor_ms / row["latency_ms"]
        rows.append(row)
    return rows


def _median(xs: list, *, low: bool = False) -> float | None:
    """The median; ``low``: the lower middle value of an even count (an observed value, so a
    median count stays an integer)."""
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    if n % 2 or low:
        return xs[(n - 1) // 2]
    return (xs[n // 2 - 1] + xs[n // 2]) / 2


#: counts: their summary is the lower median, an integer (the contract: counts are integers)
COUNT_KEYS = {"kernels", "memcpys", "memsets", "launches", "graph_launches"}

SUMMARY_KEYS = ["latency_ms", "span_ms", "gpu_busy_ms", "idle_ms", "kernels", "memcpys", "memsets",
                "launches", "graph_launches", "launch_host_ms", "cpu_ms", "floor_ms",
                "kernel_excess_ms", "r_floor"]


def _summary(decode: list[dict]) -> dict:
    # latency-based medians use the steps that have a successor (a defensible latency)
    timed = [r for r in decode if r["latency_ms"] is not None] or decode
    s: dict = {"steps": len(decode), "steps_with_latency": sum(
        r["latency_ms"] is not None for r in decode)}
    for k in SUMMARY_KEYS:
        src = timed if k in ("latency_ms", "gpu_busy_ms", "idle_ms", "r_floor") else decode
        s[k] = _median([r[k] for r in src], low=k in COUNT_KEYS)
    s["idle_by_class_ms"] = {c: _median([r["idle_by_class_ms"][c] for r in timed])
                             for c in GAP_CLASSES}
    s["range"] = {k: _range([r[k] for r in (timed if k == "latency_ms" else decode)])
                  for k in ("latency_ms", "gpu_busy_ms", "idle_ms", "kernels", "launches")}
    # the batch a marker stated (vLLM, SGLang); a trace that says nothing is batch 1
    batches = [r.get("batch") for r in decode if r.get("batch")]
    s["batch"] = int(_median(batches, low=True)) if batches else 1
    s["batch_source"] = "marker" if batches else "assumed"
    s["tokens_per_s"] = 1e3 / s["latency_ms"] if s["latency_ms"] else None  # per sequence
    s["tokens_per_s_total"] = (s["tokens_per_s"] * s["batch"]
                               if s["tokens_per_s"] is not None else None)
    s["launch_host_us_per_launch"] = (1e3 * s["launch_host_ms"] / s["launches"]
                                      if s["launch_host_ms"] and s["launches"] else None)
    return s


def _range(xs: list) -> list | None:
    xs = [x for x in xs if x is not None]
    return [min(xs), max(xs)] if xs else None


# -- floor and decomposition ------------------------------------------------------------------
def _floor_section(spec, ctx0, decode, dtype, peak, measured, convention) -> dict:
    out = {"bytes": None, "floor_ms": None, "convention": convention, "ctx": None,
           "peak_gbps": peak, "weights_bytes": None, "kv_read_bytes": None,
           "kv_write_bytes": None, "all_weights": None, "exact": None,
           "measured_gbps": measured, "measured_floor_ms": None, "missing": None, "batch": None}
    if spec is None or ctx0 is None or peak is None:
        need = [flag for flag, have in (("--model", spec is not None), ("--ctx", ctx0 is not None),
                                        ("--gpu or --bandwidth", peak is not None)) if not have]
        out["missing"] = f"pass {', '.join(need)} to compute the memory floor"
        return out
    ctxs = [r["ctx"] for r in decode if r["ctx"] is not None]
    ctx = int(_median(ctxs)) if ctxs else ctx0
    batches = [r.get("batch") for r in decode if r.get("batch")]
    batch = int(_median(batches, low=True)) if batches else 1
    out["batch"] = batch
    f = step_floor(spec, ctx, peak, dtype=dtype, convention=convention, batch=batch)
    out.update(bytes=f.bytes, floor_ms=f.floor_ms, ctx=ctx, weights_bytes=f.weights_bytes,
               kv_read_bytes=f.kv_read_bytes, kv_write_bytes=f.kv_write_bytes)
    for conv in CONVENTIONS:
        g = step_floor(spec, ctx, peak, dtype=dtype, convention=conv, batch=batch)
        out["all_weights" if conv == "all-weights" else "exact"] = {
            "bytes": g.bytes, "floor_ms": g.floor_ms}
    if measured:
        out["measured_floor_ms"] = floor_ms(f.bytes, measured)
    return out


def _decomposition(summary, floor, spec, ctx0, dtype, peak, convention, warnings) -> dict:
    lat, busy = summary["latency_ms"], summary["gpu_busy_ms"]
    d = {"basis": "medians over decode steps", "convention": convention, "latency_ms": lat,
         "floor_ms": floor["floor_ms"], "kernel_excess_ms": None, "launch_overhead_ms": None,
         "launch_overhead_by_class_ms": None, "r_floor": None, "r_floor_all_weights": None,
         "achieved_gbps_latency": None, "achieved_gbps_busy": None}
    if lat is None or busy is None:
        return d
    overhead = lat - busy
    d["launch_overhead_ms"] = overhead
    classes = summary["idle_by_class_ms"]
    total = sum(v or 0 for v in classes.values())
    d["launch_overhead_by_class_ms"] = {
        c: ((classes[c] or 0) / total * overhead if total else 0.0) for c in GAP_CLASSES}
    if floor["floor_ms"] is None:
        d["kernel_excess_ms"] = None
        return d
    d["kernel_excess_ms"] = busy - floor["floor_ms"]
    d["r_floor"] = floor["floor_ms"] / lat
    d["r_floor_all_weights"] = floor["all_weights"]["floor_ms"] / lat
    d["achieved_gbps_latency"] = floor["bytes"] / (lat * 1e-3) / 1e9
    d["achieved_gbps_busy"] = floor["bytes"] / (busy * 1e-3) / 1e9 if busy else None
    if d["kernel_excess_ms"] < 0:
        warnings.append(
            f"kernel excess is negative ({d['kernel_excess_ms']:.3f} ms): the GPU was busy for less "
            f"than the {floor['floor_ms']:.3f} ms floor, so the floor is wrong — check --model, "
            f"--ctx, --gpu/--bandwidth and --dtype ({spec.name}, ctx {floor['ctx']}, {dtype}, "
            f"{peak:g} GB/s)")
    return d


# -- what-ifs ---------------------------------------------------------------------------------
def graph_gap_ns(graph: Trace, *, step_marker: str | None = None) -> float:
    """The per-GPU-op idle of a graph-replay trace: median over decode steps of idle ÷ ops."""
    steps = detect_steps(graph, step_marker=step_marker)
    t = [r for r in step_records(graph, steps)
         if r["kind"] == "decode" and r["latency_ns"] is not None]
    if not t or sum(r["graph_launches"] for r in t) == 0:
        raise BadInput("--graph-trace has no CUDA-graph decode steps to calibrate from "
                       "(it needs cudaGraphLaunch calls and at least two steps)")
    per_op = [float(r["idle_ns"]) / float(r["kernels"] + r["memcpys"] + r["memsets"]) for r in t]
    return float(_median(per_op))


def _graph_gap(graph_trace, gspec, tr, step_marker):
    if graph_trace is not None:
        g = graph_trace if isinstance(graph_trace, Trace) else load(graph_trace)
        src = "graph trace" if isinstance(graph_trace, Trace) else f"graph trace {graph_trace}"
        return graph_gap_ns(g), src
    if gspec is not None and gspec.arch in GRAPH_GAP_NS:
        return GRAPH_GAP_NS[gspec.arch], f"default for {gspec.arch}, measured on an H200"
    return None, None


def _whatif(summary, decomp, peak, gap_ns, gap_src) -> dict:
    lat, busy = summary["latency_ms"], summary["gpu_busy_ms"]
    w = {"cuda_graphs_ms": None, "cuda_graphs_speedup": None, "graph_gap_us": None,
         "graph_gap_source": gap_src, "at_floor_ms": decomp["floor_ms"], "at_floor_speedup": None,
         "note": None}
    if gap_ns is not None:
        w["graph_gap_us"] = gap_ns / 1e3
    w["cuda_graphs_model"] = (f"GPU busy + GPU ops × {gap_ns / 1e3:.3f} µs per-op gap ({gap_src})"
                              if gap_ns is not None else "no per-op graph gap known")
    w["at_floor_model"] = (f"{decomp['convention']} bytes ÷ {peak:g} GB/s"
                           if peak and decomp["floor_ms"] is not None else "no floor")
    if lat and decomp["floor_ms"]:
        w["at_floor_speedup"] = lat / decomp["floor_ms"]
    if lat is None or busy is None:
        return w
    if (summary["graph_launches"] or 0) > 0 and (summary["launches"] or 0) <= 4 * summary["graph_launches"]:
        w["note"] = "the trace already replays CUDA graphs"
        return w
    if gap_ns is None:
        w["note"] = "no per-op graph gap for this GPU: pass --graph-trace with a graph-replay trace"
        return w
    ops = (summary["kernels"] or 0) + (summary["memcpys"] or 0) + (summary["memsets"] or 0)
    w["cuda_graphs_ms"] = busy + ops * gap_ns / 1e6
    w["cuda_graphs_speedup"] = lat / w["cuda_graphs_ms"]
    return w


# -- host attribution and the unprofiled step -------------------------------------------------
def _host_section(h, rows: list[dict], summary: dict, decomp: dict) -> dict | None:
    """The JSON ``host`` section: launch issue vs stalls (medians over the timed decode steps).
    ``launch_issue_ms + stall_ms`` is the decomposition's ``host_bound`` term exactly."""
    if h is None:
        return None
    timed = [r["step"] for r in rows if r["kind"] == "decode" and r["latency_ms"] is not None]
    ids = timed or [r["step"] for r in rows if r["kind"] == "decode"]
    cols = ("stall_ns", "stall_host_ns", "issue_median_ns", "threshold_ns", "events", "cpu_ops")
    per = h.step_columns(ids, [*cols, "launch_span_ns", "launches"])
    med = {c: _median(per[c]) for c in cols}
    host_bound = (decomp.get("launch_overhead_by_class_ms") or {}).get("host_bound")
    stall_ms = med["stall_ns"] / 1e6 if med["stall_ns"] is not None else 0.0
    issue_ms = max(host_bound - stall_ms, 0.0) if host_bound is not None else None
    # host time per launch outside stalls: first to last launch of the step, minus stalls
    per_launch = [(sp - st) / (n - 1) / 1e3 for sp, st, n in
                  zip(per["launch_span_ns"], per["stall_host_ns"], per["launches"]) if n > 1]
    lat = summary.get("latency_ms")
    return {
        "basis": "profiled; medians over decode steps",
        "launch_issue_ms": issue_ms,
        "stall_ms": stall_ms,
        "stall_host_ms": med["stall_host_ns"] / 1e6 if med["stall_host_ns"] is not None else None,
        "us_per_launch": _median(per_launch),
        "issue_interval_median_us": (med["issue_median_ns"] / 1e3
                                     if med["issue_median_ns"] is not None else None),
        "stall_threshold_us": med["threshold_ns"] / 1e3 if med["threshold_ns"] is not None else None,
        "events_per_step": int(med["events"]) if med["events"] is not None else None,
        "rule": (f"stall: one CPU op holding >= {host_attr.STALL_FACTOR:g}x the step's median "
                 f"launch-to-launch interval and >= {host_attr.STALL_MIN_NS / 1e3:g} us of "
                 "host-bound idle; the rest of host_bound is launch issue"),
        "stalls": host_attr.stall_table(h, ids, lat),
        "by_op": host_attr.by_op_table(h, ids),
    }


def _stall_normal_ms(host: dict) -> float:
    """What issuing the stalling ops costs when they do not stall (ms per step)."""
    return sum(s["per_step"] * (s["normal_us"] or 0.0) / 1e3 for s in host["stalls"])


def _no_stalls(whatif: dict, summary: dict, host: dict | None) -> None:
    """The "without the stalls" what-if on the profiled step: minus the stall idle, plus what
    issuing those ops normally costs (the same op's median host time when it does not stall)."""
    lat, busy = summary.get("latency_ms"), summary.get("gpu_busy_ms")
    whatif.update(no_stalls_ms=None, no_stalls_speedup=None)
    if host is None or lat is None or not host["stalls"] or not host["stall_ms"]:
        return  # no stall in the median step: nothing to take away
    ms = max(lat - host["stall_ms"] + _stall_normal_ms(host), busy or 0.0)
    whatif.update(no_stalls_ms=ms, no_stalls_speedup=lat / ms if ms else None)


def _unprofiled(tr: Trace, gspec, flag_ms, summary, decomp, host, whatif, warnings) -> dict | None:
    """The JSON ``unprofiled`` section (see tracekit/unprofiled.py), or None when unknown."""
    p, busy = summary.get("latency_ms"), summary.get("gpu_busy_ms")
    cap = unprof.from_capture(tr.capture)
    if flag_ms is not None:
        u, source = float(flag_ms), "flag"
    elif cap is not None:
        u, source = cap["latency_ms"], "capture"
    else:
        return None
    out = {"latency_ms": u, "source": source, "profiler_overhead": p / u if p else None,
           "profiled_latency_ms": p, "samples": None, "decomposition": None,
           "whatif": {"cuda_graphs_ms": whatif.get("cuda_graphs_ms"), "cuda_graphs_speedup": None,
                      "no_stalls_ms": None, "no_stalls_speedup": None},
           "model": None, "calibration": None, "estimate": True, "reliable": True, "host": None}
    if cap is not None and source == "capture":
        out["samples"] = {k: cap[k] for k in ("basis", "before_ms", "after_ms", "sessions",
                                              "sessions_median_ms")}
        out["samples"]["n"] = len(cap["samples"])
        out["reliable"] = _sample_warnings(cap, warnings)
    if p is not None and p < u:
        out["reliable"] = False
        warnings.append(
            f"the profiled step ({p:.1f} ms) is faster than the unprofiled one ({u:.1f} ms; "
            f"profiler overhead {p / u:.2f}x < 1): the host's speed drifted between timing and "
            "profiling, so the unprofiled numbers are unreliable — re-capture on a quiet host "
            "with several fresh sessions (tracekit capture --sessions N) or pass "
            "--unprofiled-ms from a stable run")
    if busy is None or p is None:
        return out
    classes = decomp.get("launch_overhead_by_class_ms") or {}
    other = sum(v or 0.0 for c, v in classes.items() if c != "host_bound")
    dec = {"floor_ms": decomp.get("floor_ms"), "kernel_excess_ms": decomp.get("kernel_excess_ms"),
           "launch_overhead_ms": u - busy, "launch_issue_ms": None, "stall_ms": None,
           "other_idle_ms": other}
    out["decomposition"] = dec
    if whatif.get("cuda_graphs_ms"):
        out["whatif"]["cuda_graphs_speedup"] = u / whatif["cuda_graphs_ms"]
    if host is None:
        return out
    cal = unprof.calibration(tr.meta.get("gpu_name"))
    sp = unprof.split(u=u, p=p, busy=busy, other=other, stall_p=host["stall_ms"],
                      events=host["events_per_step"] or 0, cost_ns=cal[0] if cal else None)
    dec.update(launch_issue_ms=sp["launch_issue_ms"], stall_ms=sp["stall_ms"])
    out["calibration"] = (cal[1] if cal and host["stall_ms"] > 0 else
                          "none needed: no stall" if host["stall_ms"] <= 0 else
                          "no per-event profiler cost measured for this machine: the split of "
                          "launch overhead into issue and stalls is unknown")
    if host["stall_ms"] <= 0:
        out["model"] = "no stall: launch issue is the rest of the unprofiled step"
    elif sp["cost_us_per_event"] is not None:
        out["model"] = ("per-event profiler cost: the profiled host issue time less "
                        f"{sp['cost_us_per_event']:.2f} µs per recorded event; stalls are the rest")
    out["host"] = {"launch_issue_ms": sp["launch_issue_ms"], "stall_ms": sp["stall_ms"],
                   "host_issue_ms": sp["host_issue_ms"],
                   "cost_us_per_event": sp["cost_us_per_event"]}
    if sp["stall_ms"] and host["stalls"] and host["stall_ms"]:
        scale = (sp["host_issue_ms"] / (p - host["stall_ms"] - other)
                 if sp["host_issue_ms"] and p - host["stall_ms"] - other > 0 else 1.0)
        ms = max(u - sp["stall_ms"] + _stall_normal_ms(host) * scale, busy)
        out["whatif"].update(no_stalls_ms=ms, no_stalls_speedup=u / ms)
    return out


def _sample_warnings(cap: dict, warnings: list[str]) -> bool:
    """Warn about unprofiled samples no single number summarizes; True when none applies."""
    modes = unprof.bimodal(cap["samples"])
    spread = cap.get("sessions_range_ms")
    if spread and spread[0] > 0 and spread[1] / spread[0] > unprof.SESSION_SPREAD:
        warnings.append(
            f"the {cap['sessions']} fresh sessions disagree: their unprofiled medians range from "
            f"{spread[0]:.1f} to {spread[1]:.1f} ms (the host's speed varies between processes); "
            f"tracekit uses their median, {cap['sessions_median_ms']:.1f} ms — treat single-session "
            "numbers from this machine with care")
    if modes:
        warnings.append(
            f"the unprofiled samples are bimodal (clusters near {modes[0]:.1f} and {modes[1]:.1f} "
            f"ms; median {cap['latency_ms']:.1f} ms): the host changed speed while timing, so no "
            "single number is the real step — re-capture on a quiet host, with more sessions, "
            "or pass --unprofiled-ms with the value you trust")
    b, a = cap.get("before_ms"), cap.get("after_ms")
    if b and a and abs(a - b) > unprof.DRIFT_TOLERANCE * min(a, b):
        warnings.append(
            f"the unprofiled step was {b:.1f} ms before the profiled window and {a:.1f} ms after "
            "it: the host's speed changed during the capture (it often stays slower after "
            "torch.profiler stops in the same process); "
            + (f"tracekit uses the median of the {cap['sessions']} sessions' steps timed before "
               "their windows" if (cap.get("sessions") or 0) >= 2 else
               "tracekit uses the steps timed before the window — capture several fresh "
               "sessions (tracekit capture --sessions N) before trusting one"))
    # with several sessions the latency is their median, which one noisy session cannot move
    return not modes or (cap.get("sessions") or 0) >= 3


# -- sections ---------------------------------------------------------------------------------
def _categories(steps: Steps, spec: ModelSpec | None, dtype: str, floor: dict) -> list[dict]:
    """Kernel categories, with the model's bytes where the model says which category moves them:
    GEMM/GEMV read every linear weight (q/k/v/o, MLP, the vocab × hidden output projection) and
    attention reads the KV cache. ``achieved_gbps`` = those bytes ÷ the category's time per step;
    null for categories whose bytes neither the model nor the trace pins down."""
    rows = kernel_category_rows(steps)
    model_bytes: dict[str, float] = {}
    if spec is not None and floor.get("kv_read_bytes") is not None:
        model_bytes = {
            "gemm": spec.gemm_bytes(dtype),
            "attention": floor["kv_read_bytes"],
        }
        if is_quantized(dtype) and any(r["category"] == "quant_gemm" for r in rows):
            # low-bit kernels read the quantized linears; the bf16 lm_head stays on a plain GEMM
            head = spec.vocab * spec.hidden * dtype_bytes(UNQUANTIZED_DTYPE)
            model_bytes.update(gemm=head, quant_gemm=spec.gemm_bytes(dtype) - head)
    for r in rows:
        mb = model_bytes.get(r["category"])
        r["model_bytes_per_step"] = mb
        r["achieved_gbps"] = mb / (r["ms_per_step"] * 1e-3) / 1e9 if mb and r["ms_per_step"] else None
    return rows


#: the capture metadata keys the explanation carries (``source.capture``) for the reports
CAPTURE_KEYS = ("mode", "ctx", "ctx_first_step", "timing", "profiled", "profiler_overhead_ratio",
                "command", "created", "device", "dtype", "attention", "timing_after",
                "timing_sessions", "gpu_clocks_before", "gpu_clocks_after")


def _source(tr: Trace, steps: Steps, rows: list[dict]) -> dict:
    cap = tr.capture
    return {
        "file": tr.meta.get("path"), "format": tr.meta.get("format"),
        "gpu": tr.meta.get("gpu_name"), "devices": list((tr.meta.get("devices") or {}).values()),
        "versions": {**(tr.meta.get("versions") or {}), **((cap or {}).get("versions") or {})},
        "detection_method": steps.method, "detection_detail": steps.detail,
        "step_contents": steps.contents,
        "steps_found": len(rows), "decode_steps": sum(r["kind"] == "decode" for r in rows),
        "flagged_steps": {k: [r["step"] for r in rows if r["kind"] == k]
                          for k in ("prefill", "mixed", "partial", "empty", "idle")
                          if any(r["kind"] == k for r in rows)},
        "events": tr.meta.get("events"), "skipped_categories": tr.meta.get("skipped_categories"),
        "capture": {k: cap.get(k) for k in CAPTURE_KEYS if k in cap} if cap else None,
    }


def _context(tr: Trace, decode: list[dict], floor: dict, model_src, ctx_flag) -> dict:
    """Which context lengths the numbers are at, named once for every renderer.

    ``prompt_tokens``: the prompt prefilled before decoding (a tracekit capture's ``--ctx``);
    ``first_step``/``last_step``: tokens in the KV cache at the first and last profiled decode
    step (the capture's warm-up and timed steps come first, so the first profiled step is past the
    prompt); ``floor_ctx``: the context the summary's floor is computed at (the median step's).
    """
    cap = tr.capture or {}
    ctxs = [r["ctx"] for r in decode if r.get("ctx") is not None]
    return {
        "prompt_tokens": cap.get("ctx") if isinstance(cap.get("ctx"), int) else None,
        "first_step": min(ctxs) if ctxs else None,
        "last_step": max(ctxs) if ctxs else None,
        "floor_ctx": floor.get("ctx"),
        "source": "flag" if ctx_flag is not None else ("capture" if cap.get(
            "ctx_first_step", cap.get("ctx")) is not None else None),
    }


def _model_section(spec, ctx0, dtype, src) -> dict:
    if spec is None:
        return {"name": None, "params": None, "ctx": ctx0, "dtype": dtype, "bytes_per_step": None,
                "source": None}
    ctx = ctx0 or 0
    return {
        "name": spec.name, "params": spec.param_count(), "layers": spec.layers,
        "kv_bytes_per_token": spec.kv_bytes_per_token(dtype), "ctx": ctx0, "dtype": dtype,
        "bytes_per_step": {c: spec.step_bytes(ctx, dtype, c)["total"] for c in CONVENTIONS}
        if ctx0 is not None else None,
        "source": src,
    }


def _timeline(tr: Trace, steps: Steps, table: list[dict], h=None) -> dict:
    """Ops and gaps of the decode step with the median latency, for the HTML timeline; host-bound
    gaps carry the host op that held the CPU (``host_op``) and whether they are a stall."""
    from tracekit.breakdown import step_gaps

    t = [r for r in table if r["kind"] == "decode" and r["latency_ns"] is not None]
    if not t or not tr.has_gpu:
        return {}
    t.sort(key=lambda r: r["latency_ns"])
    step = t[len(t) // 2]["step"]
    tl = step_gaps(tr, steps, step)
    if h is not None and tl.get("gaps"):
        import polars as pl

        t0 = tl.get("t0_ns", 0)
        held = {a: (op, stall) for a, op, stall in h.gaps.filter(pl.col("step") == step).select(
            "start_ns", "op", "stall").iter_rows()}
        for g in tl["gaps"]:
            op, stall = held.get(t0 + g["start_ns"], (None, False))
            g["host_op"], g["stall"] = op, bool(stall)
    return tl


# -- verdict ----------------------------------------------------------------------------------
def _fmt_ms(ms: float) -> str:
    return f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"


def _real(e: Explanation) -> dict | None:
    """The unprofiled section when it is trustworthy enough to lead the verdict."""
    u = e.unprofiled
    if not u or not u.get("decomposition") or not u.get("reliable"):
        return None
    return u


def _stall_clause(st: dict) -> str:
    n = st["per_step"]
    what = "one stall per step" if 0.9 <= n <= 1.1 else f"{n:.1f} stalls per step"
    why = f" ({st['short_cause']})" if st.get("short_cause") else ""
    return f"{what} in {st['op']}{why}"


def _host_verdict(e: Explanation, lat: float, floor_part: str, graphs: str) -> str | None:
    """Host-bound steps: a stall or the steady per-launch issue cost, whichever dominates."""
    h = e.host
    if not h:
        return None
    real = _real(e)
    basis, stall, issue, no_stalls = lat, h["stall_ms"], h["launch_issue_ms"], e.whatif
    tag = ""
    if real and real["decomposition"].get("stall_ms") is not None:
        basis, stall = real["latency_ms"], real["decomposition"]["stall_ms"]
        issue, no_stalls = real["decomposition"]["launch_issue_ms"], real["whatif"]
        tag = (f" (unprofiled, estimated; the profiled trace shows {_fmt_ms(h['stall_ms'])} of "
               f"{_fmt_ms(lat)})")
    elif real:
        tag = f" (profiled; the unprofiled step is {_fmt_ms(real['latency_ms'])})"
    if h["stalls"] and stall is not None and issue is not None and stall >= issue:
        st = h["stalls"][0]
        fix = f": {st['short_advice']}" if st.get("short_advice") else ""
        without = ""
        if no_stalls.get("no_stalls_ms"):
            without = (f"; without it ≈{_fmt_ms(no_stalls['no_stalls_ms'])} "
                       f"(≈{no_stalls['no_stalls_speedup']:.1f}×)")
        return (f"Host-stalled: {_fmt_ms(stall)} of each {_fmt_ms(basis)} step{tag} is "
                f"{_stall_clause(st)}{fix}{without}.")
    per = f" ({h['us_per_launch']:.0f} µs of host time per launch)" if h.get("us_per_launch") else ""
    also = ""
    if h["stalls"] and h["stalls"][0]["share"] and h["stalls"][0]["share"] >= 0.1:
        also = f"; besides, {_stall_clause(h['stalls'][0])}"
    if real:
        share = (real["decomposition"]["launch_overhead_ms"] or 0) / real["latency_ms"]
        return (f"Launch-bound: {share:.0%} of each {_fmt_ms(real['latency_ms'])} step "
                f"(unprofiled) is the GPU waiting for the host to issue ops{per}; {floor_part}"
                f"{graphs}{also}.")
    share = (e.decomposition.get("launch_overhead_ms") or 0) / lat
    return (f"Launch-bound: {share:.0%} of each {_fmt_ms(lat)} step is the GPU waiting for the "
            f"host to issue ops{per}; {floor_part}{graphs}{also}.")


def verdict(e: Explanation) -> str:
    """One sentence with the numbers that matter: the dominant cause first."""
    s, d, w = e.summary, e.decomposition, e.whatif
    lat, busy = s.get("latency_ms"), s.get("gpu_busy_ms")
    if not lat:
        return "No step latency: the trace has fewer than two decode steps with GPU work."
    if busy is None:
        return (f"Host-side only: each step takes {_fmt_ms(lat)} on the CPU; the trace has no GPU "
                "activity to explain.")
    overhead = d["launch_overhead_ms"] or 0.0
    share = overhead / lat
    floor = d.get("floor_ms")
    floor_part = (f"the weights+KV floor is {_fmt_ms(floor)} (R_floor {d['r_floor']:.0%})"
                  if floor else "no memory floor (" + (e.floor.get("missing") or "") + ")")
    real = _real(e)
    graphs = ""
    if w.get("cuda_graphs_ms"):
        speedup = (real["whatif"]["cuda_graphs_speedup"] if real and
                   real["whatif"].get("cuda_graphs_speedup") else w["cuda_graphs_speedup"])
        graphs = (f"; CUDA Graphs would bring the step to ≈{_fmt_ms(w['cuda_graphs_ms'])} "
                  f"(≈{speedup:.1f}×)")
    elif w.get("note") == "the trace already replays CUDA graphs":
        graphs = "; it already replays CUDA graphs"
    classes = d.get("launch_overhead_by_class_ms") or {}
    top = max(classes, key=lambda c: classes[c] or 0) if classes else None
    if share >= 0.5:
        if top == "host_bound":
            hv = _host_verdict(e, lat, floor_part, graphs)
            if hv:
                return hv
        what = {"host_bound": ("Launch-bound", "the GPU waiting for the host"),
                "sync": ("Sync-bound", "the GPU idle around host synchronizations"),
                "launch_latency": ("Launch-latency-bound", "gaps between already-queued kernels"),
                "other": ("Idle-bound", "the GPU idle for reasons the trace does not show")}[top]
        return f"{what[0]}: {share:.0%} of each {_fmt_ms(lat)} step is {what[1]}; {floor_part}{graphs}."
    if floor and d["r_floor"] >= 0.7:
        return (f"Near the memory floor: each {_fmt_ms(lat)} step is within "
                f"{1 / d['r_floor']:.2f}× of the {_fmt_ms(floor)} weights+KV floor "
                f"(R_floor {d['r_floor']:.0%}); only fewer bytes (quantization, smaller KV) will help{graphs}.")
    if floor:
        return (f"Kernel-bound: the GPU is busy {_fmt_ms(busy)} of each {_fmt_ms(lat)} step, "
                f"{busy / floor:.1f}× the {_fmt_ms(floor)} weights+KV floor (R_floor {d['r_floor']:.0%}); "
                f"the kernels, not launches, are what to speed up{graphs}.")
    return (f"GPU-busy: the GPU is busy {_fmt_ms(busy)} of each {_fmt_ms(lat)} step "
            f"({1 - share:.0%}); {floor_part}{graphs}.")


# -- `tracekit.explain(...)` ------------------------------------------------------------------
class _CallableModule(types.ModuleType):
    """Importing a submodule sets it as an attribute of its package, so ``tracekit.explain`` is
    this module whatever ``tracekit/__init__.py`` says; making the module callable lets
    ``tracekit.explain(path)`` be the function too without importing polars at ``import
    tracekit``."""

    def __call__(self, trace: str | Path | Trace, **options) -> Explanation:
        return explain(trace, **options)


__signature__ = inspect.signature(explain)
sys.modules[__name__].__class__ = _CallableModule
