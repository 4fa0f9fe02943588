"""Read an Nsight Systems SQLite export (``nsys export --type sqlite``) into a :class:`Trace`.

Nsight Systems stores what CUPTI recorded in one table per activity kind; strings (kernel and API
names, NVTX texts) are interned in ``StringIds``. What this reader takes:

=============================== ====================================================================
``CUPTI_ACTIVITY_KIND_KERNEL``  ``gpu_ops`` kind kernel: ``start``/``end`` (ns), ``deviceId``,
                                ``streamId``, ``correlationId``, ``demangledName`` → ``StringIds``
                                (the same demangled names Kineto shows), ``gridX..``, ``blockX..``
``…_MEMCPY`` / ``…_MEMSET``     ``gpu_ops`` kind memcpy/memset, named as Kineto names them
                                (``Memcpy DtoD (Device -> Device)``), with ``bytes``
``…_RUNTIME`` (``…_DRIVER``)    ``launches`` (kernel, graph, memcpy, memset launch calls) and
                                ``syncs`` (synchronize calls, blocking copies); API names lose
                                their version suffix (``cudaLaunchKernel_v7000`` → ``cudaLaunchKernel``)
``…_SYNCHRONIZATION``           ``syncs`` too (Kineto's ``cuda_sync`` events)
``NVTX_EVENTS``                 ``annotations`` (push/pop and start/end ranges; ``on_gpu`` False):
                                ``tracekit capture`` marks each step ``tracekit.step#i``
``TARGET_INFO_GPU``             device names → ``meta["devices"]``, ``meta["gpu_name"]``
``TRACEKIT_CAPTURE``            the capture metadata ``tracekit capture --profiler nsys`` stores
=============================== ====================================================================

Kernels replayed by a CUDA graph (captured with ``--cuda-graph-trace=node``) carry the
correlation id of their ``cudaGraphLaunch``, as in Kineto. Times are integer nanoseconds.

    tracekit explain report.sqlite.gz
"""

from __future__ import annotations

import functools
import os
import re
import signal
import sqlite3
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import TypeVar

import numpy as np

from tracekit import jsonio
from tracekit.errors import Terminated, TraceFormatError
from tracekit.trace.capture_meta import META_TABLE, clean_capture
from tracekit.trace.model import ANNOTATIONS, GPU_OPS, LAUNCHES, SYNCS, Trace, busiest_gpu_name
from tracekit.trace.names import is_sync_call, launch_kind
from tracekit.trace.source import Source, open_source
from tracekit.trace.table import Strings, Table

#: a gzipped (or piped) export is never copied to disk past this (a gzip bomb stops here)
MAX_SQLITE_BYTES = 2 << 30
#: the most time the queries of one export may take (a recursive view stops here)
QUERY_SECONDS = 120.0
_SQLITE_MAGIC = b"SQLite format 3\x00"

KERNEL = "CUPTI_ACTIVITY_KIND_KERNEL"
MEMCPY = "CUPTI_ACTIVITY_KIND_MEMCPY"
MEMSET = "CUPTI_ACTIVITY_KIND_MEMSET"
API_TABLES = ("CUPTI_ACTIVITY_KIND_RUNTIME", "CUPTI_ACTIVITY_KIND_DRIVER")
SYNC_TABLE = "CUPTI_ACTIVITY_KIND_SYNCHRONIZATION"
NVTX = "NVTX_EVENTS"

