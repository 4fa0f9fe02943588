"""One capture, start to finish: the order of phases is the method.

1. check the options, the model and the device (no torch import for a bad command line), and
   refuse a model + context whose weights + KV cache exceed the device's memory *before
   allocating*;
2. build the model (random weights unless ``--weights``) and prefill ``ctx`` random tokens;
3. mode-specific preparation: capture the CUDA graph or compile (rewound: no context is used up);
4. ``warmup`` steps, then ``steps`` timed steps without the profiler — the ground truth;
5. (eager) the profiler calibration's unprofiled steps — the decode step with a stall-free
   attention kernel, timed before any profiler has run in the process (``calibrate.py``);
   then the copy-bandwidth probe;
6. ``profile_steps`` steps under the profiler, the context at its first step being exactly
   ``ctx + warmup + steps`` (+ the calibration's 12 steps in eager; ``ctx_first_step`` in the
   metadata);
7. ``steps`` more unprofiled steps (``timing_after``): host speed drifts (clocks, other tenants,
   allocator state), so the ground truth is taken on both sides of the profiled window and a
   reader can see whether they agree; the trace is exported here, before (eager) the
   calibration's profiled steps, which give this host's profiler cost per recorded event
   (``profiler_cost``): a second profiler session in the process, run before the export, leaves
   every kernel of the first at timestamp 0 (seen on an H100, torch 2.11);
8. the trace, written atomically with the metadata spliced in.

The attention implementation (``--attention``) is forced around every model call, and the
metadata records which attention CPU ops and kernels really ran (``attention``), read from the
profiled window. GPU clocks are read (``nvidia-smi``) before the timed steps and after the last.
``--sessions N`` repeats all this in N fresh processes (:mod:`tracekit.capture.sessions`).

    tracekit capture --model qwen2.5-7b --ctx 2048 --mode eager -o qwen_eager.json.gz
"""

from __future__ import annotations

import platform
import sys
from dataclasses import replace
from datetime import datetime, timezone

import tracekit
from tracekit.capture import calibrate, cpus
from tracekit.capture.model import (
    build_model,
    check_cuda,
    check_memory,
    resolve_dtype,
    resolve_spec,
)
from tracekit.capture.modes import attention_backend, make_stepper, prompt, static_cache_len
from tracekit.capture.nsys import capture_under_nsys
from tracekit.capture.options import CaptureOptions
from tracekit.capture.profile import Nvtx, init_for_graphs, profile_steps
from tracekit.capture.progress import Progress
from tracekit.capture.result import CaptureResult
from tracekit.capture.sessions import run_sessions
from tracekit.capture.smi import query_gpu
from tracekit.capture.timing import copy_bandwidth_gbps, summarize, sync, time_steps, warm_up
from tracekit.capture.write import SCHEMA, export_raw, from_raw, write_trace
from tracekit.child import sigterm_as_interrupt
from tracekit.errors import CaptureError
from tracekit.report.text import host_cpus_text
from tracekit.specs.models import ModelSpec
from tracekit.trace.capture_meta import read_capture_meta


def run_capture(options: CaptureOptions, *, progress: Progress | None = None) -> CaptureResult:
    """Run one capture (see the module docstring) and return what it wrote."""
    opts = options.validated()
    progress = progress or Progress()
    spec = resolve_spec(model=opts.model, weights=opts.weights)
    if opts.profiler == "nsys" and not opts.under_nsys:
        return capture_under_nsys(opts, progress=progress)
    if opts.tp > 1:
        from tracekit.capture import tp

        if not tp.in_torchrun():  # run this same command as tp ranks; each writes its trace
            _require_torch()
            paths = tp.launch(opts)
            meta = read_capture_meta(paths[0]) or {}
            return CaptureResult(path=paths[0], meta=meta, bytes=paths[0].stat().st_size,
                                 files={f"rank{r}": p for r, p in enumerate(paths)})
    # sessions in child processes; also one session with --profile-session none (no trace: the
    # session runner writes the metadata alone)
    if opts.session_index is None and (opts.sessions > 1 or opts.profile_session is None):
        return run_sessions(opts, progress=progress)
    # before torch is imported: every thread the process starts inherits the pin
    host_cpus = cpus.pin(opts.cpu_affinity, device=opts.device)
    _require_torch()
    if opts.device == "cuda":
        check_cuda()
    with sigterm_as_interrupt():
        try:
            return _capture(opts, spec, progress, host_cpus)
        finally:
            if opts.tp > 1:  # one rank of a torchrun job: tp.setup_rank joined the group
                from tracekit.capture import tp

                tp.teardown_rank()


