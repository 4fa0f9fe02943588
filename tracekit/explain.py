"""The answer: split each decode step into memory floor + kernel excess + launch overhead.

    latency = floor + kernel_excess + launch_overhead
      floor            bytes the step must move ÷ peak bandwidth        (tracekit/floor.py)
      kernel_excess    gpu_busy − floor: kernels slower than streaming their bytes
      launch_overhead  idle: the GPU waiting (host_bound / launch_latency / sync / other)

Per step the three terms add up exactly. The summary uses medians over decode steps: the median
latency and the median GPU busy are split the same way, and the median idle of each gap class is
scaled to the summary's launch overhead so that the summary adds up exactly too.

What-ifs (tracekit/whatif.py), each with an interval: *CUDA Graphs* — these kernels replayed
(GPU busy + GPU ops × the per-op gap a graph replay leaves, the measured default for the GPU's
architecture), or, given a trace of the real graph program (``graph_trace=``), that program's own
busy + ops × gap; *at the floor* — latency ÷ floor.

    >>> from tracekit import explain
    >>> result = explain("trace.json.gz", model="qwen2.5-7b", ctx=2048)   # doctest: +SKIP
    >>> result.to_dict()["verdict"]                                        # doctest: +SKIP
"""

from __future__ import annotations

import functools
import inspect
import statistics
import sys
import types
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Literal, cast, get_args

from tracekit import host as host_attr
from tracekit import unprofiled as unprof
from tracekit import whatif as wi
from tracekit.api import SCHEMA, Explanation
from tracekit.breakdown import GAP_CLASSES, kernel_category_rows, step_records, top_kernel_rows
from tracekit.contract import (
    Capture,
    CategoryRow,
    Context,
    Decomposition,
    FloorSection,
    GapName,
    Host,
    IdleByClass,
    Model,
    Source,
    StepRow,
    Summary,
    Unprofiled,
    WhatIf,
)
from tracekit.errors import BadInput
from tracekit.floor import CONVENTIONS, floor_ms, step_floor
from tracekit.memory import release
from tracekit.specs.gpus import GpuSpec, get_gpu, match_gpu
from tracekit.specs.models import MAX_CTX, ModelSpec, dtype_bytes, get_model, known_models
from tracekit.specs.quant import UNQUANTIZED_DTYPE, capture_floor_dtype, is_quantized
from tracekit.stats import median
from tracekit.steps import Steps, detect_steps, training_evidence
from tracekit.trace import Trace, load
from tracekit.verdict import verdict
from tracekit.whatif import GRAPH_GAP_NS, graph_gap_ns

__all__ = ["GRAPH_GAP_NS", "SCHEMA", "Explanation", "check_ctx", "explain", "graph_gap_ns", "verdict"]

#: the DRAM bandwidths --bandwidth accepts (GB/s): a Jetson has ~68, a B200 8000
MIN_GBPS, MAX_GBPS = 1.0, 100_000.0


def check_ctx(ctx: int | None) -> None:
    """A context length must be a token count a KV cache can hold."""
    if ctx is not None and (type(ctx) is not int or not 0 <= ctx <= MAX_CTX):
        raise BadInput(f"--ctx must be a number of tokens from 0 to {MAX_CTX}, got {ctx}")



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
    # _UNTYPED: whatif.py and unprofiled.py take and return plain dicts; once their signatures
    # name the contract's types (Summary, Decomposition, FloorSection, Host, WhatIf, Unprofiled)
    # the casts here go
    whatif = cast(WhatIf, _whatif(summary, decode, decomp, floor, peak,
                                  _graph_gap(graph_trace, gspec, tr, spec, warnings)))
    unprof.check_flag(unprofiled_ms, summary["gpu_busy_ms"])
    attribution = host_attr.attribute(tr, steps) if tr.has_gpu else None
    release()  # the attribution's temporaries, before the kernel tables
    if attribution is None and tr.has_gpu and tr.meta.get("format") == "nsys" \
            and not wi.replays_graphs(cast(dict, summary)):
        # Nsight records CUDA API calls, not PyTorch's ops, whatever the capture's profiler did
        warnings.append("no CPU ops in an Nsight Systems export: host attribution (launch issue "
                        "against stalls such as a cuDNN plan build, and the op that held the "
                        "host) needs a torch.profiler trace with CPU activity — `tracekit "
                        "capture` without --profiler nsys")
    elif attribution is None and tr.has_gpu and \
            "cpu" not in (cap.get("profiler_activities") or ()):
        # a capture that recorded CPU activity and has no CPU op is CUDA Graphs replay: the step
        # is one cudaGraphLaunch, and there is no host op to attribute (not a missing activity)
        warnings.append("no CPU ops in this trace: host attribution (what the host was doing "
                        "while the GPU waited) needs CPU activity — profile with "
                        "ProfilerActivity.CPU as well as CUDA")
    host = _host_section(attribution, rows, summary, decomp)
    unprof.no_stalls(cast(dict, whatif), cast(dict, summary), cast("dict | None", host))
    wi.cap_by_no_stalls(cast(dict, whatif), cast(dict, summary))
    real = cast("Unprofiled | None", unprof.section(
        tr.capture, tr.meta.get("gpu_name"), unprofiled_ms, cast(dict, summary),
        cast(dict, decomp), cast("dict | None", host), cast(dict, whatif), warnings))
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


