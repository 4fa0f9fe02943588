"""Turn decoded events into the columns of a :class:`~tracekit.trace.model.Trace`'s five tables.

The reader hands :class:`Builder` one slice of decoded events at a time (see
:mod:`tracekit.trace.decode`); the builder keeps only numpy columns — names as ``uint32`` codes
into one dictionary of distinct names, kinds as small codes, ids with a validity mask where some
are unknown — and drops the events. :meth:`Builder.finish` joins each table's slices once, at the
end, and adds the trace's metadata and warnings.

What each event becomes:

* its route, from its category (:mod:`tracekit.trace.names`): a GPU op, an API call (a launch,
  a sync, or both: ``cudaMemcpy``), an annotation or a CPU op; other categories are skipped;
* times as integer nanoseconds from µs (float, or decimal where a float cannot hold them);
* ids (``pid``, ``tid``, ``args.device``/``stream``/``correlation``/``bytes``) as integers:
  ints, integral floats and ASCII digit strings; anything else, or outside the column's width,
  is unknown (null). A GPU op without ``args.device``/``stream`` has its ``pid``/``tid`` instead.

**The compiled pass.** Where tracekit was installed with a C compiler, ``_columns.c`` does the
per-event work of the common case (float timestamps, ids that are integers or null) ~4× faster
and declines (None) anything else, which the Python passes here then read: every rule stays
written once, in Python, and the C pass only ever agrees with it or declines
(``tests/test_columns_ext.py`` compares the two). It reads the msgspec structs by slot offset, so
its spec is checked once at import; if msgspec's layout ever changes (or the module is not
built, or ``TRACEKIT_PURE_PYTHON=1``) the Python passes read everything (:data:`COMPILED` is None
and :data:`COMPILED_PROBLEM` says why). Measured (``benchmarks/bench_machinery.py``, 2 cores):
without it ``explain --json`` takes 25% more CPU at 300 MB of JSON and 33-36% more at 1 GB.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from tracekit.errors import TraceFormatError
from tracekit.memory import release
from tracekit.trace import names as N
from tracekit.trace.capture_meta import clean_capture
from tracekit.trace.decode import PHASE_TYPES, Args, Complete, Event, Fields, File, needs_decimal
from tracekit.trace.model import ANNOTATIONS, CPU_OPS, GPU_OPS, LAUNCHES, SYNCS, Trace
from tracekit.trace.table import Strings, Table

SCHEMAS = {"gpu": GPU_OPS, "launch": LAUNCHES, "sync": SYNCS, "ann": ANNOTATIONS, "cpu": CPU_OPS}
#: the values of the small string columns, coded as uint8 while reading
_VALUES = {("gpu", "kind"): N.GPU_KINDS, ("launch", "kind"): N.LAUNCH_KINDS,
           ("launch", "api"): N.APIS}
#: Utf8 columns no Kineto trace fills (Nsight's launch geometry): all null
_NULL_STRINGS = ("grid", "block")
#: times and durations must fit int64 nanoseconds with room for start + dur: |t| < 2**62 ns
_MAX_NS = 2**62
_MAX_US = _MAX_NS / 1000
_NO_ARGS = Args()
_INT_OR_NONE = {int, type(None)}
_DIGITS = re.compile(r"-?[0-9]{1,20}")


class Builder:
    """Columns of one trace's five tables, a slice at a time. A slice's columns for one table are
    a ``(columns, masks)`` pair of dicts of arrays, kept in ``parts`` until :meth:`finish`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.events = 0
        self.skipped: dict[str, int] = {}
        self.no_ts = 0
        self.no_dur = 0
        self.bad_args = 0
        self.bad_bytes = 0  # copies whose byte count was given but unreadable (1e30, "many", -1)
        self.route: dict[str | None, str] = {}
        self.codes: dict[str, int] = {}
        self.parts: dict[str, list[tuple[dict, dict]]] = {k: [] for k in SCHEMAS}

    def add(self, events: list, precise_events: Callable[[], list]) -> None:
        """A slice's events. ``precise_events()`` decodes them again with decimal timestamps,
        called only where a float cannot hold them (see :func:`~tracekit.trace.decode.needs_decimal`)."""
        self.events += len(events)
        if COMPILED is not None and self._scan(events):
            return
        split = self._split(events)
        precise = any(needs_decimal(x) for x in split)
        if precise:
            split = self._split(precise_events(), count=False)
        gpu, api, ann, cpu = split
        self.no_dur += [e.dur for e in gpu].count(None)
        gpu_part = self._gpu_ops(gpu, precise)  # first: names are coded in table order
        launch_part, sync_part = self._api_calls(api, precise)
        for key, part in (("gpu", gpu_part), ("launch", launch_part), ("sync", sync_part),
                          ("ann", self._annotations(ann, precise)),
                          ("cpu", self._cpu_ops(cpu, precise))):
            if part[0]["start_ns"].size:
                self.parts[key].append(part)

    def _split(self, events: list, count: bool = True) -> tuple[list, list, list, list]:
        """Sort events into GPU ops, API calls, annotations and CPU ops; count what is skipped.

        One comprehension per destination (C-speed passes; event order kept in each)."""
        timed = [e for e in events if e.ph == "X" and e.ts is not None]
        if count:
            self.no_ts += [e.ph for e in events].count("X") - len(timed)
        route = self.route
        for cat in {e.cat for e in timed}:
            if cat not in route:
                route[cat] = N.route(cat)
        by = {r: {c for c, rr in route.items() if rr == r} for r in ("gpu", "api", "ann", "cpu")}
        gpu_c, api_c, ann_c, cpu_c = by["gpu"], by["api"], by["ann"], by["cpu"]
        gpu = [e for e in timed if e.cat in gpu_c]
        api = [e for e in timed if e.cat in api_c]
        cpu = [e for e in timed if e.cat in cpu_c]
        # before ~2023 ProfilerStep#N was a cpu_op (PyTorch 1.8-1.9: Operator): an annotation.
        # One search of the names joined answers "any here?" (no: every trace since) at C speed
        if cpu and "\0ProfilerStep#" in "\0" + "\0".join([e.name for e in cpu]):
            ann = [e for e in timed if e.cat in ann_c
                   or (e.cat in cpu_c and e.name.startswith("ProfilerStep#"))]
            cpu = [e for e in cpu if not e.name.startswith("ProfilerStep#")]
        else:
            ann = [e for e in timed if e.cat in ann_c]
        unknown = {c for c, r in route.items() if r == "unknown"}
        if count and unknown:
            skipped = self.skipped
            for e in timed:
                if e.cat in unknown:
                    skipped[e.cat] = skipped.get(e.cat, 0) + 1
        return gpu, api, ann, cpu

    # -- the five tables --------------------------------------------------------------------
    def _gpu_ops(self, events: list, precise: bool) -> tuple[dict, dict]:
        args = self._args(events)
        cats = [e.cat for e in events]
        kind = {c: N.GPU_KIND_CODE[c.lower()] for c in set(cats)}
        cols = {"kind": np.fromiter(map(kind.__getitem__, cats), np.uint8, len(events)),
                "name": self._names(events), **self._times(events, precise)}
        masks: dict = {}
        device, stream = [a.device for a in args], [a.stream for a in args]
        if None in device:  # the process id stands in
            device = [d if d is not None else e.pid for d, e in zip(device, events)]
        if None in stream:  # the thread id stands in
            stream = [s if s is not None else e.tid for s, e in zip(stream, events)]
        _ints(device, "device", cols, masks, bits=32)
        _ints(stream, "stream", cols, masks)
        _ints([a.correlation for a in args], "correlation", cols, masks)
        nbytes = [a.bytes for a in args]
        if not set(map(type, nbytes)) <= _INT_OR_NONE:  # (for these _bytes is the identity)
            given = len(nbytes) - nbytes.count(None)
            nbytes = [_bytes(v) for v in nbytes]
            self.bad_bytes += given - (len(nbytes) - nbytes.count(None))
        _ints(nbytes, "bytes", cols, masks)
        return cols, masks

    def _api_calls(self, events: list, precise: bool) -> tuple[tuple[dict, dict], tuple[dict, dict]]:
        """The launches and the syncs among the API calls (a ``cudaMemcpy`` is both), each call
        classified once per distinct name and category."""
        names, cats = [e.name for e in events], [e.cat for e in events]
        by_name = {n: (N.launch_kind(n), N.is_sync_call(n)) for n in set(names)}
        sync_cat = {c: c.lower() == "cuda_sync" for c in set(cats)}
        kinds = [None if sync_cat[c] else by_name[n][0] for n, c in zip(names, cats)]
        keep = [e for e, k in zip(events, kinds) if k is not None]
        args = self._args(keep)
        api = {c: N.API_CODE.get(c.lower(), 0) for c in sync_cat}
        cols = {"kind": np.fromiter((N.LAUNCH_KIND_CODE[k] for k in kinds if k is not None),
                                    np.uint8, len(keep)),
                "api": np.fromiter((api[e.cat] for e in keep), np.uint8, len(keep)),
                "name": self._names(keep), **self._times(keep, precise)}
        masks: dict = {}
        _ints([e.tid for e in keep], "tid", cols, masks)
        _ints([a.correlation for a in args], "correlation", cols, masks)
        synced = [e for e, n, c in zip(events, names, cats) if sync_cat[c] or by_name[n][1]]
        sync_cols = {"name": self._names(synced), **self._times(synced, precise)}
        sync_masks: dict = {}
        _ints([e.tid for e in synced], "tid", sync_cols, sync_masks)
        return (cols, masks), (sync_cols, sync_masks)

    def _cpu_ops(self, events: list, precise: bool) -> tuple[dict, dict]:
        cols = {"name": self._names(events), **self._times(events, precise)}
        masks: dict = {}
        _ints([e.tid for e in events], "tid", cols, masks)
        return cols, masks

    def _annotations(self, events: list, precise: bool) -> tuple[dict, dict]:
        cols = {"name": self._names(events), **self._times(events, precise),
                "on_gpu": np.fromiter((N.ANNOTATION_CATS.get(e.cat.lower(), False)
                                       for e in events), np.bool_, len(events))}  # a few hundred
        masks: dict = {}
        _ints([e.tid for e in events], "tid", cols, masks)
        return cols, masks

    # -- one column ---------------------------------------------------------------------------
    def _names(self, events: list) -> np.ndarray:
        """Name codes into the one dictionary of distinct names (a few hundred per trace)."""
        codes = self.codes
        names = [e.name for e in events]
        try:
            return np.fromiter(map(codes.__getitem__, names), np.uint32, len(names))
        except KeyError:  # new names (a few per slice): coded in order of first occurrence
            for n in dict.fromkeys(names):
                if n not in codes:
                    codes[n] = len(codes)
            return np.fromiter(map(codes.__getitem__, names), np.uint32, len(names))

    def _times(self, events: list, precise: bool) -> dict:
        if not events:
            return {"start_ns": np.empty(0, np.int64), "end_ns": np.empty(0, np.int64)}
        dur = np.array([e.dur for e in events], dtype=np.float64)  # None: nan (JSON has no NaN)
        if not precise:
            return self._span(np.array([e.ts for e in events], dtype=np.float64), dur)
        start = []
        for e in events:
            ns = int(e.ts.scaleb(3).to_integral_value())
            if not -_MAX_NS < ns < _MAX_NS:
                self._range_error("ts", e.ts)
            start.append(ns)
        return self._ends(np.array(start, dtype=np.int64), dur)

    def _span(self, ts: np.ndarray, dur: np.ndarray) -> dict:
        """Start and end in ns from float64 µs (dur NaN where missing: an instant)."""
        if not np.all(np.abs(ts) < _MAX_US):
            self._range_error("ts", float(ts[np.argmax(np.abs(ts))]))
        # whole µs and fraction separately: the fraction's error is < 0.5 ns, so rint is exact
        whole = np.floor(ts)
        return self._ends(whole.astype(np.int64) * 1000
                          + np.rint((ts - whole) * 1000).astype(np.int64), dur)

    def _ends(self, start: np.ndarray, dur: np.ndarray) -> dict:
        dur[np.isnan(dur)] = 0.0
        if not np.all(dur < _MAX_US):
            self._range_error("dur", float(dur.max()))
        return {"start_ns": start,
                "end_ns": start + np.rint(np.maximum(dur, 0.0) * 1000).astype(np.int64)}

    def _range_error(self, field: str, value) -> None:
        raise TraceFormatError(
            f"{self.path} has an event with {field} {value} µs, outside the range tracekit "
            f"represents (±{_MAX_US:.3g} µs as 64-bit nanoseconds); the trace is corrupt"
        )

    def _args(self, events: list) -> list[Args]:
        out = [e.args for e in events]
        if set(map(type, out)) <= {Args}:
            return out
        out = []
        for e in events:
            a = e.args
            if type(a) is not Args:
                if a is not None:
                    self.bad_args += 1
                a = _NO_ARGS
            out.append(a)
        return out

    # -- the compiled pass ----------------------------------------------------------------------
    def _scan(self, events: list) -> bool:
        """The compiled pass over a slice; False where it declines (the Python passes read it)."""
        cats, api_names = _SCAN_CACHE
        if len(cats) > _SCAN_CACHE_MAX or len(api_names) > _SCAN_CACHE_MAX:
            cats.clear()
            api_names.clear()
        out = COMPILED.scan(events, _SCAN_SPEC, cats, api_names, self.codes)
        if out is None:
            return False
        no_ts, unknown, no_dur, bad_args, tables = out
        self.no_ts += no_ts
        self.no_dur += no_dur
        self.bad_args += bad_args
        for cat, n in unknown.items():
            self.skipped[cat] = self.skipped.get(cat, 0) + n
        for key, columns in zip(_SCAN_COLUMNS, tables):
            cols, masks = {}, {}
            for (col, dtype), v in zip(_SCAN_COLUMNS[key], columns):
                if type(v) is tuple:  # an id: (int64 values, mask or None)
                    v, mask = v
                    if mask is not None:
                        masks[col] = np.frombuffer(mask, np.bool_)
                    cols[col] = np.frombuffer(v, np.int64).astype(dtype, copy=False)
                else:
                    cols[col] = np.frombuffer(v, dtype)
            if cols["ts"].size:
                cols.update(self._span(cols.pop("ts"), cols.pop("dur")))
                self.parts[key].append((cols, masks))
        return True

    # -- the trace --------------------------------------------------------------------------
    def finish(self, f: File) -> Trace:
        """The trace: each table's slices joined, the document's metadata, the warnings."""
        if not self.events:
            raise TraceFormatError(f"{self.path} has no events: the profiler recorded nothing")
        names = list(self.codes)
        tables = {}
        for key, schema in SCHEMAS.items():
            parts = self.parts[key]
            self.parts[key] = []
            tables[key] = _table(key, schema, parts, names)
            del parts
        capture, capture_warnings = clean_capture(f.tracekit)
        trace = Trace(
            gpu_ops=tables["gpu"], launches=tables["launch"], annotations=tables["ann"],
            syncs=tables["sync"], cpu_ops=tables["cpu"],
            meta=_meta(f, self.path, self.skipped, self.events, capture),
        )
        trace.warnings.extend(self._warnings(trace, tables["gpu"]))
        trace.warnings.extend(capture_warnings)
        return trace

    def _warnings(self, trace: Trace, gpu: Table) -> list[str]:
        out = []
        skipped = dict(self.skipped)
        ranges = skipped.pop(N.RANGE_CAT, 0)  # counted as unknown so that it can be told here
        if ranges and not trace.has_gpu:
            out.append(
                f"this is a CUPTI range-profiler trace ({ranges} {N.RANGE_CAT} records: hardware "
                "counters per profiled range, no kernel timeline), so it shows no GPU activity; "
                "for tracekit, profile with torch.profiler(activities=[ProfilerActivity.CPU, "
                "ProfilerActivity.CUDA]) and no experimental_config profiler_metrics")
        if skipped:
            out.append("skipped events of unknown categories: "
                       + ", ".join(f"{k} ({v})" for k, v in sorted(skipped.items())))
        if self.no_dur:
            out.append(f"{self.no_dur} GPU ops had no duration and were read as instants")
        if self.no_ts:
            out.append(f"{self.no_ts} complete events had no timestamp and were skipped")
        bad_bytes = self.bad_bytes + _negative_bytes(gpu)
        if bad_bytes:
            out.append(f"{bad_bytes} copies/memsets had a byte count that is not a whole "
                       "number from 0 to 2**63 (e.g. 1e30); their bytes are unknown "
                       "(their time still counts)")
        if self.bad_args:
            out.append(f"{self.bad_args} events had 'args' that is not an object; read as no args")
        return out