def _require_torch() -> None:
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise CaptureError(
            f"capture needs torch and transformers ({exc.name} is missing): "
            "pip install 'tracekit[capture]'"
        ) from None


def kineto_kinds(opts: CaptureOptions) -> list[str]:
    """Profiler activities: CPU only on the CPU, and under Nsight unless asked (see nsys.py)."""
    if opts.device == "cpu" or (opts.under_nsys and opts.nsys_kineto == "cpu"):
        return ["cpu"]
    return ["cpu", "cuda"]


def _capture(opts: CaptureOptions, spec: ModelSpec, progress: Progress,
             host_cpus: dict | None = None) -> CaptureResult:
    import torch

    device, mode = opts.device, opts.mode
    dtype = resolve_dtype(opts.dtype, device)
    # warm-up, timed, profiled, timed again after the profiled window
    decode_steps = opts.warmup + opts.steps + (opts.profile_steps + opts.steps if opts.profile else 0)
    if calibrate.wanted(opts):
        decode_steps += 2 * (calibrate.STEPS + 1)  # the profiler calibration's steps
    kv_len = (
        opts.ctx + decode_steps
        if mode == "eager"
        else static_cache_len(ctx=opts.ctx, decode_steps=decode_steps, mode=mode)
    )
    memory = check_memory(spec, dtype=dtype, ctx=opts.ctx, kv_len=kv_len, device=device)
    if opts.quant != "none":
        from tracekit.capture.quant import check_scheme

        check_scheme(opts.quant, device=device, dtype=dtype)
    kinds = kineto_kinds(opts)
    torch.manual_seed(opts.seed)
    try:
        with torch.inference_mode():
            return _phases(
                opts, spec, progress, dtype=dtype, kv_len=kv_len, kinds=kinds, memory=memory,
                host_cpus=host_cpus,
            )
    except torch.cuda.OutOfMemoryError:
        raise CaptureError(
            f"out of GPU memory: {spec.name} at ctx {opts.ctx} needs about "
            f"{memory['total'] / 1e9:.1f} GB for weights + KV cache of "
            f"{memory['device_total'] / 1e9:.1f} GB; free the GPU or use a smaller --ctx"
        ) from None
    except RuntimeError as exc:
        if "No available kernel" in str(exc) or "No viable backend" in str(exc):
            raise CaptureError(
                f"--attention {opts.attention}: PyTorch has no such SDPA kernel for this model, "
                f"dtype and device ({str(exc).splitlines()[0][:160]}); try --attention sdpa"
            ) from None
        if opts.quant != "none":  # the quantized linear failed in this mode (graph capture, ...)
            why = (str(exc).strip().splitlines() or ["RuntimeError"])[0][:200]
            raise CaptureError(
                f"--quant {opts.quant} does not run in --mode {mode} here ({why})"
            ) from None
        raise


