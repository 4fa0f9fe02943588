"""The Nsight Systems SQLite reader, on a tiny export built inline whose arithmetic is known.

The synthetic export has the tables and columns ``nsys export --type sqlite`` writes (2025.x),
holding two decode steps: an eager one (runtime and driver launches, an async copy) and a graph
one (one ``cudaGraphLaunch`` whose three kernels share its correlation id), then a blocking copy.
"""

from __future__ import annotations

import gzip
import sqlite3
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers import GTID, PID, STRINGS, T0, TID, build_export
from hypothesis import given
from hypothesis import strategies as st

from tracekit.errors import TraceFormatError
from tracekit.trace import nsys
from tracekit.trace.nsys import api_name, load_nsys


@pytest.fixture
def export(tmp_path: Path) -> Path:
    return build_export(
        tmp_path / "report.sqlite",
        meta={"ctx": 2048, "mode": "eager", "versions": {"torch": "2.11.0"}},
    )


def test_gpu_ops_exact(export: Path) -> None:
    t = load_nsys(export)
    ops = t.gpu_ops
    assert ops["kind"].value_counts().sort("kind").rows() == [
        ("kernel", 5),
        ("memcpy", 2),
        ("memset", 1),
    ]
    assert ops["start_ns"].to_list() == sorted(ops["start_ns"].to_list())
    first = ops.row(0, named=True)
    assert first == {
        "kind": "kernel",
        "name": STRINGS[1],
        "start_ns": T0 + 105,
        "end_ns": T0 + 111,
        "device": 0,
        "stream": 7,
        "correlation": 1,
        "bytes": None,
        "grid": "2x1x1",
        "block": "128x1x1",
    }
    copies = ops.filter(pl.col("kind") == "memcpy")
    assert copies["name"].to_list() == [
        "Memcpy DtoD (Device -> Device)",
        "Memcpy DtoH (Device -> Pageable)",
    ]
    assert copies["bytes"].to_list() == [4096, 2]
    assert ops.filter(pl.col("kind") == "memset")["name"].to_list() == ["Memset (Device)"]
    # the graph launch's three kernels share its correlation id and do not overlap
    graph = ops.filter(pl.col("correlation") == 5)
    assert (graph["end_ns"] - graph["start_ns"]).sum() == 8 + 9 + 4


def test_launches_and_syncs(export: Path) -> None:
    t = load_nsys(export)
    assert t.launches.select("kind", "api", "name", "correlation").rows() == [
        ("kernel", "runtime", "cudaLaunchKernel", 1),
        ("kernel", "driver", "cuLaunchKernel", 2),
        ("memcpy", "runtime", "cudaMemcpyAsync", 3),
        ("graph", "runtime", "cudaGraphLaunch", 5),
        ("memset", "runtime", "cudaMemsetAsync", 6),
        ("memcpy", "runtime", "cudaMemcpy", 8),
    ]
    assert set(t.launches["tid"].to_list()) == {TID}
    assert t.syncs.select("name", "start_ns", "end_ns").rows() == [
        ("cudaStreamSynchronize", T0 + 1020, T0 + 1900),
        ("cudaMemcpy", T0 + 1950, T0 + 2000),
    ]


def test_nvtx_ranges_become_annotations(export: Path) -> None:
    ann = load_nsys(export).annotations
    assert ann["name"].to_list() == ["tracekit.profile", "tracekit.step#0", "tracekit.step#1"]
    assert ann["on_gpu"].to_list() == [False] * 3
    assert ann["tid"].to_list() == [TID] * 3
    assert ann.row(2) == ("tracekit.step#1", T0 + 995, T0 + 1940, False, TID)


def test_kernels_per_step_through_correlation(export: Path) -> None:
    """tracekit's own step assignment on the export: the launch inside a step range owns its ops,
    and a graph launch owns every kernel it replays. Known by construction (build_export): step 0
    launched kernels 1 and 2; step 1 one graph of three kernels and a memset."""
    from tracekit.steps import detect_steps

    steps = detect_steps(load_nsys(export))
    assert steps.method == "tracekit"
    names = dict(steps.table.select("step", "name").iter_rows())
    per_step = steps.ops.filter(pl.col("step").is_not_null()).group_by("step").agg(
        (pl.col("kind") == "kernel").sum().alias("kernels"),
        (pl.col("kind") == "memset").sum().alias("memsets")).sort("step")
    assert [(names[s], k, m) for s, k, m in per_step.iter_rows()] == [
        ("tracekit.step#0", 2, 0), ("tracekit.step#1", 3, 1)]


