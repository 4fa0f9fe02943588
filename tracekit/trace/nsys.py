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
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import polars as pl

from tracekit import jsonio
from tracekit.errors import Terminated, TraceFormatError
from tracekit.trace.capture_meta import clean_capture
from tracekit.trace.kineto import is_sync_call, launch_kind
from tracekit.trace.model import (
    ANNOTATIONS_SCHEMA,
    GPU_OPS_SCHEMA,
    LAUNCHES_SCHEMA,
    SYNCS_SCHEMA,
    Trace,
)
from tracekit.trace.source import Source, open_source

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
META_TABLE = "TRACEKIT_CAPTURE"

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
    warnings: list[str] = _unreadable_rows(con, tables)
    gpu_ops = pl.concat([_kernels(con), _memcpys(con, tables), _memsets(con, tables)])
    gpu_ops = gpu_ops.sort("start_ns")
    calls, named = _api_calls(con, tables)
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
        launches=_launches(calls),
        annotations=annotations,
        syncs=_syncs(calls, con, tables),
        meta={
            "format": "nsys",
            "path": str(p),
            "devices": devices,
            "gpu_name": _gpu_name(gpu_ops, devices),
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


def _unreadable_rows(con: sqlite3.Connection, tables: set[str]) -> list[str]:
    """One warning per activity table with rows the reader leaves out (a start or end that is not
    an integer of ns) and per copy table with byte counts it cannot read (not a whole number >= 0
    that fits int64, e.g. 1e30): those rows count as GPU time, their bandwidth is unknown."""
    out = []
    for table in (KERNEL, MEMCPY, MEMSET, *API_TABLES, SYNC_TABLE):
        if table not in tables:
            continue
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


def _int(col: str, bits: int = 64) -> str:
    """SQL for ``col`` when it holds an integer (of ``bits``), else NULL: a TEXT or BLOB where
    an id belongs is unknown, never a crash later."""
    if bits == 64:
        return f"(CASE WHEN typeof({col}) = 'integer' THEN {col} END)"
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return f"(CASE WHEN typeof({col}) = 'integer' AND {col} BETWEEN {lo} AND {hi} THEN {col} END)"


def _timed(alias: str = "") -> str:
    """SQL condition: the row has integer start and end (others are dropped)."""
    a = f"{alias}." if alias else ""
    return f"typeof({a}start) = 'integer' AND typeof({a}end) = 'integer'"


def _strings_join(col: str, alias: str) -> str:
    return f"LEFT JOIN StringIds {alias} ON {alias}.id = {col}"


def _ids(values, bits: int = 64) -> pl.Series:
    """An id column: integers kept, anything else (TEXT, BLOB, out of range) null."""
    col = pl.Series(values, dtype=pl.Int64, strict=False)
    if bits == 32:
        col = col.set(~col.is_between(-(2**31), 2**31 - 1).fill_null(True), None)
        col = col.cast(pl.Int32)
    return col


def _dims(x, y, z) -> pl.Series:
    """``"XxYxZ"`` per row (null where a dimension is unknown)."""
    return pl.DataFrame({"x": _ids(x), "y": _ids(y), "z": _ids(z)}).select(
        pl.concat_str(["x", "y", "z"], separator="x"))["x"]


def _kernels(con: sqlite3.Connection) -> pl.DataFrame:
    cols = _columns(con, KERNEL)
    # demangledName is what Kineto shows; older exports may only have shortName
    name_col = next((c for c in ("demangledName", "shortName", "mangledName") if c in cols), None)
    if name_col is None:
        raise TraceFormatError(f"{KERNEL} has no kernel name column (demangledName/shortName)")
    has_dims = {"gridX", "gridY", "gridZ", "blockX", "blockY", "blockZ"} <= cols
    dims = ", gridX, gridY, gridZ, blockX, blockY, blockZ" if has_dims else ""
    rows = con.execute(
        f"SELECT {name_col}, start, end, deviceId, streamId, correlationId{dims} "
        f"FROM {KERNEL} WHERE {_timed()}"
    ).fetchall()
    if not rows:
        return _frame(GPU_OPS_SCHEMA, [])
    c = list(zip(*rows))
    # each distinct name once, not a join per row
    names = dict(con.execute(
        f"SELECT id, CAST(value AS TEXT) FROM StringIds WHERE id IN "
        f"(SELECT DISTINCT {name_col} FROM {KERNEL})"
    ).fetchall())
    unknown = f"<kernel {name_col} unknown>"
    n = len(rows)
    return pl.DataFrame({
        "kind": pl.repeat("kernel", n, dtype=pl.Utf8, eager=True),
        "name": [names.get(i) or unknown for i in c[0]],
        "start_ns": c[1], "end_ns": c[2],
        "device": _ids(c[3], 32), "stream": _ids(c[4]), "correlation": _ids(c[5]),
        "bytes": pl.Series([None] * n, dtype=pl.Int64),
        "grid": _dims(*c[6:9]) if has_dims else pl.Series([None] * n, dtype=pl.Utf8),
        "block": _dims(*c[9:12]) if has_dims else pl.Series([None] * n, dtype=pl.Utf8),
    }, schema=GPU_OPS_SCHEMA)


def _memcpys(con: sqlite3.Connection, tables: set[str]) -> pl.DataFrame:
    if MEMCPY not in tables:
        return _frame(GPU_OPS_SCHEMA, [])
    cols = _columns(con, MEMCPY)
    src = "srcKind" if "srcKind" in cols else "NULL"
    dst = "dstKind" if "dstKind" in cols else "NULL"
    rows = con.execute(
        f"SELECT start, end, {_int('deviceId', 32)}, {_int('streamId')}, "
        f"{_int('correlationId')}, {_int('bytes')}, copyKind, {src}, {dst} "
        f"FROM {MEMCPY} WHERE {_timed()}"
    ).fetchall()
    return _frame(
        GPU_OPS_SCHEMA,
        [
            ("memcpy", _memcpy_name(kind, sk, dk), s, e, dev, stream, corr, nbytes, None, None)
            for s, e, dev, stream, corr, nbytes, kind, sk, dk in rows
        ],
    )


def _memcpy_name(kind, src, dst) -> str:
    return (
        f"Memcpy {MEMCPY_KINDS.get(kind, 'Unknown')} "
        f"({MEMORY_KINDS.get(src, 'Unknown')} -> {MEMORY_KINDS.get(dst, 'Unknown')})"
    )


def _memsets(con: sqlite3.Connection, tables: set[str]) -> pl.DataFrame:
    if MEMSET not in tables:
        return _frame(GPU_OPS_SCHEMA, [])
    mem = "memKind" if "memKind" in _columns(con, MEMSET) else "NULL"
    rows = con.execute(
        f"SELECT start, end, {_int('deviceId', 32)}, {_int('streamId')}, "
        f"{_int('correlationId')}, {_int('bytes')}, {mem} FROM {MEMSET} WHERE {_timed()}"
    ).fetchall()
    return _frame(
        GPU_OPS_SCHEMA,
        [
            (
                "memset",
                f"Memset ({MEMORY_KINDS.get(mk, 'Unknown')})",
                s,
                e,
                dev,
                stream,
                corr,
                nbytes,
                None,
                None,
            )
            for s, e, dev, stream, corr, nbytes, mk in rows
        ],
    )


_API_COLUMNS = {"name": pl.Utf8, "start_ns": pl.Int64, "end_ns": pl.Int64, "tid": pl.Int64,
                "correlation": pl.Int64, "kind": pl.Utf8, "api": pl.Utf8, "sync": pl.Boolean}


def _api_calls(con: sqlite3.Connection, tables: set[str]) -> tuple[pl.DataFrame, int]:
    """The CUDA API calls that launch work or wait for the device, in start order, and how many
    named API calls there are in all.

    The few hundred distinct API names are classified once (``api_name``, ``launch_kind``,
    ``is_sync_call``); SQL then returns only the rows of the names that matter, as columns."""
    frames, named = [], 0
    for table in API_TABLES:
        if table not in tables:
            continue
        names: dict[int, tuple] = {}
        for nid, name, n in con.execute(
            f"SELECT a.nameId, CAST(s.value AS TEXT), count(*) FROM {table} a "
            f"{_strings_join('a.nameId', 's')} WHERE {_timed('a')} GROUP BY a.nameId"
        ):
            if not name:
                continue
            named += n
            clean = api_name(name)
            kind, sync = launch_kind(clean), is_sync_call(clean)
            if (kind is not None or sync) and type(nid) is int:
                api = "runtime" if clean.startswith("cuda") else "driver"
                names[nid] = (clean, kind, api, sync)
        if not names:
            continue
        rows = con.execute(
            f"SELECT a.nameId, a.start, a.end, {_int('a.globalTid')}, {_int('a.correlationId')} "
            f"FROM {table} a WHERE {_timed('a')} AND a.nameId IN "
            f"({', '.join(str(i) for i in names)})"
        ).fetchall()
        if not rows:
            continue
        nid, start, end, gtid, corr = zip(*rows)
        info = [names[i] for i in nid]
        frames.append(pl.DataFrame({
            "name": [x[0] for x in info], "start_ns": start, "end_ns": end,
            "tid": [None if g is None else g & _TID_MASK for g in gtid], "correlation": corr,
            "kind": [x[1] for x in info], "api": [x[2] for x in info],
            "sync": [x[3] for x in info],
        }, schema=_API_COLUMNS))
    calls = pl.concat(frames) if frames else pl.DataFrame(schema=_API_COLUMNS)
    # a stable sort: equal starts keep table order, runtime before driver (as the rows came)
    return _one_row_per_call(calls.sort("start_ns", maintain_order=True)), named


def _one_row_per_call(calls: pl.DataFrame) -> pl.DataFrame:
    """One row per API call. Some exports record a call twice, the same correlation id on the
    same thread, one row nested in the other (Nsight Systems 2022.2 with CUDA backtraces: an
    outer ``cudaLaunchKernel`` row, eventClass 67, around CUPTI's ``cudaLaunchKernel_v7000``):
    the innermost row (the later start) is kept, so a launch is counted once."""
    key = ["correlation", "tid", "name"]
    keyed = calls.with_row_index("_row")
    last = keyed.filter(pl.col("correlation").is_not_null()).group_by(key).agg(pl.col("_row").max())
    if last.height == keyed.filter(pl.col("correlation").is_not_null()).height:
        return calls  # no call recorded twice (the usual case)
    keep = pl.col("correlation").is_null() | pl.col("_row").is_in(last["_row"].implode())
    return keyed.filter(keep).drop("_row")


def _tid(global_tid) -> int | None:
    return None if global_tid is None else int(global_tid) & _TID_MASK


def _launches(calls: pl.DataFrame) -> pl.DataFrame:
    return calls.filter(pl.col("kind").is_not_null()).select(list(LAUNCHES_SCHEMA))


def _syncs(calls: pl.DataFrame, con: sqlite3.Connection, tables: set[str]) -> pl.DataFrame:
    api = calls.filter(pl.col("sync")).select(list(SYNCS_SCHEMA))
    out = []
    if SYNC_TABLE in tables:
        cols = _columns(con, SYNC_TABLE)
        kind = "syncType" if "syncType" in cols else "NULL"
        tid = "globalTid" if "globalTid" in cols else "NULL"
        tid = _int(tid) if tid != "NULL" else tid
        for s, e, k, gtid in con.execute(
            f"SELECT start, end, {kind}, {tid} FROM {SYNC_TABLE} WHERE {_timed()}"
        ):
            out.append((SYNC_KINDS.get(k, "Sync"), s, e, _tid(gtid)))
    if not out:
        return api
    both = pl.concat([api, _frame(SYNCS_SCHEMA, out)])
    return both.sort("start_ns", maintain_order=True)


def _nvtx(con: sqlite3.Connection, tables: set[str]) -> pl.DataFrame:
    if NVTX not in tables:
        return _frame(ANNOTATIONS_SCHEMA, [])
    cols = _columns(con, NVTX)
    text = ("CAST(COALESCE(n.text, s.value) AS TEXT)" if "textId" in cols
            else "CAST(n.text AS TEXT)")
    join = _strings_join("n.textId", "s") if "textId" in cols else ""
    types = (
        f"AND (n.eventType IS NULL OR n.eventType NOT IN {_NVTX_NOT_RANGES})"
        if "eventType" in cols
        else ""
    )
    rows = con.execute(
        f"SELECT {text}, n.start, n.end, {_int('n.globalTid')} FROM {NVTX} n {join} "
        f"WHERE {_timed('n')} AND n.end >= n.start {types} ORDER BY n.start"
    ).fetchall()
    return _frame(
        ANNOTATIONS_SCHEMA,
        [(name, s, e, False, _tid(gtid)) for name, s, e, gtid in rows if name is not None],
    )


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


def _gpu_name(gpu_ops: pl.DataFrame, devices: dict[int, dict]) -> str | None:
    """The device that ran most GPU ops (as the Kineto reader decides it)."""
    if not devices:
        return None
    if gpu_ops.height:
        busiest = gpu_ops.group_by("device").len().sort("len", descending=True)["device"][0]
        if busiest in devices:
            return devices[busiest]["name"]
    return next(iter(devices.values()))["name"]


def _capture_meta(con: sqlite3.Connection, tables: set[str]) -> tuple[object, list[str]]:
    """The capture block as decoded (clean_capture checks it), and a warning if it was unreadable."""
    if META_TABLE not in tables:
        return None, []
    row = con.execute(f"SELECT value FROM {META_TABLE} WHERE key = 'meta'").fetchone()
    try:
        return (jsonio.decode(row[0]) if row else None), []
    except (TypeError, ValueError) as exc:
        return None, [f"capture metadata: ignored the {META_TABLE} table (not a JSON document: {exc})"]


def _frame(schema: dict, rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema, orient="row")