def _table(key: str, schema: dict[str, str], parts: list[tuple[dict, dict]],
           names: list[str]) -> Table:
    """One table from its slices' columns: arrays joined, codes typed, masks kept where a slice
    had unknowns (the other slices' rows are all known). Column by column, each slice's array
    dropped once joined: the peak is the table plus one column, not twice the table."""
    if not parts:
        return Table.empty(schema)
    sizes = [p[0]["start_ns"].size for p in parts]
    cols: dict[str, Strings | np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    for col, dtype in schema.items():
        if col in _NULL_STRINGS:
            cols[col] = Strings.full(None, sum(sizes))
            continue
        arrs = [p[0].pop(col) for p in parts]
        arr = arrs[0] if len(arrs) == 1 else np.concatenate(arrs)
        del arrs
        if dtype == "Utf8":
            values = names if col == "name" else list(_VALUES[key, col])
            cols[col] = Strings(arr.astype(np.uint32, copy=False), values)
        else:
            cols[col] = arr
        if any(col in p[1] for p in parts):
            masks[col] = np.concatenate([p[1].pop(col) if col in p[1] else np.ones(n, np.bool_)
                                         for p, n in zip(parts, sizes)])
        if len(parts) > 1:
            # the slices' arrays are heap memory glibc would keep: return it (without this
            # trim and the analysis stages' ones, explain's peak RSS at 1 GB of JSON is ~29%
            # higher: benchmarks/bench_machinery.py)
            release()
    return Table(cols, schema, masks)


def int_or_none(v: Any, bits: int = 64) -> int | None:
    """An id as an int: ints, integral floats and digit strings; anything else (or outside the
    signed ``bits`` range) is unknown."""
    if type(v) is float:
        v = int(v) if v.is_integer() else None
    elif type(v) is str:
        # ASCII digits only: str.isdigit() is also true for '²' and '٣', which int() refuses or
        # reads; and at most 20 of them (int64 is 19), so no huge string is ever converted
        v = int(v) if _DIGITS.fullmatch(v) else None
    if type(v) is int and -(2 ** (bits - 1)) <= v < 2 ** (bits - 1):
        return v
    return None


def _ints(values: list, name: str, cols: dict, masks: dict, bits: int = 64) -> None:
    """Ids as integers into ``cols[name]``; what is not one, or does not fit ``bits``, is null
    (unknown): 0 in the column, False in ``masks[name]``."""
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1)
    dtype = np.int64 if bits == 64 else np.int32
    types = set(map(type, values))
    if types <= _INT_OR_NONE:  # the usual cases: plain ints, or ints and None
        known = None
        if type(None) in types:
            known = np.array([v is not None for v in values], dtype=np.bool_)
            values = [0 if v is None else v for v in values]
        try:
            arr = np.array(values, dtype=np.int64)
        except OverflowError:  # beyond 64 bits: the general path below nulls it
            arr = None
        if arr is not None and (bits == 64 or not arr.size
                                or (lo <= int(arr.min()) and int(arr.max()) < hi)):
            cols[name] = arr.astype(dtype, copy=False)
            if known is not None:
                masks[name] = known
            return
        if known is not None:
            values = [v if ok else None for v, ok in zip(values, known.tolist())]
    out = [v if type(v) is int and lo <= v < hi else int_or_none(v, bits) for v in values]
    try:
        cols[name] = np.array(out, dtype=dtype)  # no unknowns (all ints, in range)
    except TypeError:
        masks[name] = np.fromiter((v is not None for v in out), np.bool_, len(out))
        cols[name] = np.array([0 if v is None else v for v in out], dtype=dtype)