def _phases(
    opts: CaptureOptions,
    spec: ModelSpec,
    progress: Progress,
    *,
    dtype: str,
    kv_len: int,
    kinds: list[str],
    memory: dict,
    host_cpus: dict | None = None,
) -> CaptureResult:
    device, mode = opts.device, opts.mode
    source = f"weights from {opts.weights}" if opts.weights else "random weights"
    tp_info = None
    if opts.tp > 1:  # one rank of a torchrun job: its shard of the model, its own trace
        from tracekit.capture import tp

        rank, world = tp.setup_rank(device)
        final = opts.output_path
        opts = replace(opts, output=tp.rank_path(final, rank))
        with progress.phase(f"building rank {rank} of {world} of {spec.name} ({dtype}, {source})"):
            model = tp.build_tp_model(spec, output=final, device=device, dtype=dtype,
                                      weights=opts.weights, seed=opts.seed,
                                      attention=opts.attention)
        tp_info = {"size": world, "rank": rank, "plan": "auto",
                   "shard_bytes": tp.shard_bytes(model)}
    else:
        with progress.phase(
            f"building {spec.name} ({_count(spec.param_count())} parameters, "
            f"{dtype}, {source}) on {device}"
        ):
            model = build_model(
                spec, device=device, dtype=dtype, weights=opts.weights, seed=opts.seed,
                attention=opts.attention,
            )
    quant = None
    if opts.quant != "none":
        from tracekit.capture.quant import quantize_model

        with progress.phase(f"quantizing the linear weights ({opts.quant}, torchao)"):
            quant = quantize_model(model, opts.quant, group_size=opts.group_size, spec=spec)
    stepper = make_stepper(mode, model, device=device, kv_len=kv_len)
    # the SDPA backend is forced around every model call: prefill, capture or compile, steps
    with attention_backend(opts.attention):
        with progress.phase(f"prefilling {opts.ctx} tokens"):
            stepper.prefill(prompt(model.config.vocab_size, opts.ctx, device=device, seed=opts.seed))
            sync(device)
        early_kineto = "cuda" in kinds and mode != "eager"
        if early_kineto:
            init_for_graphs(kinds)  # before capture/compile, or replayed kernels go unrecorded
        prepare_steps = 0
        if mode != "eager":
            what = (
                "capturing the CUDA graph" if mode == "cuda-graphs" else "compiling (reduce-overhead)"
            )
            with progress.phase(what):
                prepare_steps = stepper.prepare()
        with progress.phase(f"warming up ({_plural(opts.warmup, 'step')})", live=False):
            warm_up(stepper.step, opts.warmup, device=device)
        clocks_before = gpu_clocks() if device == "cuda" else None
        cpus.note_cpu(host_cpus, "before_timing")
        with progress.phase(f"timing {_plural(opts.steps, 'step')} without the profiler", live=False):
            ms = time_steps(stepper.step, opts.steps, device=device)
        cpus.note_cpu(host_cpus, "after_timing")
        calib_what, calib_backend, calib_ms = None, None, []
        if calibrate.wanted(opts):  # before any profiler has run in this process
            calib_what, calib_backend = calibrate.workload(opts.attention, device)
            with progress.phase("timing the profiler calibration's steps", live=False):
                calib_ms = calibrate.time_unprofiled(stepper.step, device=device,
                                                     backend=calib_backend)
        copy_gbps = None
        ctx_first_step = stepper.position
        nvtx = Nvtx(device)
        prof = None
        wall_ms = ms_after = None
        if opts.profile:
            if device == "cuda":
                with progress.phase("probing copy bandwidth"):
                    copy_gbps = copy_bandwidth_gbps(device)
            ctx_first_step = stepper.position
            with progress.phase(f"profiling {_plural(opts.profile_steps, 'step')}", live=False):
                prof, wall_ms = profile_steps(
                    stepper.step, opts.profile_steps, device=device, kinds=kinds, nvtx=nvtx
                )
            with progress.phase(
                f"timing {_plural(opts.steps, 'step')} after the profiled window", live=False
            ):
                ms_after = time_steps(stepper.step, opts.steps, device=device)
        # what the metadata reads from the profiler, and the export, before the calibration runs
        # a profiler of its own (the module docstring, step 7)
        attention, quant = attention_info(opts.attention, prof), _with_kernels(quant, prof)
        raw = None
        if prof is not None:
            with progress.phase("exporting the trace"):
                raw = export_raw(prof.export_chrome_trace, opts.output_path)
        try:
            profiler_cost = None
            if calib_ms and calib_backend is not None:
                with progress.phase("measuring the profiler's cost per event", live=False):
                    profiler_cost = calibrate.measure(stepper.step, calib_ms, device=device,
                                                      kinds=kinds, backend=calib_backend,
                                                      what=calib_what or "")
            clocks_after = gpu_clocks() if device == "cuda" else None
            timing = summarize(ms, warmup=opts.warmup)
            timing_after = summarize(ms_after, warmup=0) if ms_after else None
            meta = {
                "schema": SCHEMA,
                "tracekit_version": tracekit.__version__,
                "model": spec.to_dict(),
                "model_name": spec.name,
                "ctx": opts.ctx,
                "ctx_first_step": ctx_first_step,
                "mode": mode,
                "dtype": dtype,
                "attention": attention,
                # the quantized scheme, its stored bytes and the GEMM-side ops/kernels that ran
                "quant": quant,
                "device": device,
                "gpu": gpu_info() if device == "cuda" else None,
                "versions": versions(),
                "timing": timing,
                "timing_after": timing_after,
                "gpu_clocks_before": clocks_before,
                "gpu_clocks_after": clocks_after,
                # the CPUs this process could run on and where its launching thread ran (cpus.py)
                "host_cpus": host_cpus,
                "session": opts.session_index,
                "profiled": {"steps": opts.profile_steps, "wall_ms_per_step": round(wall_ms, 6)}
                if wall_ms is not None
                else None,
                "profiler_overhead_ratio": round(wall_ms / timing["median_ms"], 4)
                if wall_ms is not None and timing["median_ms"]
                else None,
                "copy_bandwidth_gbps": copy_gbps,
                # this host's profiler cost per recorded host event (eager only; calibrate.py)
                "profiler_cost": profiler_cost,
                "command": list(opts.command or sys.argv),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                # beyond the contract: what a reader needs to trust or reproduce the numbers
                "weights": str(opts.weights) if opts.weights else "random",
                "seed": opts.seed,
                "kv_cache": {
                    "kind": "dynamic" if mode == "eager" else "static",
                    "max_len": None if mode == "eager" else kv_len,
                },
                "prepare_steps": prepare_steps,
                "next_token": "greedy argmax kept on the device (no host sync per step)",
                "profiler": "nsys" if opts.under_nsys else "torch",
                "profiler_activities": kinds,
                "kineto_initialised_before_timing": early_kineto,
                "nvtx": nvtx.backend,
                "memory_bytes": {
                    "weights": memory["weights"],
                    "kv_cache": memory["kv"],
                    "device_total": memory["device_total"],
                },
                "compile": stepper.diagnostics() if mode == "compile" else None,
                "tp": tp_info,
            }
            if raw is None:
                return CaptureResult(path=None, meta=meta, bytes=0)
            with progress.phase(f"writing {opts.output}"):
                size = write_trace(from_raw(raw), meta, opts.output_path)
            return CaptureResult(path=opts.output_path, meta=meta, bytes=size)
        finally:
            if raw is not None:
                raw.unlink(missing_ok=True)


