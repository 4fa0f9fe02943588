"""The normalized trace every reader produces and every later stage consumes.

Readers (``kineto.py`` for torch.profiler JSON, ``nsys.py`` for Nsight Systems SQLite) differ in
everything but this: five tables with **integer nanosecond** times and one ``meta`` dict.

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

import numpy as np

from tracekit.trace.table import Table

# The schemas as polars type names: the polars tables users see have exactly these columns.
GPU_OPS = {
    "kind": "Utf8",
    "name": "Utf8",
    "start_ns": "Int64",
    "end_ns": "Int64",
    "device": "Int32",
    "stream": "Int64",
    "correlation": "Int64",
    "bytes": "Int64",
    "grid": "Utf8",  # "x×y×z" where the reader has it (Nsight); Kineto's are not read, for speed
    "block": "Utf8",
}
LAUNCHES = {
    "kind": "Utf8",
    "api": "Utf8",
    "name": "Utf8",
    "start_ns": "Int64",
    "end_ns": "Int64",
    "tid": "Int64",
    "correlation": "Int64",
}
ANNOTATIONS = {
    "name": "Utf8",
    "start_ns": "Int64",
    "end_ns": "Int64",
    "on_gpu": "Boolean",
    "tid": "Int64",
}
CPU_OPS = {
    "name": "Utf8",
    "start_ns": "Int64",
    "end_ns": "Int64",
    "tid": "Int64",
}
SYNCS = {
    "name": "Utf8",
    "start_ns": "Int64",
    "end_ns": "Int64",
    "tid": "Int64",
}
_SCHEMAS = {"gpu_ops": GPU_OPS, "launches": LAUNCHES, "annotations": ANNOTATIONS,
            "syncs": SYNCS, "cpu_ops": CPU_OPS}


def polars_schema(schema: dict[str, str]) -> dict:
    import polars as pl

    return {k: getattr(pl, v) for k, v in schema.items()}


def __getattr__(name: str):
    # GPU_OPS_SCHEMA & co.: the polars form, built on first use (importing polars costs 0.13 s)
    if name.endswith("_SCHEMA") and name[:-7] in globals():
        return polars_schema(globals()[name[:-7]])
    raise AttributeError(name)


def busiest_gpu_name(gpu_ops: Table, devices: dict) -> str | None:
    """The name of the device that ran most GPU ops (traces may list several; a tie goes to the
    lowest id; ops of an unknown device count as one more contender, and when they win, or the
    busiest device is not listed, the first device listed is named)."""
    if not devices:
        return None
    ids, counts = np.unique(gpu_ops["device"][gpu_ops.valid("device")], return_counts=True)
    unknown = gpu_ops.height - int(counts.sum())
    busiest = int(ids[np.argmax(counts)]) if ids.size and counts.max() >= unknown else None
    return (devices.get(busiest) or next(iter(devices.values())))["name"]


class _PolarsTable:
    """``trace.gpu_ops`` & co.: the polars DataFrame of one table, built from its columns on first
    use; assigning a DataFrame or a :class:`Table` replaces the table."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __get__(self, trace, owner=None):
        return self if trace is None else trace._frame(self.key)

    def __set__(self, trace, value) -> None:
        trace._set(self.key, value)


class Trace:
    """A decode trace, normalized. Build it with :func:`tracekit.trace.load`.

    The five tables are polars DataFrames (``trace.gpu_ops`` …), built on first use from the
    numpy columns the readers produce and the analysis runs on (``trace.table("gpu_ops")``, see
    :mod:`tracekit.trace.table`). Either form may be passed in.
    """

    def __init__(self, gpu_ops, launches, annotations, syncs, cpu_ops=None, meta: dict | None = None,
                 warnings: list[str] | None = None, notes: list[str] | None = None) -> None:
        given = {"gpu_ops": gpu_ops, "launches": launches, "annotations": annotations,
                 "syncs": syncs, "cpu_ops": cpu_ops}
        self._tables: dict[str, Table] = {}
        self._frames: dict = {}
        self._permuted: dict[str, tuple[Table, np.ndarray]] = {}  # see _share
        for key, value in given.items():
            if value is None:
                self._tables[key] = Table.empty(_SCHEMAS[key])
            elif isinstance(value, Table):
                self._tables[key] = value
            else:
                self._frames[key] = value
        #: ``format`` (kineto | nsys), ``path``, ``gpu_name``, ``devices`` (list of names),
        #: ``versions`` (dict), ``tracekit`` (capture metadata dict or None),
        #: ``skipped_categories`` ({category: count}), ``events`` (total events read)
        self.meta: dict = meta if meta is not None else {}
        self.warnings: list[str] = warnings if warnings is not None else []
        #: how the reader read the file (streamed in N slices, decoded whole and why): ``--verbose``
        self.notes: list[str] = notes if notes is not None else []

    def table(self, key: str) -> Table:
        """One of the five tables as numpy columns."""
        t = self._tables.get(key)
        if t is None:
            if key in self._permuted:
                rows, order = self._permuted.pop(key)
                back = np.empty_like(order)
                back[order] = np.arange(order.size, dtype=order.dtype)
                t = self._tables[key] = rows.take(back)
            else:
                t = self._tables[key] = Table.from_polars(self._frames[key])
        return t

    def _share(self, key: str, rows: Table, order: np.ndarray) -> None:
        """Hold table ``key`` as ``rows``, its rows taken in ``order`` (a permutation), instead
        of its own columns; its own order is rebuilt on the next :meth:`table` call.

        Step detection keeps the GPU ops sorted by start; sharing those columns here instead of
        keeping a second, file-ordered copy saves ~26 MB for the half million GPU ops of a 1 GB
        trace through the stages that follow (host attribution is the run's memory peak)."""
        if key not in self._tables or rows.height != self._tables[key].height:
            return
        del self._tables[key]
        self._permuted[key] = (rows.select(_SCHEMAS[key]),
                               order.astype(np.int32 if order.size < 2**31 else np.int64))

    def _set(self, key: str, value) -> None:
        """Replace a table (a polars DataFrame or a Table); the other form is rebuilt on use."""
        self._tables.pop(key, None)
        self._frames.pop(key, None)
        self._permuted.pop(key, None)
        if isinstance(value, Table):
            self._tables[key] = value
        else:
            self._frames[key] = value

    def _frame(self, key: str):
        f = self._frames.get(key)
        if f is None:
            f = self._frames[key] = self.table(key).to_polars()
        return f

    #: the five tables as polars DataFrames (see the module docstring); assigning one (a polars
    #: DataFrame or a Table) replaces it
    gpu_ops = _PolarsTable("gpu_ops")
    launches = _PolarsTable("launches")
    annotations = _PolarsTable("annotations")
    syncs = _PolarsTable("syncs")
    cpu_ops = _PolarsTable("cpu_ops")

    def _height(self, key: str) -> int:
        t = self._tables.get(key)
        if t is None and key in self._permuted:
            t = self._permuted[key][0]
        return t.height if t is not None else self._frames[key].height

    @property
    def has_gpu(self) -> bool:
        return self._height("gpu_ops") > 0

    @property
    def has_cpu_ops(self) -> bool:
        return self._height("cpu_ops") > 0

    @property
    def capture(self) -> dict | None:
        """tracekit's own capture metadata, when ``tracekit capture`` made the trace."""
        return self.meta.get("tracekit")