def test_meta(export: Path) -> None:
    t = load_nsys(export)
    assert t.meta["format"] == "nsys"
    assert t.meta["gpu_name"] == "NVIDIA H100 80GB HBM3"
    assert t.meta["devices"][0]["sm_count"] == 132
    assert t.meta["devices"][0]["cc"] == "9.0"
    assert t.meta["tracekit"]["ctx"] == 2048
    assert t.meta["versions"] == {"torch": "2.11.0"}
    assert t.capture == t.meta["tracekit"]


def test_gzipped_export_reads_the_same(export: Path, tmp_path: Path) -> None:
    gz = tmp_path / "report.sqlite.gz"
    gz.write_bytes(gzip.compress(export.read_bytes()))
    a, b = load_nsys(export), load_nsys(gz)
    assert a.gpu_ops.equals(b.gpu_ops) and a.launches.equals(b.launches)
    assert a.annotations.equals(b.annotations) and a.syncs.equals(b.syncs)
    assert not list(Path(tmp_path).glob("tracekit-nsys-*"))


def test_load_dispatches_sqlite(export: Path, tmp_path: Path) -> None:
    from tracekit.trace import load

    gz = tmp_path / "r.sqlite.gz"
    gz.write_bytes(gzip.compress(export.read_bytes()))
    assert load(export).meta["format"] == "nsys"
    assert load(gz).gpu_ops.height == 8


def test_gzip_bound(export: Path, tmp_path: Path) -> None:
    gz = tmp_path / "big.sqlite.gz"
    gz.write_bytes(gzip.compress(export.read_bytes()))
    with pytest.raises(TraceFormatError, match="inflates to more than"):
        load_nsys(gz, limit=4096)


def test_not_sqlite(tmp_path: Path) -> None:
    bad = tmp_path / "x.sqlite"
    bad.write_text('{"traceEvents": []}')
    with pytest.raises(TraceFormatError, match="not an SQLite database"):
        load_nsys(bad)
    trunc = tmp_path / "x.sqlite.gz"
    trunc.write_bytes(gzip.compress(b"SQLite format 3\x00" + b"\x00" * 5000)[:40])
    with pytest.raises(TraceFormatError, match="corrupt or truncated"):
        load_nsys(trunc)


def test_sqlite_without_kernels(tmp_path: Path) -> None:
    db = tmp_path / "other.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE StringIds (id INTEGER, value TEXT)")
    con.commit()
    con.close()
    with pytest.raises(TraceFormatError, match="no CUPTI_ACTIVITY_KIND_KERNEL table"):
        load_nsys(db)


def test_missing_optional_tables_warn(tmp_path: Path) -> None:
    db = build_export(tmp_path / "r.sqlite")
    con = sqlite3.connect(db)
    con.executescript(
        "DROP TABLE CUPTI_ACTIVITY_KIND_RUNTIME; DROP TABLE NVTX_EVENTS; "
        "DROP TABLE CUPTI_ACTIVITY_KIND_MEMCPY;"
    )
    con.close()
    t = load_nsys(db)
    assert t.gpu_ops.height == 6 and t.launches.height == 0 and t.annotations.height == 0
    assert any("NVTX_EVENTS" in w for w in t.warnings)
    assert t.meta["tracekit"] is None


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("cudaLaunchKernel_v7000", "cudaLaunchKernel"),
        ("cudaLaunchKernel_ptsz_v7000", "cudaLaunchKernel"),
        ("cudaGraphLaunch_v10000", "cudaGraphLaunch"),
        ("cuMemcpyHtoDAsync_v2", "cuMemcpyHtoDAsync"),
        ("cuLaunchKernelEx", "cuLaunchKernelEx"),
    ],
)
def test_api_name(raw: str, clean: str) -> None:
    assert api_name(raw) == clean


def test_a_call_recorded_twice_counts_once(export: Path) -> None:
    """Nsight Systems 2022.2 with CUDA backtraces writes some launches twice: an outer row
    (eventClass 67) around CUPTI's own, same correlation id and thread. The inner row (the later
    start) is the call; a call recorded once, or another thread's call with the same id, stays."""
    con = sqlite3.connect(export)
    con.executemany(
        "INSERT INTO CUPTI_ACTIVITY_KIND_RUNTIME VALUES (?, ?, 67, ?, ?, ?, 0, NULL)",
        [(T0 + 99, T0 + 105, GTID, 1, 10),  # around (T0 + 100, T0 + 104), correlation 1
         (T0 + 99, T0 + 105, (PID << 24) | 99, 1, 10)],  # another thread: a call of its own
    )
    con.commit()
    con.close()
    launches = load_nsys(export).launches
    assert launches.filter(pl.col("correlation") == 1).select("start_ns", "tid").rows() == [
        (T0 + 99, 99), (T0 + 100, TID)]
    assert launches.height == 7