def _with_kernels(quant: dict | None, prof) -> dict | None:
    if quant is None:
        return None
    from tracekit.capture.quant import quant_kernels

    return {**quant, "ran": quant_kernels(prof)}


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n:,}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def gpu_info() -> dict:
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    return {
        "name": props.name,
        "total_memory_bytes": int(props.total_memory),
        "sm_count": int(props.multi_processor_count),
        "cc": f"{props.major}.{props.minor}",
    }


#: what ``nvidia-smi`` is asked before and after the timed steps (clocks drift with temperature
#: and power; a throttled run shows here)
CLOCK_QUERY = {
    "sm_mhz": "clocks.sm",
    "mem_mhz": "clocks.mem",
    "max_sm_mhz": "clocks.max.sm",
    "temperature_c": "temperature.gpu",
    "power_w": "power.draw",
    "throttle_reasons": "clocks_throttle_reasons.active",
}


def gpu_clocks() -> dict | None:
    """The current GPU's clocks, temperature and power from ``nvidia-smi``; None if unavailable."""
    values = query_gpu(list(CLOCK_QUERY.values()))
    if values is None:
        return None
    result: dict = {}
    for key, value in zip(CLOCK_QUERY, values):
        try:
            result[key] = float(value) if key != "throttle_reasons" else value
        except ValueError:
            result[key] = None
    return result


#: the SDPA CPU ops that say which backend ran (PyTorch 2.x names)
_ATTENTION_OPS = (
    "aten::_scaled_dot_product_cudnn_attention",
    "aten::_scaled_dot_product_flash_attention",
    "aten::_scaled_dot_product_efficient_attention",
    "aten::_scaled_dot_product_attention_math",
    "aten::_scaled_dot_product_flash_attention_for_cpu",
    "aten::_cudnn_attention_forward",
    "aten::_flash_attention_forward",
    "aten::_efficient_attention_forward",
)