def _bytes(v) -> int | None:
    if v is None or type(v) is bool:
        return None
    if type(v) is float:
        return int(v) if math.isfinite(v) and 0 <= v < 2**63 else None
    v = int_or_none(v)
    return v if v is None or v >= 0 else None


def _negative_bytes(gpu: Table) -> int:
    """Negative byte counts (plain ints, read as given by every pass) made unknown; how many."""
    col = gpu.cols.get("bytes")
    if col is None or not col.size:
        return 0
    neg = col < 0
    if "bytes" in gpu.masks:
        neg &= gpu.masks["bytes"]
    n = int(neg.sum())
    if n:
        known = gpu.masks.get("bytes", np.ones(col.size, np.bool_))
        gpu.masks["bytes"] = known & ~neg
    return n


def _meta(f: File, path: str, skipped: dict, events: int, capture: dict | None) -> dict:
    devices = {}
    for d in f.deviceProperties or []:
        if isinstance(d, dict) and isinstance(d.get("name"), str):
            devices[int_or_none(d.get("id")) or 0] = {
                "name": d["name"],
                "total_memory_bytes": int_or_none(d.get("totalGlobalMem")),
                "sm_count": int_or_none(d.get("numSms")),
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
        "tracekit": capture,
        "skipped_categories": skipped,
        "events": events,
    }