#: CUPTI enums, spelled as Kineto spells them in its memcpy/memset names
MEMCPY_KINDS = {
    1: "HtoD",
    2: "DtoH",
    3: "HtoA",
    4: "AtoH",
    5: "AtoA",
    6: "AtoD",
    7: "DtoA",
    8: "DtoD",
    9: "HtoH",
    10: "PtoP",
}
MEMORY_KINDS = {
    1: "Pageable",
    2: "Pinned",
    3: "Device",
    4: "Array",
    5: "Managed",
    6: "Device Static",
    7: "Managed Static",
}
SYNC_KINDS = {1: "Event Sync", 2: "Stream Wait Event", 3: "Stream Sync", 4: "Context Sync"}
#: NVTX event types that are not ranges (category/thread names, marks, domains)
_NVTX_NOT_RANGES = (33, 34, 39, 75, 76)
#: API names carry a version (``_v7000``) and sometimes a per-thread-stream tag (``_ptsz``)
_API_SUFFIX = re.compile(r"(_v\d+)?(_pt(sz|ds))?(_v\d+)?$")
#: globalTid = pid << 24 | tid (Nsight Systems' serialized thread id)
_TID_MASK = 0xFFFFFF


@functools.lru_cache(maxsize=4096)
def api_name(name: str) -> str:
    """``cudaLaunchKernel_ptsz_v7000`` → ``cudaLaunchKernel``."""
    return _API_SUFFIX.sub("", name) or name


def load_nsys(path: str | Path | Source, *, limit: int = MAX_SQLITE_BYTES) -> Trace:
    """Read an Nsight Systems SQLite export, plain or gzipped, into the normalized trace.

    ``path`` may be an opened :class:`~tracekit.trace.source.Source` (a pipe, standard input)."""
    if isinstance(path, Source):
        return _load(path, limit)
    with open_source(path) as src:
        return _load(src, limit)


def _load(src: Source, limit: int) -> Trace:
    p = Path(src.name)
    with _sqlite_file(src, limit=limit) as db:
        try:
            con = sqlite3.connect(_ro_uri(db), uri=True)
        except sqlite3.Error as exc:
            raise TraceFormatError(f"{p} cannot be opened as SQLite: {exc}") from None
        with closing(con):
            # TEXT that is not UTF-8 (a corrupt or hostile file) reads with U+FFFD, not a crash
            con.text_factory = _text
            deadline = time.monotonic() + QUERY_SECONDS
            # a hostile file (a recursive view, a huge join) cannot run for ever
            con.set_progress_handler(lambda: time.monotonic() > deadline, 100_000)
            try:
                return _read(con, p)
            except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
                if time.monotonic() > deadline:
                    raise TraceFormatError(
                        f"{p}: reading it took longer than {QUERY_SECONDS:.0f} s; it is not an "
                        "Nsight Systems export tracekit can read"
                    ) from None
                if str(exc) == "interrupted":
                    # nothing but the deadline and a signal interrupts a query: SIGTERM's handler
                    # raised inside SQLite's progress callback, which SQLite reports like this
                    raise Terminated() from None
                raise TraceFormatError(
                    f"{p} is not a readable Nsight Systems SQLite export ({exc}); "
                    "re-export it with `nsys export --type sqlite`"
                ) from None


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _ro_uri(db: Path) -> str:
    """A read-only ``file:`` URI for ``db``, percent-encoded: ``%``, ``#``, ``?`` in a name are
    the file's own characters, not URI syntax."""
    return "file:" + urllib.parse.quote(str(Path(db).resolve())) + "?mode=ro"


@contextmanager
def _sqlite_file(src: Source, *, limit: int) -> Iterator[Path]:
    """The path of a plain SQLite file: the input itself, or its content (gunzipped, or read from
    a pipe) copied to a temp file that is removed on every exit, SIGTERM and SIGINT included."""
    if src.path is not None and not src.is_gzip:
        _check_magic(src.peek(16), Path(src.path))
        yield Path(src.path)
        return
    with removed_on_exit(prefix="tracekit-nsys-", suffix=".sqlite") as tmp:
        with open(tmp, "wb") as out:
            for chunk in src.chunks(limit=limit):
                out.write(chunk)
        with open(tmp, "rb") as f:
            _check_magic(f.read(16), Path(src.name))
        yield tmp


