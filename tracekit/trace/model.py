"""The normalized trace every reader produces and every later stage consumes.

Readers (``kineto.py`` for torch.profiler JSON, ``nsys.py`` for Nsight Systems SQLite) differ in
everything but this: four polars tables with **integer nanosecond** times and one ``meta`` dict.

``gpu_ops``      one row per kernel, memcpy or memset executed on a GPU
                 (``kind``: kernel | memcpy | memset; ``correlation`` links it to its launch; kernels
                 replayed by a CUDA graph share the correlation id of their ``cudaGraphLaunch``)
``launches``     one row per host API call that puts work on a GPU
                 (``kind``: kernel | graph | memcpy | memset; ``api``: runtime | driver)
``annotations``  user ranges: ``record_function``, ``ProfilerStep#N``, NVTX (``on_gpu`` for the
                 GPU-side copies Kineto makes of ``record_function`` ranges)
``syncs``        host waits on the device: synchronize calls, blocking copies, ``cuda_sync`` events
``cpu_ops``      framework ops on the host (Kineto ``cpu_op``, old ``Operator``): what the launching
                 thread was doing, for host attribution (empty for Nsight exports and CUDA-only
                 traces). ``python_function`` events are not read.

Times are absolute on the trace's own clock; only differences mean anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

GPU_OPS_SCHEMA = {
    "kind": pl.Utf8,
    "name": pl.Utf8,
    "start_ns": pl.Int64,
    "end_ns": pl.Int64,
    "device": pl.Int32,
    "stream": pl.Int64,
    "correlation": pl.Int64,
    "bytes": pl.Int64,
    "grid": pl.Utf8,  # "x×y×z" where the reader has it (Nsight); Kineto's are not read, for speed
    "block": pl.Utf8,
}
LAUNCHES_SCHEMA = {
    "kind": pl.Utf8,
    "api": pl.Utf8,
    "name": pl.Utf8,
    "start_ns": pl.Int64,
    "end_ns": pl.Int64,
    "tid": pl.Int64,
    "correlation": pl.Int64,
}
ANNOTATIONS_SCHEMA = {
    "name": pl.Utf8,
    "start_ns": pl.Int64,
    "end_ns": pl.Int64,
    "on_gpu": pl.Boolean,
    "tid": pl.Int64,
}
CPU_OPS_SCHEMA = {
    "name": pl.Utf8,
    "start_ns": pl.Int64,
    "end_ns": pl.Int64,
    "tid": pl.Int64,
}
SYNCS_SCHEMA = {
    "name": pl.Utf8,
    "start_ns": pl.Int64,
    "end_ns": pl.Int64,
    "tid": pl.Int64,
}


def empty(schema: dict) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


@dataclass
class Trace:
    """A decode trace, normalized. Build it with :func:`tracekit.trace.load`."""

    gpu_ops: pl.DataFrame
    launches: pl.DataFrame
    annotations: pl.DataFrame
    syncs: pl.DataFrame
    #: host-side framework ops (see the module docstring); empty when the trace has none
    cpu_ops: pl.DataFrame = field(default_factory=lambda: empty(CPU_OPS_SCHEMA))
    #: ``format`` (kineto | nsys), ``path``, ``gpu_name``, ``devices`` (list of names),
    #: ``versions`` (dict), ``tracekit`` (capture metadata dict or None),
    #: ``skipped_categories`` ({category: count}), ``events`` (total events read)
    meta: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    #: how the reader read the file (streamed in N slices, decoded whole and why): ``--verbose``
    notes: list[str] = field(default_factory=list)

    @property
    def has_gpu(self) -> bool:
        return self.gpu_ops.height > 0

    @property
    def has_cpu_ops(self) -> bool:
        return self.cpu_ops.height > 0

    @property
    def capture(self) -> dict | None:
        """tracekit's own capture metadata, when ``tracekit capture`` made the trace."""
        return self.meta.get("tracekit")