def _step_rows(table: list[dict], spec, ctx0, dtype, peak, convention) -> list[StepRow]:
    rows = []
    for i, r in enumerate(table):
        row: StepRow = {
            "step": r["step"], "name": r["name"], "kind": r["kind"],
            "latency_ms": _ms(r["latency_ns"]), "span_ms": _ms(r["span_ns"]),
            "gpu_busy_ms": _ms(r["gpu_busy_ns"]), "idle_ms": _ms(r["idle_ns"]),
            "idle_by_class_ms": _idle_ms_by_class(r),
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


def _by_class(value: Callable[[GapName], float | None]) -> IdleByClass:
    """One value per gap class, in GAP_CLASSES order."""
    return cast(IdleByClass, {c: value(c) for c in GAP_CLASSES})


def _idle_ms_by_class(r: dict) -> IdleByClass:
    """A step record's idle ns per gap class, in ms."""
    return _by_class(lambda c: _ms(r[f"idle_{c}_ns"]))


#: counts: their summary is the lower median, an integer (the contract: counts are integers)
COUNT_KEYS = {"kernels", "memcpys", "memsets", "launches", "graph_launches"}

#: the step keys the summary takes the median of, in the document's order
SummaryKey = Literal["latency_ms", "span_ms", "gpu_busy_ms", "idle_ms", "kernels", "memcpys",
                     "memsets", "launches", "graph_launches", "launch_host_ms", "cpu_ms",
                     "floor_ms", "kernel_excess_ms", "r_floor"]
SUMMARY_KEYS: tuple[SummaryKey, ...] = get_args(SummaryKey)
RANGE_KEYS: tuple[SummaryKey, ...] = ("latency_ms", "gpu_busy_ms", "idle_ms", "kernels",
                                      "launches")


def _summary(decode: list[StepRow]) -> Summary:
    # latency-based medians use the steps that have a successor (a defensible latency)
    timed = [r for r in decode if r["latency_ms"] is not None] or decode
    # built key by key from SUMMARY_KEYS, so typed as the Summary it becomes at the end
    s: dict = {"steps": len(decode), "steps_with_latency": sum(
        r["latency_ms"] is not None for r in decode)}
    for k in SUMMARY_KEYS:
        src = timed if k in ("latency_ms", "gpu_busy_ms", "idle_ms", "r_floor") else decode
        s[k] = median([r[k] for r in src], low=k in COUNT_KEYS)
    s["idle_by_class_ms"] = _by_class(
        lambda c: median([r["idle_by_class_ms"][c] for r in timed]))
    s["range"] = {k: _range([r[k] for r in (timed if k == "latency_ms" else decode)])
                  for k in RANGE_KEYS}
    # the batch a marker stated (vLLM, SGLang); a trace that says nothing is batch 1
    batches = [b for r in decode if (b := r["batch"])]
    s["batch"] = int(statistics.median_low(batches)) if batches else 1
    s["batch_source"] = "marker" if batches else "assumed"
    s["tokens_per_s"] = 1e3 / s["latency_ms"] if s["latency_ms"] else None  # per sequence
    s["tokens_per_s_total"] = (s["tokens_per_s"] * s["batch"]
                               if s["tokens_per_s"] is not None else None)
    s["launch_host_us_per_launch"] = (1e3 * s["launch_host_ms"] / s["launches"]
                                      if s["launch_host_ms"] and s["launches"] else None)
    return cast(Summary, s)


def _range(xs: list) -> list | None:
    xs = [x for x in xs if x is not None]
    return [min(xs), max(xs)] if xs else None


# -- floor and decomposition ------------------------------------------------------------------
def _floor_section(spec, ctx0, decode: list[StepRow], dtype, peak, measured,
                   convention) -> FloorSection:
    out: FloorSection = {"bytes": None, "floor_ms": None, "convention": convention, "ctx": None,
           "peak_gbps": peak, "weights_bytes": None, "kv_read_bytes": None,
           "kv_write_bytes": None, "all_weights": None, "exact": None,
           "measured_gbps": measured, "measured_floor_ms": None, "missing": None, "batch": None}
    if spec is None or ctx0 is None or peak is None:
        need = [flag for flag, have in (("--model", spec is not None), ("--ctx", ctx0 is not None),
                                        ("--gpu or --bandwidth", peak is not None)) if not have]
        out["missing"] = f"pass {', '.join(need)} to compute the memory floor"
        return out
    ctxs = [r["ctx"] for r in decode if r["ctx"] is not None]
    ctx = int(statistics.median(ctxs)) if ctxs else ctx0
    batches = [b for r in decode if (b := r["batch"])]
    batch = int(statistics.median_low(batches)) if batches else 1
    out["batch"] = batch
    f = step_floor(spec, ctx, peak, dtype=dtype, convention=convention, batch=batch)
    out["bytes"], out["floor_ms"], out["ctx"] = f.bytes, f.floor_ms, ctx
    out["weights_bytes"], out["kv_read_bytes"] = f.weights_bytes, f.kv_read_bytes
    out["kv_write_bytes"] = f.kv_write_bytes
    for conv in CONVENTIONS:
        g = step_floor(spec, ctx, peak, dtype=dtype, convention=conv, batch=batch)
        out["all_weights" if conv == "all-weights" else "exact"] = {
            "bytes": g.bytes, "floor_ms": g.floor_ms}
    if measured:
        out["measured_floor_ms"] = floor_ms(f.bytes, measured)
    return out


def _decomposition(summary: Summary, floor: FloorSection, spec, ctx0, dtype, peak, convention,
                   warnings: list[str]) -> Decomposition:
    lat, busy = summary["latency_ms"], summary["gpu_busy_ms"]
    d: Decomposition = {
        "basis": "medians over decode steps", "convention": convention, "latency_ms": lat,
        "floor_ms": floor["floor_ms"], "kernel_excess_ms": None, "launch_overhead_ms": None,
        "launch_overhead_by_class_ms": None, "r_floor": None, "r_floor_all_weights": None,
        "achieved_gbps_latency": None, "achieved_gbps_busy": None}
    if lat is None or busy is None:
        return d
    overhead = lat - busy
    d["launch_overhead_ms"] = overhead
    classes = summary["idle_by_class_ms"]
    total = sum(classes[c] or 0 for c in GAP_CLASSES)
    d["launch_overhead_by_class_ms"] = _by_class(
        lambda c: (classes[c] or 0) / total * overhead if total else 0.0)
    # _floor_section fills the floor, its bytes and the all-weights floor together
    fl, nbytes, allw = floor["floor_ms"], floor["bytes"], floor["all_weights"]
    if fl is None or nbytes is None or allw is None:
        d["kernel_excess_ms"] = None
        return d
    excess = d["kernel_excess_ms"] = busy - fl
    d["r_floor"] = fl / lat
    d["r_floor_all_weights"] = allw["floor_ms"] / lat
    d["achieved_gbps_latency"] = nbytes / (lat * 1e-3) / 1e9
    d["achieved_gbps_busy"] = nbytes / (busy * 1e-3) / 1e9 if busy else None
    if excess < 0:
        warnings.append(
            f"kernel excess is negative ({excess:.3f} ms): the GPU was busy for less "
            f"than the {fl:.3f} ms floor, so the floor is wrong — check --model, "
            f"--ctx, --gpu/--bandwidth and --dtype ({spec.name}, ctx {floor['ctx']}, {dtype}, "
            f"{peak:g} GB/s)")
    return d


# -- what-ifs (tracekit/whatif.py) ------------------------------------------------------------
def _graph_gap(graph_trace, gspec, tr: Trace, spec, warnings: list[str]) -> wi.Calibration:
    calib = wi.calibrate(graph_trace, gspec)
    if calib.program is not None:
        cap = tr.capture or {}
        warnings.extend(wi.same_run_warnings(
            calib.program, model_name=cap.get("model_name") or (spec.name if spec else None),
            ctx=cap.get("ctx") if type(cap.get("ctx")) is int else None,
            gpu_name=tr.meta.get("gpu_name")))
    return calib


def _whatif(summary, decode, decomp, floor, peak, calib: wi.Calibration) -> dict:
    return wi.section(summary, decode, decomp, floor, peak, calib)


# -- host attribution and the unprofiled step -------------------------------------------------
def _host_section(h, rows: list[StepRow], summary: Summary,
                  decomp: Decomposition) -> Host | None:
    """The JSON ``host`` section: launch issue vs stalls (medians over the timed decode steps).
    ``launch_issue_ms + stall_ms`` is the decomposition's ``host_bound`` term exactly."""
    if h is None:
        return None
    timed = [r["step"] for r in rows if r["kind"] == "decode" and r["latency_ms"] is not None]
    ids = timed or [r["step"] for r in rows if r["kind"] == "decode"]
    cols = ("stall_ns", "stall_host_ns", "issue_median_ns", "threshold_ns", "events", "cpu_ops")
    per = h.step_columns(ids, [*cols, "launch_span_ns", "launches"])
    med = {c: median(per[c]) for c in cols}
    by_class = decomp["launch_overhead_by_class_ms"]
    host_bound = by_class["host_bound"] if by_class is not None else None
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
        # the stall idle's spread over the timed decode steps (p25, p75): the what-if's interval
        "stall_ms_range": _quartiles_ms(per["stall_ns"]),
        "stall_host_ms": med["stall_host_ns"] / 1e6 if med["stall_host_ns"] is not None else None,
        "us_per_launch": median(per_launch),
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


def _quartiles_ms(ns) -> list[float] | None:
    xs = sorted(float(x) for x in ns if x is not None)
    if not xs:
        return None
    if len(xs) < 4:
        return [xs[0] / 1e6, xs[-1] / 1e6]
    q = statistics.quantiles(xs, n=4)
    return [q[0] / 1e6, q[2] / 1e6]


# -- sections ---------------------------------------------------------------------------------
def _categories(steps: Steps, spec: ModelSpec | None, dtype: str,
                floor: FloorSection) -> list[CategoryRow]:
    """Kernel categories, with the model's bytes where the model says which category moves them:
    GEMM/GEMV read every linear weight (q/k/v/o, MLP, the vocab × hidden output projection) and
    attention reads the KV cache. ``achieved_gbps`` = those bytes ÷ the category's time per step;
    null for categories whose bytes neither the model nor the trace pins down."""
    rows = kernel_category_rows(steps)
    model_bytes: dict[str, float] = {}
    kv_read = floor["kv_read_bytes"]
    if spec is not None and kv_read is not None:
        model_bytes = {
            "gemm": spec.gemm_bytes(dtype),
            "attention": kv_read,
        }
        if is_quantized(dtype) and any(r["category"] == "quant_gemm" for r in rows):
            # low-bit kernels read the quantized linears; the bf16 lm_head stays on a plain GEMM
            head = spec.vocab * spec.hidden * dtype_bytes(UNQUANTIZED_DTYPE)
            model_bytes.update(gemm=head, quant_gemm=spec.gemm_bytes(dtype) - head)
    out: list[CategoryRow] = []
    for r in rows:
        mb = model_bytes.get(r["category"])
        out.append({**r, "model_bytes_per_step": mb, "achieved_gbps": (
            mb / (r["ms_per_step"] * 1e-3) / 1e9 if mb and r["ms_per_step"] else None)})
    return out


#: the capture metadata keys the explanation carries (``source.capture``) for the reports
CAPTURE_KEYS = ("mode", "ctx", "ctx_first_step", "timing", "profiled", "profiler_overhead_ratio",
                "command", "created", "device", "dtype", "attention", "timing_after",
                "timing_sessions", "gpu_clocks_before", "gpu_clocks_after", "host_cpus")


def _source(tr: Trace, steps: Steps, rows: list[StepRow]) -> Source:
    cap = tr.capture
    return {
        "file": tr.meta.get("path"), "format": tr.meta["format"],  # every reader names it
        "gpu": tr.meta.get("gpu_name"), "devices": list((tr.meta.get("devices") or {}).values()),
        "versions": {**(tr.meta.get("versions") or {}), **((cap or {}).get("versions") or {})},
        "detection_method": steps.method, "detection_detail": steps.detail,
        "step_contents": steps.contents,
        "steps_found": len(rows), "decode_steps": sum(r["kind"] == "decode" for r in rows),
        "flagged_steps": {k: [r["step"] for r in rows if r["kind"] == k]
                          for k in ("prefill", "mixed", "partial", "empty", "idle")
                          if any(r["kind"] == k for r in rows)},
        "events": tr.meta.get("events"), "skipped_categories": tr.meta.get("skipped_categories"),
        # the capture block's keys the reports use (a capture writes them; read, not checked)
        "capture": cast(Capture, {k: cap.get(k) for k in CAPTURE_KEYS if k in cap}) if cap else None,
    }


def _context(tr: Trace, decode: list[StepRow], floor: FloorSection, model_src,
             ctx_flag) -> Context:
    """Which context lengths the numbers are at, named once for every renderer.

    ``prompt_tokens``: the prompt prefilled before decoding (a tracekit capture's ``--ctx``);
    ``first_step``/``last_step``: tokens in the KV cache at the first and last profiled decode
    step (the capture's warm-up and timed steps come first, so the first profiled step is past the
    prompt); ``floor_ctx``: the context the summary's floor is computed at (the median step's).
    """
    cap = tr.capture or {}
    ctxs = [c for r in decode if (c := r["ctx"]) is not None]
    return {
        "prompt_tokens": cap.get("ctx") if isinstance(cap.get("ctx"), int) else None,
        "first_step": min(ctxs) if ctxs else None,
        "last_step": max(ctxs) if ctxs else None,
        "floor_ctx": floor["ctx"],
        "source": "flag" if ctx_flag is not None else ("capture" if cap.get(
            "ctx_first_step", cap.get("ctx")) is not None else None),
    }


def _model_section(spec, ctx0, dtype, src) -> Model:
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
        t0 = tl.get("t0_ns", 0)
        mine = h.gaps_t.take(h.gaps_t["step"] == step)
        held = dict(zip(mine["start_ns"].tolist(),
                        zip(mine["op"].tolist(), mine["stall"].tolist())))
        for g in tl["gaps"]:
            op, stall = held.get(t0 + g["start_ns"], (None, False))
            g["host_op"], g["stall"] = op, bool(stall)
    return tl


# -- `tracekit.explain(...)` ------------------------------------------------------------------
class _CallableModule(types.ModuleType):
    """Importing a submodule sets it as an attribute of its package, so ``tracekit.explain`` is
    this module whatever ``tracekit/__init__.py`` says; making the module callable lets
    ``tracekit.explain(path)`` be the function too without importing the analysis stack at
    ``import tracekit`` (assigning a module's ``__class__`` to a ``ModuleType`` subclass is the
    data model's documented way to customise a module).

    The plain alternative, ``from tracekit.explain import explain`` in ``tracekit/__init__.py``,
    was tried and dropped: it makes ``import tracekit`` — and so every CLI start, ``--help`` and
    shell completion included — import numpy and msgspec (``import tracekit.cli``: ≈35 → ≈200 ms
    on the 2-core dev machine; tests/test_api.py::test_import_tracekit_loads_no_analysis_stack).
    A function defined lazily in ``__init__.py`` is replaced by this module as soon as anything
    imports ``tracekit.explain`` first (``from tracekit.explain import Explanation``,
    tracekit/compare.py, ...)."""

    def __call__(self, trace: str | Path | Trace, **options) -> Explanation:
        return explain(trace, **options)


__signature__ = inspect.signature(explain)
sys.modules[__name__].__class__ = _CallableModule