@contextmanager
def removed_on_exit(*, prefix: str, suffix: str) -> Iterator[Path]:
    """A temp file path that is unlinked when the block ends however it ends: an exception, or
    SIGTERM (turned into ``SystemExit(143)`` for the block's duration, so ``finally`` runs)."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    previous = None

    def _terminate(signum, frame):
        raise SystemExit(128 + signum)

    try:
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _terminate)
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _check_magic(magic: bytes, p: Path) -> None:
    if magic != _SQLITE_MAGIC:
        raise TraceFormatError(
            f"{p} is not an SQLite database; expected an Nsight Systems export made with "
            "`nsys export --type sqlite REPORT.nsys-rep` (or a torch.profiler .json.gz)"
        )


# --- reading -----------------------------------------------------------------------------------
def _tables(con: sqlite3.Connection) -> set[str]:
    return {
        r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }


def _columns(con: sqlite3.Connection, table: str) -> set[str]:
    return {r[1] for r in con.execute(f"PRAGMA table_info({table})")}


def _read(con: sqlite3.Connection, p: Path) -> Trace:
    tables = _tables(con)
    missing = [t for t in ("StringIds", KERNEL) if t not in tables]
    if missing:
        raise TraceFormatError(
            f"{p} is SQLite but not an Nsight Systems export with CUDA kernels: no "
            f"{' or '.join(missing)} table. Capture with `nsys profile --trace=cuda,nvtx` and "
            "export with `nsys export --type sqlite`"
        )
    kernels, untimed = _kernels(con)
    gpu_ops = Table.concat([kernels, _memcpys(con, tables), _memsets(con, tables)])
    gpu_ops = gpu_ops.take(np.argsort(gpu_ops["start_ns"], kind="stable"))
    calls, named, api_untimed = _api_calls(con, tables)
    warnings = _unreadable_rows(con, tables, {KERNEL: untimed, **api_untimed})
    if not named:
        warnings.append("no CUDA API table (CUPTI_ACTIVITY_KIND_RUNTIME): launches are unknown")
    annotations = _nvtx(con, tables)
    if NVTX not in tables:
        warnings.append("no NVTX_EVENTS table: steps must be found without markers")
    devices = _devices(con, tables)
    block, capture_warnings = _capture_meta(con, tables)
    capture, cleaned = clean_capture(block)
    capture_warnings += cleaned
    warnings.extend(capture_warnings)
    trace = Trace(
        gpu_ops=gpu_ops,
        launches=calls.take(calls["kind"].where(lambda k: k is not None)).select(LAUNCHES),
        annotations=annotations,
        syncs=_syncs(calls, con, tables),
        meta={
            "format": "nsys",
            "path": str(p),
            "devices": devices,
            "gpu_name": busiest_gpu_name(gpu_ops, devices),
            "versions": {},
            "tracekit": capture,
            "skipped_categories": {},
            "events": gpu_ops.height + named + annotations.height,
        },
        warnings=warnings,
    )
    if trace.meta["tracekit"]:
        trace.meta["versions"] = dict(trace.meta["tracekit"].get("versions") or {})
    return trace


def _unreadable_rows(con: sqlite3.Connection, tables: set[str],
                     counted: dict[str, int]) -> list[str]:
    """One warning per activity table with rows the reader leaves out (a start or end that is not
    an integer of ns) and per copy table with byte counts it cannot read (not a whole number >= 0
    that fits int64, e.g. 1e30): those rows count as GPU time, their bandwidth is unknown.
    ``counted``: the tables whose rows left out were counted while reading them (the kernels and
    API calls, the big tables, whose reading already tests every row)."""
    out = []
    for table in (KERNEL, MEMCPY, MEMSET, *API_TABLES, SYNC_TABLE):
        if table not in tables:
            continue
        n = counted.get(table)
        if n is None:
            n = con.execute(f"SELECT count(*) FROM {table} WHERE NOT ({_timed()})").fetchone()[0]
        if n:
            out.append(f"{n} row(s) of {table} have a start or end that is not an integer "
                       "(ns); left out")
        if table in (MEMCPY, MEMSET) and "bytes" in _columns(con, table):
            n = con.execute(f"SELECT count(*) FROM {table} WHERE {_timed()} AND bytes IS NOT NULL "
                            "AND (typeof(bytes) != 'integer' OR bytes < 0)").fetchone()[0]
            if n:
                out.append(f"{n} row(s) of {table} have a byte count that is not a whole number "
                           ">= 0; their bytes are unknown (their time still counts)")
    return out


def _timed(alias: str = "") -> str:
    """SQL condition: the row has integer start and end (others are dropped)."""
    a = f"{alias}." if alias else ""
    return f"typeof({a}start) = 'integer' AND typeof({a}end) = 'integer'"


def _strings_join(col: str, alias: str) -> str:
    return f"LEFT JOIN StringIds {alias} ON {alias}.id = {col}"


# --- rows to columns ---------------------------------------------------------------------------
_Key = TypeVar("_Key")  # what a string column's rows are labelled from (a name id, a shape)


def _column_arrays(rows: list[tuple]) -> list:
    """The columns of a query's rows: int64 arrays when every value is an integer (the usual
    case for the kernel and API rows: one numpy call for the whole table, half the time of
    building each column), else tuples of the values as SQL gave them."""
    table = np.array(rows)
    if table.dtype == np.int64 and table.ndim == 2:
        return list(np.ascontiguousarray(table.T))
    return list(zip(*rows))


def _ints(values: Sequence, bits: int = 64) -> tuple[np.ndarray, np.ndarray | None]:
    """An integer column from SQL values — integers (of ``bits``) kept, anything else (NULL, a
    TEXT, REAL or BLOB where an id belongs) null, never a crash later — as int64 values (0 where
    null) and the validity mask (None: no null)."""
    n = len(values)
    col = values if isinstance(values, np.ndarray) else (
        np.array(values) if n else np.empty(0, np.int64))
    ok = None
    if col.dtype != np.int64:  # some value is not an integer (the usual case: none)
        ok = np.fromiter((type(v) is int for v in values), bool, n)
        col = np.fromiter((v if type(v) is int else 0 for v in values), np.int64, n)
    if bits < 64:
        fits = (col >= -(2 ** (bits - 1))) & (col < 2 ** (bits - 1))
        if not fits.all():
            ok = fits if ok is None else ok & fits
            col = np.where(fits, col, 0)
    return col, ok


def _strings(keys: Sequence[_Key], label: Callable[[_Key], str | None]) -> Strings:
    """A string column whose row ``i`` is ``label(keys[i])``, labelled once per distinct key (a
    name id, a launch shape): a few hundred distinct names for a hundred thousand rows."""
    values: dict = {}
    if isinstance(keys, np.ndarray) and keys.dtype == np.int64:  # numpy finds the distinct keys
        distinct, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        seen = np.argsort(first)  # the distinct keys in the order they first appear, as below
        code = np.empty(len(distinct), np.uint32)
        code[seen] = [values.setdefault(label(k), len(values)) for k in distinct[seen].tolist()]
        return Strings(code[inverse.ravel()], list(values))
    codes = {k: values.setdefault(label(k), len(values)) for k in dict.fromkeys(keys)}
    return Strings(np.fromiter(map(codes.__getitem__, keys), np.uint32, len(keys)), list(values))


def _relabel(col: Strings, label: Callable[[str], str | None]) -> Strings:
    """The string column ``label(col[i])``, computed once per distinct value."""
    values: dict = {}
    code = np.fromiter((values.setdefault(label(v), len(values)) for v in col.values), np.uint32,
                       len(col.values))
    return Strings(code[col.codes], list(values))


def _table(schema: dict[str, str], cols: dict) -> Table:
    """A table of ``schema`` from ``cols``: number columns as ``_ints`` pairs, strings as
    :class:`Strings`."""
    arrays, masks = {}, {}
    for name, col in cols.items():
        if isinstance(col, tuple):
            arrays[name], masks[name] = col
        else:
            arrays[name] = col
    if schema.get("device") == "Int32" and "device" in arrays:
        arrays["device"] = arrays["device"].astype(np.int32)
    return Table({k: arrays[k] for k in schema}, schema, masks)


def _no_ints(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(n, np.int64), np.zeros(n, bool)


_DIMS = ("gridX", "gridY", "gridZ", "blockX", "blockY", "blockZ")


def _dims(d: tuple) -> str | None:
    """``"XxYxZ"`` (None where a dimension is not an integer)."""
    return f"{d[0]}x{d[1]}x{d[2]}" if all(type(v) is int for v in d) else None


def _kernels(con: sqlite3.Connection) -> tuple[Table, int]:
    """The kernels, and how many rows were left out (a start or end that is not an integer)."""
    cols = _columns(con, KERNEL)
    # demangledName is what Kineto shows; older exports may only have shortName
    name_col = next((c for c in ("demangledName", "shortName", "mangledName") if c in cols), None)
    if name_col is None:
        raise TraceFormatError(f"{KERNEL} has no kernel name column (demangledName/shortName)")
    shapes: list[tuple] = []
    shape = ""
    if set(_DIMS) <= cols:
        # A kernel's launch shape (grid, block) takes six numbers, but an export has a few dozen
        # distinct shapes: SQL numbers them (in sorted order) into a temporary table indexed on
        # the six numbers, and each row looks its shape's number up there. For the 61 k kernels
        # of the 10.5 MB sample: 89 ms with the index, 210 ms scanning the shapes for each row,
        # ~135 ms fetching the six numbers and numbering them in Python.
        d = ", ".join(_DIMS)
        con.execute("DROP TABLE IF EXISTS temp.tk_shapes")
        con.execute(f"CREATE TEMP TABLE tk_shapes AS SELECT {d}, row_number() OVER (ORDER BY {d}) "
                    f"- 1 AS i FROM (SELECT DISTINCT {d} FROM {KERNEL})")
        con.execute(f"CREATE INDEX temp.tk_shapes_dims ON tk_shapes ({d})")
        shapes = con.execute(f"SELECT {d} FROM temp.tk_shapes ORDER BY i").fetchall()
        same = " AND ".join(f"s.{x} IS k.{x}" for x in _DIMS)
        shape = f", (SELECT i FROM temp.tk_shapes s WHERE {same} LIMIT 1)"
    # every row, its start and end tested here: a second scan to count the rows left out would
    # cost more than the test (an export's rows are all integers but for hostile ones)
    rows = con.execute(
        f"SELECT k.{name_col}, k.start, k.end, k.deviceId, k.streamId, "
        f"k.correlationId{shape} FROM {KERNEL} k"
    ).fetchall()
    if not rows:
        return Table.empty(GPU_OPS), 0
    c = _column_arrays(rows)
    (start, start_ok), (end, end_ok) = _ints(c[1]), _ints(c[2])
    untimed = 0
    if start_ok is not None or end_ok is not None:  # some start or end is not an integer
        keep = np.ones(len(rows), bool) if start_ok is None else start_ok
        keep = keep if end_ok is None else keep & end_ok
        untimed = len(rows) - int(keep.sum())
        rows = [r for r, k in zip(rows, keep.tolist()) if k]
        if not rows:
            return Table.empty(GPU_OPS), untimed
        c = _column_arrays(rows)
        start, end = _ints(c[1])[0], _ints(c[2])[0]
    # each distinct name once, not a join per row
    names = dict(con.execute(
        f"SELECT id, CAST(value AS TEXT) FROM StringIds WHERE id IN "
        f"(SELECT DISTINCT {name_col} FROM {KERNEL})"
    ).fetchall())
    unknown = f"<kernel {name_col} unknown>"
    n = len(rows)
    if shapes:
        grid = _strings(c[6], lambda i: None if i is None else _dims(shapes[i][:3]))
        block = _strings(c[6], lambda i: None if i is None else _dims(shapes[i][3:]))
    else:
        grid = block = Strings.full(None, n)
    return _table(GPU_OPS, {
        "kind": Strings.full("kernel", n),
        "name": _strings(c[0], lambda i: names.get(i) or unknown),
        "start_ns": start, "end_ns": end,
        "device": _ints(c[3], 32), "stream": _ints(c[4]), "correlation": _ints(c[5]),
        "bytes": _no_ints(n), "grid": grid, "block": block,
    }), untimed


def _copies(rows: list[tuple], kind: str, label: Callable[[tuple], str]) -> Table:
    """Memcpy or memset rows ``(start, end, device, stream, correlation, bytes, *name_key)``."""
    if not rows:
        return Table.empty(GPU_OPS)
    c = list(zip(*rows))
    n = len(rows)
    return _table(GPU_OPS, {
        "kind": Strings.full(kind, n), "name": _strings(list(zip(*c[6:])), label),
        "start_ns": _ints(c[0])[0], "end_ns": _ints(c[1])[0], "device": _ints(c[2], 32),
        "stream": _ints(c[3]), "correlation": _ints(c[4]), "bytes": _ints(c[5]),
        "grid": Strings.full(None, n), "block": Strings.full(None, n),
    })


def _memcpys(con: sqlite3.Connection, tables: set[str]) -> Table:
    if MEMCPY not in tables:
        return Table.empty(GPU_OPS)
    cols = _columns(con, MEMCPY)
    src = "srcKind" if "srcKind" in cols else "NULL"
    dst = "dstKind" if "dstKind" in cols else "NULL"
    rows = con.execute(
        f"SELECT start, end, deviceId, streamId, correlationId, bytes, copyKind, {src}, {dst} "
        f"FROM {MEMCPY} WHERE {_timed()}"
    ).fetchall()
    return _copies(rows, "memcpy", lambda k: _memcpy_name(*k))


def _memcpy_name(kind, src, dst) -> str:
    return (
        f"Memcpy {MEMCPY_KINDS.get(kind, 'Unknown')} "
        f"({MEMORY_KINDS.get(src, 'Unknown')} -> {MEMORY_KINDS.get(dst, 'Unknown')})"
    )


def _memsets(con: sqlite3.Connection, tables: set[str]) -> Table:
    if MEMSET not in tables:
        return Table.empty(GPU_OPS)
    mem = "memKind" if "memKind" in _columns(con, MEMSET) else "NULL"
    rows = con.execute(
        f"SELECT start, end, deviceId, streamId, correlationId, bytes, {mem} FROM {MEMSET} "
        f"WHERE {_timed()}"
    ).fetchall()
    return _copies(rows, "memset", lambda k: f"Memset ({MEMORY_KINDS.get(k[0], 'Unknown')})")


#: the API calls' columns: a launch's (``LAUNCHES``) and whether the call waits for the device
_API_COLUMNS = {**LAUNCHES, "sync": "Boolean"}


def _api_calls(con: sqlite3.Connection,
               tables: set[str]) -> tuple[Table, int, dict[str, int]]:
    """The CUDA API calls that launch work or wait for the device, in start order; how many named
    API calls there are in all; and per API table, how many rows were left out (a start or end
    that is not an integer).

    The API names that matter all start with ``cu`` or ``hip``: those few strings are classified
    once (``api_name``, ``launch_kind``, ``is_sync_call``), and SQL returns only their rows."""
    names: dict[int, tuple] = {}
    for nid, name in con.execute(
        "SELECT id, CAST(value AS TEXT) FROM StringIds "
        "WHERE CAST(value AS TEXT) GLOB 'cu*' OR CAST(value AS TEXT) GLOB 'hip*'"
    ):
        clean = api_name(name)
        kind, sync = launch_kind(clean), is_sync_call(clean)
        if (kind is not None or sync) and type(nid) is int:
            names[nid] = (clean, kind, "runtime" if clean.startswith("cuda") else "driver", sync)
    has_name = "SELECT id FROM StringIds WHERE id IS NOT NULL AND CAST(value AS TEXT) != ''"
    rows: list[tuple] = []
    named, untimed = 0, {}
    for table in API_TABLES:
        if table not in tables:
            continue
        # one scan counts the rows, those left out and those without a name
        total, untimed[table], unnamed = con.execute(
            f"SELECT count(*), coalesce(sum(NOT ({_timed()})), 0), coalesce(sum(nameId IS NULL "
            f"OR nameId NOT IN ({has_name})), 0) FROM {table}"
        ).fetchone()
        named += (total - unnamed if not untimed[table] else con.execute(
            f"SELECT count(*) FROM {table} WHERE {_timed()} AND nameId IN ({has_name})"
        ).fetchone()[0])
        if names:  # runtime rows before driver rows: equal starts keep this order below
            check = f"{_timed()} AND " if untimed[table] else ""
            rows += con.execute(
                f"SELECT nameId, start, end, globalTid, correlationId FROM {table} "
                f"WHERE {check}nameId IN ({', '.join(str(i) for i in names)})"
            ).fetchall()
    if not rows:
        return Table.empty(_API_COLUMNS), named, untimed
    nid, start, end, gtid, corr = _column_arrays(rows)
    tid, tid_ok = _ints(gtid)
    name = _strings(nid, lambda i: names[i][0])
    info = {v[0]: v for v in names.values()}  # by clean name: what the rest depends on
    calls = _table(_API_COLUMNS, {
        "name": name,
        "kind": _relabel(name, lambda v: info[v][1]),
        "api": _relabel(name, lambda v: info[v][2]),
        "sync": name.where(lambda v: info[v][3]),
        "start_ns": _ints(start)[0], "end_ns": _ints(end)[0],
        "tid": (tid & _TID_MASK, tid_ok), "correlation": _ints(corr),
    })
    # a stable sort: equal starts keep the order the rows came in
    return (_one_row_per_call(calls.take(np.argsort(calls["start_ns"], kind="stable"))),
            named, untimed)


def _one_row_per_call(calls: Table) -> Table:
    """One row per API call. Some exports record a call twice, the same correlation id on the
    same thread, one row nested in the other (Nsight Systems 2022.2 with CUDA backtraces: an
    outer ``cudaLaunchKernel`` row, eventClass 67, around CUPTI's ``cudaLaunchKernel_v7000``):
    the innermost row (the later start) is kept, so a launch is counted once."""
    rows = np.nonzero(calls.valid("correlation"))[0]
    keys = (calls["correlation"][rows], calls.filled("tid", 0)[rows],
            calls.valid("tid")[rows], calls["name"].codes[rows])
    order = np.lexsort((rows, *reversed(keys)))  # by (correlation, tid, name), then row
    same = np.ones(max(rows.size - 1, 0), bool)  # a row has the same key as the next one
    for k in keys:
        k = k[order]
        same &= k[1:] == k[:-1]
    if not same.any():
        return calls  # no call recorded twice (the usual case)
    keep = ~calls.valid("correlation")
    keep[rows[order[np.append(~same, True)]]] = True  # the last (latest) row of each key
    return calls.take(np.nonzero(keep)[0])


def _syncs(calls: Table, con: sqlite3.Connection, tables: set[str]) -> Table:
    api = calls.take(np.nonzero(calls["sync"])[0]).select(SYNCS)
    if SYNC_TABLE not in tables:
        return api
    cols = _columns(con, SYNC_TABLE)
    kind = "syncType" if "syncType" in cols else "NULL"
    tid = "globalTid" if "globalTid" in cols else "NULL"
    rows = con.execute(
        f"SELECT {kind}, start, end, {tid} FROM {SYNC_TABLE} WHERE {_timed()}").fetchall()
    if not rows:
        return api
    k, s, e, gtid = zip(*rows)
    tid_col, tid_ok = _ints(gtid)
    table = _table(SYNCS, {"name": _strings(k, lambda x: SYNC_KINDS.get(x, "Sync")),
                           "start_ns": _ints(s)[0], "end_ns": _ints(e)[0],
                           "tid": (tid_col & _TID_MASK, tid_ok)})
    both = Table.concat([api, table])
    return both.take(np.argsort(both["start_ns"], kind="stable"))


def _nvtx(con: sqlite3.Connection, tables: set[str]) -> Table:
    if NVTX not in tables:
        return Table.empty(ANNOTATIONS)
    cols = _columns(con, NVTX)
    text = ("CAST(COALESCE(n.text, s.value) AS TEXT)" if "textId" in cols
            else "CAST(n.text AS TEXT)")
    join = _strings_join("n.textId", "s") if "textId" in cols else ""
    types = (
        f"AND (n.eventType IS NULL OR n.eventType NOT IN {_NVTX_NOT_RANGES})"
        if "eventType" in cols
        else ""
    )
    rows = [r for r in con.execute(
        f"SELECT {text}, n.start, n.end, n.globalTid FROM {NVTX} n {join} "
        f"WHERE {_timed('n')} AND n.end >= n.start {types} ORDER BY n.start"
    ).fetchall() if r[0] is not None]
    if not rows:
        return Table.empty(ANNOTATIONS)
    name, s, e, gtid = zip(*rows)
    tid, tid_ok = _ints(gtid)
    return _table(ANNOTATIONS, {"name": _strings(name, str), "start_ns": _ints(s)[0],
                                "end_ns": _ints(e)[0], "on_gpu": np.zeros(len(rows), bool),
                                "tid": (tid & _TID_MASK, tid_ok)})


def _devices(con: sqlite3.Connection, tables: set[str]) -> dict[int, dict]:
    """CUDA device id → {name, total_memory_bytes, sm_count, cc}, from the TARGET_INFO tables."""
    if "TARGET_INFO_GPU" not in tables:
        return {}
    cols = _columns(con, "TARGET_INFO_GPU")
    pick = [c for c in ("id", "name", "totalMemory", "smCount", "cuDevice") if c in cols]
    gpus = [
        dict(zip(pick, r)) for r in con.execute(f"SELECT {', '.join(pick)} FROM TARGET_INFO_GPU")
    ]
    # TARGET_INFO_CUDA_DEVICE maps CUDA ordinals (the kernels' deviceId) to GPUs, when present
    ordinal = {}
    if "TARGET_INFO_CUDA_DEVICE" in tables:
        ccols = _columns(con, "TARGET_INFO_CUDA_DEVICE")
        if {"cudaId", "gpuId"} <= ccols:
            extra = [c for c in ("computeMajor", "computeMinor") if c in ccols]
            sel = ", ".join(["cudaId", "gpuId", *extra])
            for row in con.execute(f"SELECT {sel} FROM TARGET_INFO_CUDA_DEVICE"):
                ordinal[row[1]] = (row[0], row[2:] if extra else None)
    devices: dict[int, dict] = {}
    for g in gpus:
        if not g.get("name"):
            continue
        cuda_id, cc = ordinal.get(g.get("id"), (g.get("cuDevice", g.get("id")), None))
        key = cuda_id if type(cuda_id) is int else len(devices)
        devices.setdefault(
            key,
            {
                "name": str(g["name"]),
                "total_memory_bytes": _int_value(g.get("totalMemory")),
                "sm_count": _int_value(g.get("smCount")),
                "cc": f"{cc[0]}.{cc[1]}" if cc and len(cc) == 2 else None,
            },
        )
    return devices


def _int_value(v) -> int | None:
    return v if type(v) is int else None


def _capture_meta(con: sqlite3.Connection, tables: set[str]) -> tuple[object, list[str]]:
    """The capture block as decoded (clean_capture checks it), and a warning if it was unreadable."""
    if META_TABLE not in tables:
        return None, []
    row = con.execute(f"SELECT value FROM {META_TABLE} WHERE key = 'meta'").fetchone()
    try:
        return (jsonio.decode(row[0]) if row else None), []
    except (TypeError, ValueError) as exc:
        return None, [f"capture metadata: ignored the {META_TABLE} table (not a JSON document: {exc})"]
