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

import functools
import re
from decimal import Decimal
from typing import Any

import msgspec
import numpy as np
import polars as pl

from tracekit.errors import TraceFormatError
from tracekit.trace.model import (
    ANNOTATIONS_SCHEMA,
    CPU_OPS_SCHEMA,
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
_CPU_OP_CATS = {"cpu_op", "operator"}
_IGNORED_CATS = {
    "python_function", "ac2g", "fwdbwd", "overhead", "trace",
    "cpu_instant_event", "python_gc", "gpu_instant_event", "mtia_runtime", "privateuse1_runtime",
    "cuda_profiler_range", "memory", "kernel_activity", "",
    "tracekit",  # the tracks `tracekit annotate` adds: tracekit's own findings, not trace data
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
_VERSION_SUFFIX = re.compile(r"_v\d+$")


@functools.lru_cache(maxsize=4096)
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


@functools.lru_cache(maxsize=4096)
def is_sync_call(name: str) -> bool:
    return bool(_SYNC.match(_VERSION_SUFFIX.sub("", name)))


class _Event(msgspec.Struct):
    ph: str = ""
    cat: str | None = None
    name: str = ""
    pid: int | str | None = None
    tid: int | str | None = None
    ts: float | None = None
    dur: float | None = None
    # decoded lazily: most events (cpu ops, flows) never need their args
    args: msgspec.Raw = msgspec.Raw(b"null")


class _PreciseEvent(_Event):
    # for timestamps too large for a float to hold their nanosecond fraction (see _needs_decimal)
    ts: Decimal | None = None


class _Args(msgspec.Struct):
    correlation: int | None = None
    stream: int | str | None = None
    device: int | str | None = None
    bytes: int | float | None = None


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


class _PreciseFile(_File):
    traceEvents: list[_PreciseEvent] | None = None  # noqa: N815


_DECODERS = {False: msgspec.json.Decoder(_File), True: msgspec.json.Decoder(_PreciseFile)}
_LIST_DECODERS = {False: msgspec.json.Decoder(list[_Event]),
                  True: msgspec.json.Decoder(list[_PreciseEvent])}
_ARGS_DECODER = msgspec.json.Decoder(list[_Args | None])

#: below 2**43 µs (~100 days of clock) a float64 µs value still pins the nanosecond: its error is
#: under half a ns, so rounding recovers the exact integer (see _start_ns)
_FLOAT_EXACT_US = float(2**43)


def _int_or_none(v: Any) -> int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.lstrip("-").isdigit():
        return int(v)
    return None


def _decode(data: bytes, path: str, precise: bool) -> _File:
    try:
        return _DECODERS[precise].decode(data)
    except msgspec.ValidationError as exc:
        # A bare Chrome JSON array of events is a valid trace too.
        if data.lstrip()[:1] == b"[":
            try:
                return _File(traceEvents=_LIST_DECODERS[precise].decode(data))
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


def _needs_decimal(events: list[_Event]) -> bool:
    """True when some timestamp is too large for a float to keep its nanoseconds (old absolute µs
    traces with fractions, e.g. ``1712195495505543.237``)."""
    return bool(events) and max(e.ts for e in events) >= _FLOAT_EXACT_US


def parse_kineto(data: bytes, path: str = "<trace>") -> Trace:
    """Parse the bytes of a Kineto JSON trace (already decompressed)."""
    f = _decode(data, path, precise=False)
    if f.traceEvents is None:
        raise TraceFormatError(
            f"{path} is JSON but not a torch.profiler trace: it has no 'traceEvents' list"
        )
    if not f.traceEvents:
        raise TraceFormatError(f"{path} has no events: the profiler recorded nothing")
    gpu, api, ann, cpu, skipped, no_ts = _split(f.traceEvents)
    precise = any(_needs_decimal(x) for x in (gpu, api, ann, cpu))
    if precise:
        f = _decode(data, path, precise=True)
        gpu, api, ann, cpu, skipped, no_ts = _split(f.traceEvents)

    trace = Trace(
        gpu_ops=_gpu_ops(gpu, precise),
        launches=_launches(api, precise),
        annotations=_annotations(ann, precise),
        syncs=_syncs(api, precise),
        cpu_ops=_cpu_ops(cpu, precise),
        meta=_meta(f, path, skipped),
    )
    if skipped:
        trace.warnings.append(
            "skipped events of unknown categories: "
            + ", ".join(f"{k} ({v})" for k, v in sorted(skipped.items()))
        )
    no_dur = sum(e.dur is None for e in gpu)
    if no_dur:
        trace.warnings.append(f"{no_dur} GPU ops had no duration and were read as instants")
    if no_ts:
        trace.warnings.append(f"{no_ts} complete events had no timestamp and were skipped")
    return trace


#: where each category's events go (checked before lower-casing: the common spellings are exact)
_ROUTE: dict[str, str] = {
    **{c: "gpu" for c in _GPU_CATS}, **{c: "api" for c in _API_CATS}, "cuda_sync": "api",
    **{c: "ann" for c in _ANNOTATION_CATS}, **{c: "cpu" for c in _CPU_OP_CATS},
    **{c: "skip" for c in _IGNORED_CATS},
}


def _route(cat: str | None) -> str:
    if cat is None:
        return "skip"
    r = _ROUTE.get(cat)
    if r is None:
        r = _ROUTE.get(cat.lower(), "unknown")
    return r


def _split(events: list[_Event]):
    """Sort events into GPU ops, API calls, annotations and CPU ops; count what is skipped."""
    gpu, api, ann, cpu, skipped = [], [], [], [], {}
    out = {"gpu": gpu, "api": api, "ann": ann, "cpu": cpu}
    route: dict[str | None, str] = {}
    no_ts = 0
    for e in events:
        if e.ph != "X":
            continue
        if e.ts is None:
            no_ts += 1
            continue
        r = route.get(e.cat)
        if r is None:
            r = route[e.cat] = _route(e.cat)
        if r == "skip":
            continue
        if r == "cpu" and e.name.startswith("ProfilerStep#"):
            ann.append(e)  # before ~2023 ProfilerStep#N was a cpu_op (PyTorch 1.8-1.9: Operator)
            continue
        if r == "unknown":
            skipped[e.cat] = skipped.get(e.cat, 0) + 1
            continue
        out[r].append(e)
    return gpu, api, ann, cpu, skipped, no_ts


def _start_ns(events: list[_Event], precise: bool) -> np.ndarray:
    if precise:
        return np.array([int(e.ts.scaleb(3).to_integral_value()) for e in events], dtype=np.int64)
    ts = np.array([e.ts for e in events], dtype=np.float64)
    # whole µs and fraction separately: the fraction's error is < 0.5 ns, so rint is exact
    whole = np.floor(ts)
    return whole.astype(np.int64) * 1000 + np.rint((ts - whole) * 1000).astype(np.int64)


def _dur_ns(events: list[_Event]) -> np.ndarray:
    dur = np.array([e.dur if e.dur is not None else 0.0 for e in events], dtype=np.float64)
    return np.rint(np.maximum(dur, 0.0) * 1000).astype(np.int64)


def _args(events: list[_Event]) -> list[_Args | None]:
    return _ARGS_DECODER.decode(b"[" + b",".join(e.args for e in events) + b"]") if events else []


def _times(events: list[_Event], precise: bool) -> dict:
    start = _start_ns(events, precise) if events else np.empty(0, dtype=np.int64)
    return {"start_ns": start, "end_ns": start + (_dur_ns(events) if events else 0)}


def _gpu_ops(events: list[_Event], precise: bool) -> pl.DataFrame:
    args = [a or _NO_ARGS for a in _args(events)]
    cols = {
        "kind": [_GPU_CATS[e.cat.lower()] for e in events],
        "name": [e.name for e in events],
        **_times(events, precise),
        "device": [_int_or_none(a.device) if a.device is not None else _int_or_none(e.pid)
                   for e, a in zip(events, args)],
        "stream": [_int_or_none(a.stream) if a.stream is not None else _int_or_none(e.tid)
                   for e, a in zip(events, args)],
        "correlation": [a.correlation for a in args],
        "bytes": [int(a.bytes) if a.bytes is not None else None for a in args],
        "grid": [None] * len(events),
        "block": [None] * len(events),
    }
    return pl.DataFrame(cols, schema=GPU_OPS_SCHEMA)


_NO_ARGS = _Args()


def _launches(events: list[_Event], precise: bool) -> pl.DataFrame:
    kinds = [launch_kind(e.name) if e.cat.lower() != "cuda_sync" else None for e in events]
    keep = [e for e, k in zip(events, kinds) if k is not None]
    args = [a or _NO_ARGS for a in _args(keep)]
    cols = {
        "kind": [k for k in kinds if k is not None],
        "api": [_API_CATS[e.cat.lower()] for e in keep],
        "name": [e.name for e in keep],
        **_times(keep, precise),
        "tid": [_int_or_none(e.tid) for e in keep],
        "correlation": [a.correlation for a in args],
    }
    return pl.DataFrame(cols, schema=LAUNCHES_SCHEMA)


def _syncs(events: list[_Event], precise: bool) -> pl.DataFrame:
    keep = [e for e in events if e.cat.lower() == "cuda_sync" or is_sync_call(e.name)]
    cols = {"name": [e.name for e in keep], **_times(keep, precise),
            "tid": [_int_or_none(e.tid) for e in keep]}
    return pl.DataFrame(cols, schema=SYNCS_SCHEMA)


def _cpu_ops(events: list[_Event], precise: bool) -> pl.DataFrame:
    cols = {"name": [e.name for e in events], **_times(events, precise),
            "tid": [_int_or_none(e.tid) for e in events]}
    return pl.DataFrame(cols, schema=CPU_OPS_SCHEMA)


def _annotations(events: list[_Event], precise: bool) -> pl.DataFrame:
    cols = {"name": [e.name for e in events], **_times(events, precise),
            "on_gpu": [_ANNOTATION_CATS.get(e.cat.lower(), False) for e in events],
            "tid": [_int_or_none(e.tid) for e in events]}
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
