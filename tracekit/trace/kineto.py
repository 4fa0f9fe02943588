"""Read torch.profiler (Kineto) Chrome-trace JSON, plain or gzipped, into a :class:`Trace`.

What a Kineto trace holds, and what this reader does with it:

* ``traceEvents`` — complete events (``ph: "X"``) with ``ts``/``dur`` in microseconds. Since
  PyTorch ~2.4 ``ts`` is relative to ``baseTimeNanoseconds`` and carries a nanosecond fraction
  (``4929294704518.973``); older traces have absolute integer µs. ``ts`` is decoded as a decimal,
  never a float, because a float cannot hold a 13-digit µs value to the nanosecond.
* categories — ``kernel``/``gpu_memcpy``/``gpu_memset`` are GPU ops (old traces: ``Kernel``,
  ``Memcpy``, ``Memset``); ``cuda_runtime``/``cuda_driver`` hold launch and sync calls;
  ``user_annotation``/``gpu_user_annotation`` are ``record_function`` ranges; ``cuda_sync`` marks
  host waits. GPU ops are recognised by category only: HTA's ``stream`` heuristic counts an Inductor
  launcher CPU op as GPU time (see ``peer_traces/hta/triton_example.json.gz``).
* ``args.correlation`` links a launch to its GPU ops; a ``cudaGraphLaunch`` shares one id with
  every kernel it replays.

Events of unknown categories are skipped and counted in ``meta["skipped_categories"]``.

    >>> from tracekit.trace import load
    >>> trace = load("sample_traces/plain_qwen2.5-7b_ctx2048_eager_annotated.json.gz")  # doctest: +SKIP
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import msgspec
import polars as pl

from tracekit.errors import TraceFormatError
from tracekit.trace.model import (
    ANNOTATIONS_SCHEMA,
    GPU_OPS_SCHEMA,
    LAUNCHES_SCHEMA,
    SYNCS_SCHEMA,
    Trace,
)

_GPU_CATS = {"kernel": "kernel", "gpu_memcpy": "memcpy", "memcpy": "memcpy",
             "gpu_memset": "memset", "memset": "memset"}
_API_CATS = {"cuda_runtime": "runtime", "runtime": "runtime",
             "cuda_driver": "driver", "driver": "driver"}
_ANNOTATION_CATS = {"user_annotation": False, "gpu_user_annotation": True}
#: categories that carry nothing tracekit needs; skipped without a warning
_IGNORED_CATS = {
    "cpu_op", "operator", "python_function", "ac2g", "fwdbwd", "overhead", "trace",
    "cpu_instant_event", "python_gc", "gpu_instant_event", "mtia_runtime", "privateuse1_runtime",
    "cuda_profiler_range", "memory", "kernel_activity", "",
}

_KERNEL_LAUNCH = re.compile(r"^(cuda|cu)Launch(Cooperative)?Kernel")
_GRAPH_LAUNCH = re.compile(r"^(cuda|cu)GraphLaunch")
_MEMCPY = re.compile(r"^(cuda|cu)Memcpy")
_MEMSET = re.compile(r"^(cuda|cu)Memset")
_SYNC = re.compile(
    r"^(cudaDeviceSynchronize|cudaStreamSynchronize|cudaEventSynchronize|cuCtxSynchronize"
    r"|cuStreamSynchronize|cuEventSynchronize|cudaMemcpy(?!.*Async)|cuMemcpy(?!.*Async)"
    r"|cudaMemcpy2D(?!.*Async))"
)
_PROFILER_STEP = re.compile(r"^ProfilerStep#\d+$")
_VERSION_SUFFIX = re.compile(r"_v\d+$")


def launch_kind(name: str) -> str | None:
    """``kernel``/``graph``/``memcpy``/``memset`` for an API call that puts work on a GPU, else None."""
    name = _VERSION_SUFFIX.sub("", name)
    if _KERNEL_LAUNCH.match(name):
        return "kernel"
    if _GRAPH_LAUNCH.match(name):
        return "graph"
    if _MEMCPY.match(name):
        return "memcpy"
    if _MEMSET.match(name):
        return "memset"
    return None


def is_sync_call(name: str) -> bool:
    return bool(_SYNC.match(_VERSION_SUFFIX.sub("", name)))


class _Event(msgspec.Struct):
    ph: str = ""
    cat: str | None = None
    name: str = ""
    pid: int | str | None = None
    tid: int | str | None = None
    ts: Decimal | None = None
    dur: float | None = None
    # decoded lazily: most events (cpu ops, flows) never need their args
    args: msgspec.Raw = msgspec.Raw(b"null")


class _Args(msgspec.Struct):
    correlation: int | None = None
    stream: int | str | None = None
    device: int | str | None = None
    bytes: int | float | None = None
    grid: Any = None
    block: Any = None


class _File(msgspec.Struct):
    traceEvents: list[_Event] | None = None  # noqa: N815 - the format's own key
    deviceProperties: list[dict] | None = None  # noqa: N815
    baseTimeNanoseconds: int | None = None  # noqa: N815
    displayTimeUnit: str | None = None  # noqa: N815
    schemaVersion: int | None = None  # noqa: N815
    cuda_runtime_version: int | None = None
    cuda_driver_version: int | None = None
    cupti_version: int | None = None
    tracekit: dict | None = None


_FILE_DECODER = msgspec.json.Decoder(_File)
_LIST_DECODER = msgspec.json.Decoder(list[_Event])
_ARGS_DECODER = msgspec.json.Decoder(list[_Args | None])


def _int_or_none(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.lstrip("-").isdigit():
        return int(v)
    return None


def _dims(v: Any) -> str | None:
    if isinstance(v, list) and v and all(isinstance(x, int) for x in v):
        return "x".join(str(x) for x in v)
    return None


def _decode(data: bytes, path: str) -> _File:
    try:
        return _FILE_DECODER.decode(data)
    except msgspec.ValidationError as exc:
        # A bare Chrome JSON array of events is a valid trace too.
        if data.lstrip()[:1] == b"[":
            try:
                return _File(traceEvents=_LIST_DECODER.decode(data))
            except msgspec.DecodeError as exc2:
                raise TraceFormatError(f"{path} is not a profiler trace: {exc2}") from None
        raise TraceFormatError(
            f"{path} is JSON but not a torch.profiler trace ({exc}); expected an object with a "
            "'traceEvents' list, as written by torch.profiler's export_chrome_trace"
        ) from None
    except msgspec.DecodeError as exc:
        raise TraceFormatError(
            f"{path} is not valid JSON ({exc}); expected a torch.profiler trace "
            "(.json or .json.gz) or an Nsight Systems SQLite export (.sqlite)"
        ) from None


def parse_kineto(data: bytes, path: str = "<trace>") -> Trace:
    """Parse the bytes of a Kineto JSON trace (already decompressed)."""
    f = _decode(data, path)
    if f.traceEvents is None:
        raise TraceFormatError(
            f"{path} is JSON but not a torch.profiler trace: it has no 'traceEvents' list"
        )
    if not f.traceEvents:
        raise TraceFormatError(f"{path} has no events: the profiler recorded nothing")

    gpu, api, ann, skipped = [], [], [], {}
    no_dur = 0
    for e in f.traceEvents:
        if e.ph != "X" or e.ts is None:
            if e.ph in ("X", "B", "E", "i", "I") and e.cat:
                if e.ts is None:
                    no_dur += 1
            continue
        cat = (e.cat or "").lower()
        if cat in _GPU_CATS:
            gpu.append(e)
        elif cat in _API_CATS:
            api.append(e)
        elif cat in _ANNOTATION_CATS:
            ann.append(e)
        elif cat == "cuda_sync":
            api.append(e)
        elif cat == "cpu_op" and _PROFILER_STEP.match(e.name):
            ann.append(e)  # before ~2023 ProfilerStep#N was a cpu_op
        elif cat not in _IGNORED_CATS:
            skipped[e.cat] = skipped.get(e.cat, 0) + 1
        if e.dur is None and cat in _GPU_CATS:
            no_dur += 1

    trace = Trace(
        gpu_ops=_gpu_ops(gpu),
        launches=_launches(api),
        annotations=_annotations(ann),
        syncs=_syncs(api),
        meta=_meta(f, path, skipped),
    )
    if skipped:
        trace.warnings.append(
            "skipped events of unknown categories: "
            + ", ".join(f"{k} ({v})" for k, v in sorted(skipped.items()))
        )
    if no_dur:
        trace.warnings.append(f"{no_dur} events had no duration and were read as instants")
    return trace


def _ns(ts: Decimal) -> int:
    return int(ts.scaleb(3).to_integral_value())


def _dur_ns(dur: float | None) -> int:
    return 0 if dur is None or dur < 0 else round(dur * 1000)


def _gpu_ops(events: list[_Event]) -> pl.DataFrame:
    args = _ARGS_DECODER.decode(b"[" + b",".join(e.args for e in events) + b"]") if events else []
    cols: dict[str, list] = {k: [] for k in GPU_OPS_SCHEMA}
    for e, a in zip(events, args):
        a = a or _Args()
        start = _ns(e.ts)
        cols["kind"].append(_GPU_CATS[e.cat.lower()])
        cols["name"].append(e.name)
        cols["start_ns"].append(start)
        cols["end_ns"].append(start + _dur_ns(e.dur))
        cols["device"].append(_int_or_none(a.device) if a.device is not None else _int_or_none(e.pid))
        cols["stream"].append(_int_or_none(a.stream) if a.stream is not None else _int_or_none(e.tid))
        cols["correlation"].append(a.correlation)
        cols["bytes"].append(int(a.bytes) if a.bytes is not None else None)
        cols["grid"].append(_dims(a.grid))
        cols["block"].append(_dims(a.block))
    return pl.DataFrame(cols, schema=GPU_OPS_SCHEMA)


def _launches(events: list[_Event]) -> pl.DataFrame:
    keep, kinds = [], []
    for e in events:
        k = launch_kind(e.name) if e.cat.lower() != "cuda_sync" else None
        if k is not None:
            keep.append(e)
            kinds.append(k)
    args = _ARGS_DECODER.decode(b"[" + b",".join(e.args for e in keep) + b"]") if keep else []
    cols: dict[str, list] = {k: [] for k in LAUNCHES_SCHEMA}
    for e, k, a in zip(keep, kinds, args):
        start = _ns(e.ts)
        cols["kind"].append(k)
        cols["api"].append(_API_CATS[e.cat.lower()])
        cols["name"].append(e.name)
        cols["start_ns"].append(start)
        cols["end_ns"].append(start + _dur_ns(e.dur))
        cols["tid"].append(_int_or_none(e.tid))
        cols["correlation"].append(a.correlation if a else None)
    return pl.DataFrame(cols, schema=LAUNCHES_SCHEMA)


def _syncs(events: list[_Event]) -> pl.DataFrame:
    cols: dict[str, list] = {k: [] for k in SYNCS_SCHEMA}
    for e in events:
        if e.cat.lower() == "cuda_sync" or is_sync_call(e.name):
            start = _ns(e.ts)
            cols["name"].append(e.name)
            cols["start_ns"].append(start)
            cols["end_ns"].append(start + _dur_ns(e.dur))
            cols["tid"].append(_int_or_none(e.tid))
    return pl.DataFrame(cols, schema=SYNCS_SCHEMA)


def _annotations(events: list[_Event]) -> pl.DataFrame:
    cols: dict[str, list] = {k: [] for k in ANNOTATIONS_SCHEMA}
    for e in events:
        start = _ns(e.ts)
        cols["name"].append(e.name)
        cols["start_ns"].append(start)
        cols["end_ns"].append(start + _dur_ns(e.dur))
        cols["on_gpu"].append(_ANNOTATION_CATS.get(e.cat.lower(), False))
        cols["tid"].append(_int_or_none(e.tid))
    return pl.DataFrame(cols, schema=ANNOTATIONS_SCHEMA)


def _meta(f: _File, path: str, skipped: dict) -> dict:
    devices = {}
    for d in f.deviceProperties or []:
        if isinstance(d, dict) and isinstance(d.get("name"), str):
            devices[_int_or_none(d.get("id")) or 0] = {
                "name": d["name"],
                "total_memory_bytes": _int_or_none(d.get("totalGlobalMem")),
                "sm_count": _int_or_none(d.get("numSms")),
                "cc": f"{d.get('computeMajor')}.{d.get('computeMinor')}"
                if d.get("computeMajor") is not None else None,
            }
    versions = {
        k: v for k, v in {
            "cuda_runtime": f.cuda_runtime_version,
            "cuda_driver": f.cuda_driver_version,
            "cupti": f.cupti_version,
            "kineto_schema": f.schemaVersion,
        }.items() if v is not None
    }
    return {
        "format": "kineto",
        "path": path,
        "devices": devices,
        "versions": versions,
        "base_time_ns": f.baseTimeNanoseconds,
        "tracekit": f.tracekit if isinstance(f.tracekit, dict) else None,
        "skipped_categories": skipped,
        "events": len(f.traceEvents or []),
    }