def attention_info(requested: str, prof) -> dict:
    """What ``--attention`` asked for and what really ran in the profiled window: the SDPA CPU
    ops and the attention kernels (by tracekit's kernel categories), each with its count."""
    info: dict = {"requested": requested, "ops": None, "kernels": None}
    if prof is None:
        return info
    from tracekit.specs.kernels import KernelCategory, categorize

    ops: dict[str, int] = {}
    kernels: dict[str, int] = {}
    # every activity Kineto recorded, device kernels included: a CUDA-graph replay's kernels
    # belong to no CPU op, so they are found here and not under the ops' ``kernels``
    for evt in prof.profiler.kineto_results.events():
        name = evt.name()
        if evt.device_type().name == "CPU":
            if name in _ATTENTION_OPS or name.startswith("aten::_scaled_dot_product"):
                ops[name] = ops.get(name, 0) + 1
        elif categorize(name) is KernelCategory.ATTENTION:
            kernels[name] = kernels.get(name, 0) + 1
    info["ops"] = dict(sorted(ops.items()))
    info["kernels"] = dict(sorted(kernels.items()))
    return info


def versions() -> dict:
    import torch
    import transformers

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
        "triton": triton_version,
        "python": platform.python_version(),
    }


def _timing_text(t: dict) -> str:
    return (f"{t['median_ms']:.2f} ms/step (median of {t['steps']}; "
            f"p10 {t['p10_ms']:.2f}, p90 {t['p90_ms']:.2f})")


def summary_rows(result: CaptureResult) -> list[tuple[str, str]]:
    """Label/value pairs for the end-of-capture summary (the CLI renders them)."""
    m = result.meta
    t = m["timing"]
    rows = [("trace", f"{result.path} ({result.bytes / 1e6:.1f} MB)")]
    if m.get("sessions"):
        s = m["timing_sessions"]
        rows.append((
            "unprofiled",
            f"{s['mean_ms']:.2f} ms/step (mean of {s['sessions']} session medians, as tracekit "
            f"compare and sweep report it; median {s['median_ms']:.2f}, p10 {s['p10_ms']:.2f}, "
            f"p90 {s['p90_ms']:.2f})",
        ))
    else:
        rows.append(("unprofiled", f"{_timing_text(t)} = {t['tokens_per_s'] or 0:.1f} tokens/s"))
    if m.get("timing_after"):
        rows.append(("after profiling", _timing_text(m["timing_after"])))
    if m.get("profiled"):
        rows.append((
            "profiled",
            f"{m['profiled']['wall_ms_per_step']:.2f} ms/step "
            f"({m['profiled']['steps']} steps, context {m['ctx_first_step']}+)",
        ))
    rows.append((
        "profiler overhead",
        f"{m['profiler_overhead_ratio']:.2f}× (profiled ÷ unprofiled)"
        if m.get("profiler_overhead_ratio") is not None
        else "n/a",
    ))
    pc = m.get("profiler_cost") or {}
    if pc.get("ns_per_event") is not None and m.get("profiled"):
        lo, hi = pc["interval_ns"]
        rows.append(("profiler cost", f"{pc['ns_per_event'] / 1e3:.2f} µs per host event "
                     f"({lo / 1e3:.2f}–{hi / 1e3:.2f}; "
                     f"{pc.get('interval_basis') or 'this process'}; {pc['workload']})"))
    elif pc.get("error"):
        rows.append(("profiler cost", f"not measured ({pc['error']}): explain estimates it from "
                     "the trace"))
    attn = m.get("attention") or {}
    if attn.get("ops") is not None:
        ran = ", ".join(attn["ops"]) or "no SDPA op"
        rows.append(("attention", f"{attn['requested']}: {ran}"))
    q = m.get("quant")
    if q:
        stored = q["tensor_bytes"]["total"]
        rows.append(("quant", f"{q['scheme']}: {q['library']} {q['library_version']}, {q['layout']}; "
                              f"linear weights {stored / 1e6:.1f} MB stored "
                              f"(floor counts {q['floor_linear_bytes'] / 1e6:.1f} MB as "
                              f"{q['floor_dtype']})"))
    if (where := host_cpus_text(m.get("host_cpus"))) is not None:
        rows.append(("host CPUs", where))
    rows.append((
        "copy bandwidth",
        f"{m['copy_bandwidth_gbps']:.0f} GB/s (device-to-device, read + write)"
        if m.get("copy_bandwidth_gbps")
        else "n/a",
    ))
    if m.get("compile"):
        c = m["compile"]
        skips = c["cudagraph_counters"].get("cudagraph_skips", 0)
        rows.append(
            (
                "compile",
                f"{c['unique_graphs']} graph(s), {c['graph_breaks']} graph breaks, "
                f"{skips} cudagraph skips",
            )
        )
    rows += [(name, str(path)) for name, path in result.files.items()]
    return rows