# --- the compiled pass's contract ----------------------------------------------------------
#: the tables the compiled pass fills, in order, and their columns in its order with their
#: dtypes (an id column comes as int64 values and a mask, and is kept as this dtype)
_SCAN_COLUMNS = {
    "gpu": (("name", np.uint32), ("ts", np.float64), ("dur", np.float64), ("kind", np.uint8),
            ("device", np.int32), ("stream", np.int64), ("correlation", np.int64),
            ("bytes", np.int64)),
    "launch": (("name", np.uint32), ("ts", np.float64), ("dur", np.float64), ("kind", np.uint8),
               ("api", np.uint8), ("tid", np.int64), ("correlation", np.int64)),
    "sync": (("name", np.uint32), ("ts", np.float64), ("dur", np.float64), ("tid", np.int64)),
    "ann": (("name", np.uint32), ("ts", np.float64), ("dur", np.float64), ("on_gpu", np.bool_),
            ("tid", np.int64)),
    "cpu": (("name", np.uint32), ("ts", np.float64), ("dur", np.float64), ("tid", np.int64)),
}
#: the compiled pass's caches (pure functions of their keys), shared by every builder; emptied
#: past this many entries (a trace with endless distinct API names)
_SCAN_CACHE: tuple[dict, dict] = ({}, {})
_SCAN_CACHE_MAX = 1 << 16