def test_ids_that_are_not_integers_are_null(export: Path) -> None:
    """An id column keeps integers (a device id must fit Int32) and reads anything else — TEXT,
    REAL, an out-of-range device — as null, row by row; the other rows keep theirs."""
    con = sqlite3.connect(export)
    con.execute("UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET streamId = 'seven', deviceId = ?, "
                "correlationId = 2.5 WHERE start = ?", (1 << 40, T0 + 117))
    con.execute("UPDATE CUPTI_ACTIVITY_KIND_RUNTIME SET globalTid = x'00' WHERE start = ?",
                (T0 + 100,))
    con.commit()
    con.close()
    t = load_nsys(export)
    ops = t.gpu_ops.filter(pl.col("kind") == "kernel").sort("start_ns")
    assert ops.select("device", "stream", "correlation").rows() == [
        (0, 7, 1), (None, None, None), (0, 7, 5), (0, 7, 5), (0, 7, 5)]
    assert t.launches.select("correlation", "tid").rows()[:2] == [(1, None), (2, TID)]


def test_rows_left_out_are_counted_per_table(export: Path) -> None:
    """Rows whose start or end is not an integer are left out and counted per table, one
    warning each in table order; ``meta["events"]`` counts the rows read plus the named API
    calls, against a count made here in plain SQL (``typeof``, a join to ``StringIds``)."""
    con = sqlite3.connect(export)
    con.execute("UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET start = 'soon' WHERE rowid IN (1, 3)")
    con.execute("UPDATE CUPTI_ACTIVITY_KIND_RUNTIME SET end = 2.5 WHERE rowid = 2")
    con.execute("UPDATE CUPTI_ACTIVITY_KIND_RUNTIME SET nameId = 99999 WHERE rowid = 3")  # no name
    con.commit()
    timed = "typeof(start) = 'integer' AND typeof(end) = 'integer'"
    ops = sum(con.execute(f"SELECT count(*) FROM {t} WHERE {timed}").fetchone()[0] for t in (
        "CUPTI_ACTIVITY_KIND_KERNEL", "CUPTI_ACTIVITY_KIND_MEMCPY", "CUPTI_ACTIVITY_KIND_MEMSET"))
    named = sum(con.execute(
        f"SELECT count(*) FROM {t} a JOIN StringIds s ON s.id = a.nameId "
        f"WHERE typeof(a.start) = 'integer' AND typeof(a.end) = 'integer' AND s.value != ''"
    ).fetchone()[0] for t in ("CUPTI_ACTIVITY_KIND_RUNTIME",))
    con.close()
    t = load_nsys(export)
    left_out = [w for w in t.warnings if "not an integer" in w]
    assert left_out == [
        "2 row(s) of CUPTI_ACTIVITY_KIND_KERNEL have a start or end that is not an integer (ns); "
        "left out",
        "1 row(s) of CUPTI_ACTIVITY_KIND_RUNTIME have a start or end that is not an integer (ns); "
        "left out"]
    assert t.gpu_ops.height == ops
    assert t.meta["events"] == ops + named + t.annotations.height


@given(st.lists(st.tuples(st.integers(-3, 40), st.one_of(st.none(), st.integers(0, 9),
                                                         st.floats(0, 9), st.text(max_size=2))),
                max_size=30))
def test_rows_read_as_arrays_or_as_values_give_the_same_columns(rows) -> None:
    """Rows of integers take numpy's path (one array for the table, distinct keys by
    ``np.unique``); rows with anything else keep the values as SQL gave them. Both paths give
    the same integer columns, nulls and string codes (labels in order of first appearance)."""
    def label(k):
        return None if type(k) is not int or k % 5 == 0 else f"name{k % 7}"
    ints_only = [(a, b) for a, b in rows if type(b) is int]
    for table in (rows, ints_only):
        fast, plain = nsys._column_arrays(table), list(zip(*table))
        for f, p in zip(fast, plain):
            (fv, fm), (pv, pm) = nsys._ints(f), nsys._ints(p)
            assert np.array_equal(fv, pv) and (fm is None) == (pm is None)
            assert fm is None or np.array_equal(fm, pm)
            fs, ps = nsys._strings(f, label), nsys._strings(p, label)
            assert fs.values == ps.values and np.array_equal(fs.codes, ps.codes)