def _cat_code(cat: str) -> int:
    """A category as the compiled pass codes it (its CAT_* values): route and kind in one int."""
    r, c = N.route(cat), cat.lower()
    if r == "gpu":
        return 2 + N.GPU_KIND_CODE[c]
    if r == "api":
        return 7 if c == "cuda_sync" else 5 + N.API_CODE.get(c, 0)
    if r == "ann":
        return 9 if N.ANNOTATION_CATS.get(c, False) else 8
    return {"cpu": 10, "unknown": 1}.get(r, 0)


def _api_name_code(name: str) -> int:
    """An API call's name as the compiled pass codes it: launch kind + 1 (0: none) | 8 if a sync."""
    kind = N.launch_kind(name)
    return (0 if kind is None else 1 + N.LAUNCH_KIND_CODE[kind]) | (8 if N.is_sync_call(name) else 0)


def scan_spec() -> tuple:
    """What the compiled pass reads the structs by: their types and the member descriptors of
    the fields (slot offsets), and the two classifiers that fill its caches."""
    return (Complete, Event, Event.__dict__["ph"], frozenset(PHASE_TYPES),
            tuple(Fields.__dict__[f] for f in ("cat", "name", "pid", "tid", "ts", "dur", "args")),
            Args, tuple(Args.__dict__[f] for f in ("correlation", "stream", "device", "bytes")),
            _cat_code, _api_name_code)


def compiled_pass(spec: Callable[[], tuple] = scan_spec) -> tuple[Any, tuple | None, str | None]:
    """(the compiled module, its spec, None), or (None, None, why not). The spec is checked here,
    once, by a scan of no events: if msgspec ever lays its structs out otherwise (a field that is
    no longer a plain object slot, or gone from the class) that raises here, and the Python
    passes read every slice instead."""
    if os.environ.get("TRACEKIT_PURE_PYTHON"):  # the Python passes only (a comparison, a bug)
        return None, None, "TRACEKIT_PURE_PYTHON is set"
    try:
        from tracekit.trace import _columns
    except ImportError:
        return None, None, ("tracekit/trace/_columns.c is not built (no C compiler where "
                            "tracekit was installed)")
    try:
        s = spec()
        _columns.scan([], s, {}, {}, {})
    except (TypeError, KeyError, AttributeError) as exc:
        return None, None, f"msgspec's struct layout is not what _columns.c reads ({exc})"
    return _columns, s, None


COMPILED, _SCAN_SPEC, COMPILED_PROBLEM = compiled_pass()
