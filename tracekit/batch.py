"""``tracekit batch TRACES… --out DIR``: explain many traces into two Parquet tables.

For a team that profiles every commit, or every robot of a fleet: thousands of traces, one
``explain`` each, into

    DIR/traces.parquet   one row per trace: its summary, decomposition and verdict, or its Error: line
    DIR/steps.parquet    one row per decode step of every trace (``trace`` names the file)

which ``polars.scan_parquet`` reads lazily (``analyses/batch_overview.py`` is an example).

* **Parallel**: across this machine's cores (``--jobs``, default: all; this process and
  ``jobs - 1`` workers), or across a Ray cluster
  (``--executor ray``: traces in groups, each group a task; the files must be readable by every
  worker, e.g. a shared file system).
* **Streaming**: a worker holds one trace at a time, from reading to its rows; only the rows come
  back. The parent never imports polars until the workers are done (it appends rows to JSON
  lines), so the peak is the workers' own.
* **Resumable**: rows are appended to ``DIR/parts/*.jsonl`` as traces finish (a line per trace,
  flushed); a run skips every trace whose file (path, size, mtime) has a row already, and
  rewrites the two tables from all the parts at the end. A killed batch loses at most the traces
  in flight.
* **A failed trace is a row** (``status = "error"``, ``error`` its one ``Error:`` line, as
  ``tracekit explain`` would print it), never the end of the batch.

    tracekit batch runs/**/*.json.gz --out fleet/       # files, folders and globs
"""

from __future__ import annotations

import glob
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tracekit.contract import ExplainDoc, StepRow
from tracekit.errors import BadInput, BadUsage, TracekitError
from tracekit.fileio import output_path

#: what a folder given as input contributes: the formats tracekit reads
SUFFIXES = (".json", ".json.gz", ".sqlite", ".sqlite.gz")

#: traces.parquet: (column, polars type name); ms are per decode step (medians over steps)
TRACE_COLUMNS = [
    ("trace", "str"), ("bytes", "int"), ("mtime_ns", "int"), ("status", "str"), ("error", "str"),
    ("format", "str"), ("gpu", "str"), ("model", "str"), ("ctx", "int"), ("dtype", "str"),
    ("detection_method", "str"), ("steps", "int"), ("decode_steps", "int"),
    ("latency_ms", "float"), ("gpu_busy_ms", "float"), ("idle_ms", "float"), ("kernels", "int"),
    ("launches", "int"), ("graph_launches", "int"), ("floor_ms", "float"),
    ("kernel_excess_ms", "float"), ("launch_overhead_ms", "float"), ("host_bound_ms", "float"),
    ("launch_latency_ms", "float"), ("sync_ms", "float"), ("other_ms", "float"),
    ("r_floor", "float"), ("cuda_graphs_ms", "float"), ("cuda_graphs_speedup", "float"),
    ("at_floor_speedup", "float"), ("unprofiled_ms", "float"), ("stall_ms", "float"),
    ("verdict", "str"), ("warnings", "strs"), ("seconds", "float"),
]
#: steps.parquet
STEP_COLUMNS = [
    ("trace", "str"), ("step", "int"), ("name", "str"), ("kind", "str"), ("latency_ms", "float"),
    ("span_ms", "float"), ("gpu_busy_ms", "float"), ("idle_ms", "float"),
    ("host_bound_ms", "float"), ("launch_latency_ms", "float"), ("sync_ms", "float"),
    ("other_ms", "float"), ("kernels", "int"), ("memcpys", "int"), ("memsets", "int"),
    ("launches", "int"), ("graph_launches", "int"), ("launch_host_ms", "float"), ("ctx", "int"),
    ("floor_ms", "float"), ("kernel_excess_ms", "float"), ("r_floor", "float"),
]
GAPS = ("host_bound", "launch_latency", "sync", "other")
#: a batch worker (:func:`_worker_main`)
WORKER_COMMAND = [sys.executable, "-m", "tracekit.batch"]


# -- which traces ----------------------------------------------------------------------------------
def find_traces(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for trace files, globs expanded (``**``
    too); each file once, in the order found. An input that names nothing is a BadInput."""
    seen: dict[str, Path] = {}
    for item in inputs:
        s = str(item)
        p = Path(s)
        if p.is_file():
            found = [p]
        elif p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.name.endswith(SUFFIXES)
                           and not f.name.startswith("."))
        elif glob.has_magic(s):
            found = sorted(Path(f) for f in glob.glob(s, recursive=True) if Path(f).is_file())
        else:
            raise BadInput(f"{s} does not exist (give trace files, folders or globs)")
        if not found:
            raise BadInput(f"{s}: no trace files there ({', '.join(SUFFIXES)})")
        for f in found:
            seen.setdefault(str(f.resolve()), f)
    return list(seen.values())


def _stamp(p: Path) -> tuple[str, int, int]:
    st = p.stat()
    return str(p.resolve()), st.st_size, st.st_mtime_ns


# -- one trace (in a worker) -----------------------------------------------------------------------
def analyse(path: str | Path) -> tuple[dict, list[dict]]:
    """The trace's row and its step rows. Never raises for a bad trace: its row says why."""
    from tracekit.explain import explain

    p = Path(path)
    key, size, mtime = _stamp(p)
    row: dict = {"trace": key, "bytes": size, "mtime_ns": mtime, "status": "ok", "error": None}
    t0 = time.perf_counter()
    try:
        doc = explain(p).to_dict()
    except TracekitError as exc:
        row.update(status="error", error=f"Error: {exc}", seconds=time.perf_counter() - t0)
        return row, []
    except (MemoryError, RecursionError) as exc:  # one trace too big for this worker
        row.update(status="error", error=f"Error: {p}: {type(exc).__name__}",
                   seconds=time.perf_counter() - t0)
        return row, []
    row.update(trace_row(doc))
    row["seconds"] = time.perf_counter() - t0
    return row, [step_row(key, s) for s in doc.get("steps") or []]


def trace_row(doc: ExplainDoc) -> dict:
    """The flat columns of one ``explain --json`` document."""
    src, summ = doc.get("source") or {}, doc.get("summary") or {}
    dec, model = doc.get("decomposition") or {}, doc.get("model") or {}
    what, unp, host = doc.get("whatif") or {}, doc.get("unprofiled"), doc.get("host")
    by_class = dec.get("launch_overhead_by_class_ms")
    return {
        "format": src.get("format"), "gpu": (doc.get("gpu") or {}).get("name") or src.get("gpu"),
        "model": model.get("name"), "ctx": model.get("ctx"), "dtype": model.get("dtype"),
        "detection_method": src.get("detection_method"), "steps": src.get("steps_found"),
        "decode_steps": src.get("decode_steps"),
        "latency_ms": summ.get("latency_ms"), "gpu_busy_ms": summ.get("gpu_busy_ms"),
        "idle_ms": summ.get("idle_ms"), "kernels": summ.get("kernels"),
        "launches": summ.get("launches"), "graph_launches": summ.get("graph_launches"),
        "floor_ms": dec.get("floor_ms"), "kernel_excess_ms": dec.get("kernel_excess_ms"),
        "launch_overhead_ms": dec.get("launch_overhead_ms"),
        **{f"{g}_ms": by_class.get(g) if by_class else None for g in GAPS},
        "r_floor": dec.get("r_floor"), "cuda_graphs_ms": what.get("cuda_graphs_ms"),
        "cuda_graphs_speedup": what.get("cuda_graphs_speedup"),
        "at_floor_speedup": what.get("at_floor_speedup"),
        "unprofiled_ms": unp.get("latency_ms") if unp else None,
        "stall_ms": host.get("stall_ms") if host else None,
        "verdict": doc.get("verdict"), "warnings": [str(w) for w in doc.get("warnings") or []],
    }


def step_row(key: str, s: StepRow) -> dict:
    by_class = s.get("idle_by_class_ms") or {}
    row = {c: s.get(c) for c, _ in STEP_COLUMNS if c not in ("trace",)}
    row.update({f"{g}_ms": by_class.get(g) for g in GAPS}, trace=key)
    return row


def _worker_setup() -> None:
    """In a worker: keep numpy's BLAS to one thread (the analysers already fill the cores)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _analyse_group(paths: list[str]) -> list[tuple[dict, list[dict]]]:
    _worker_setup()
    return [analyse(p) for p in paths]


# -- the run ---------------------------------------------------------------------------------------
def _repair(part: Path) -> None:
    """Cut a line a kill left unfinished at the end of a part (the rest of the part is whole)."""
    with open(part, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return
        f.seek(max(0, size - (1 << 20)))
        tail = f.read()
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        f.truncate(size - len(tail) + cut + 1 if cut >= 0 else max(0, size - len(tail)))


def done_keys(out: Path) -> set[tuple[str, int, int]]:
    """(path, size, mtime) of every trace with a row in ``OUT/parts``."""
    keys = set()
    for part in sorted((out / "parts").glob("*.jsonl")):
        _repair(part)
    for part in sorted((out / "parts").glob("traces-*.jsonl")):
        with open(part) as f:
            for line in f:
                try:
                    r = json.loads(line)
                    keys.add((r["trace"], r["bytes"], r["mtime_ns"]))
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by a kill
    return keys


def run_batch(inputs: Iterable[str | Path], out: str | Path, *, jobs: int | None = None,
              executor: str = "local", group: int = 8,
              say: Callable[[str], None] = print) -> dict:
    """Explain every trace not done yet; returns counts and the two tables' paths."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise BadUsage(f"--out {out} is a file; give a folder")
    if jobs is not None and jobs < 1:
        raise BadUsage(f"--jobs must be at least 1, got {jobs}")
    traces = find_traces(inputs)
    (out / "parts").mkdir(parents=True, exist_ok=True)
    done = done_keys(out)
    todo = [p for p in traces if _stamp(p) not in done]
    say(f"{len(traces)} traces: {len(traces) - len(todo)} done before, {len(todo)} to explain")
    n = len(list((out / "parts").glob("traces-*.jsonl")))
    stamp = f"{n:05d}-{os.getpid()}"
    counts = {"traces": len(traces), "done_before": len(traces) - len(todo), "ok": 0, "error": 0}
    with open(out / "parts" / f"steps-{stamp}.jsonl", "a") as fs, \
            open(out / "parts" / f"traces-{stamp}.jsonl", "a") as ft:
        for row, steps in _results(todo, jobs, executor, group):
            for s in steps:  # the steps first: a trace row means its steps are there
                fs.write(json.dumps(s) + "\n")
            fs.flush()
            ft.write(json.dumps(row) + "\n")
            ft.flush()
            counts[row["status"]] += 1
            if row["status"] == "error":
                say(f"{row['trace']}: {row['error']}")
    counts.update(write_tables(out))
    return counts


def _results(paths: list[Path], jobs: int | None, executor: str,
             group: int) -> Iterator[tuple[dict, list[dict]]]:
    if not paths:
        return
    if executor == "ray":
        yield from _ray_results(paths, group)
        return
    if executor != "local":
        raise BadUsage(f"unknown --executor {executor!r}; known: local, ray")
    jobs = min(jobs or os.cpu_count() or 1, len(paths))
    if jobs == 1:
        for p in paths:
            yield analyse(p)
        return
    yield from _parallel(paths, jobs)


def _parallel(paths: list[Path], jobs: int) -> Iterator[tuple[dict, list[dict]]]:
    """``jobs`` analysers: this process and ``jobs - 1`` worker processes.

    A worker is ``python -m tracekit.batch``: trace paths in on its stdin, one JSON line of rows
    out per trace — a fresh interpreter that imports only the analysis, and no multiprocessing
    machinery (its resource-tracker process alone is ~15 MB). This process analyses too, which
    saves a whole process's memory (interpreter, numpy, the reader: ~50 MB at 30 MB traces)
    against a parent that only waits, at the same throughput. A worker that dies (killed, out
    of memory) leaves its trace as an error row; the others and this process go on."""
    import selectors
    import subprocess

    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    todo = iter(paths)
    busy: dict = {}  # worker -> the path it is analysing
    sel = selectors.DefaultSelector()

    def feed(w) -> None:
        p = next(todo, None)
        if p is None:
            w.stdin.close()
            busy.pop(w, None)
        else:
            w.stdin.write(json.dumps(str(p)) + "\n")  # JSON: a newline in a name stays one line
            w.stdin.flush()
            busy[w] = p

    def collect(timeout: float | None) -> Iterator[tuple[dict, list[dict]]]:
        for key, _ in sel.select(timeout):
            w = key.data
            line = w.stdout.readline()
            if line:
                row, steps = json.loads(line)
                yield row, steps
                feed(w)
                continue
            sel.unregister(w.stdout)  # the worker ended: normally (stdin closed) or not
            if w in busy:
                yield _died(busy.pop(w), w.wait())

    workers = [subprocess.Popen(WORKER_COMMAND, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env)
               for _ in range(jobs - 1)]
    try:
        for w in workers:
            assert w.stdout is not None  # started with stdout=PIPE
            sel.register(w.stdout, selectors.EVENT_READ, w)
            feed(w)
        while True:
            yield from collect(0)
            p = next(todo, None)
            if p is None:
                break
            yield analyse(p)
        while busy:
            yield from collect(None)
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
            w.wait()


def _died(path: Path, code: int) -> tuple[dict, list[dict]]:
    key, size, mtime = _stamp(Path(path))
    return ({"trace": key, "bytes": size, "mtime_ns": mtime, "status": "error",
             "error": f"Error: {path}: the worker process analysing it died (exit {code})"}, [])


def _worker_main() -> None:
    """``python -m tracekit.batch``: a batch worker (see :func:`_parallel`)."""
    _worker_setup()
    for line in sys.stdin:
        row, steps = analyse(json.loads(line))
        sys.stdout.write(json.dumps([row, steps]) + "\n")
        sys.stdout.flush()


def _ray_results(paths: list[Path], group: int) -> Iterator[tuple[dict, list[dict]]]:
    from tracekit.executors import require

    ray = require("ray", "ray")
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    task = ray.remote(num_cpus=1, max_retries=1)(_analyse_group)
    names = [str(p.resolve()) for p in paths]
    pending = [task.remote(names[i:i + group]) for i in range(0, len(names), group)]
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        yield from ray.get(ready[0])


def _schema(columns: list[tuple[str, str]]) -> dict:
    import polars as pl

    types = {"str": pl.Utf8, "int": pl.Int64, "float": pl.Float64, "strs": pl.List(pl.Utf8)}
    return {c: types[t] for c, t in columns}


def write_tables(out: Path) -> dict:
    """``traces.parquet`` and ``steps.parquet`` from every part (the newest row of a trace
    wins: a trace changed since an earlier run was explained again), written atomically."""
    import polars as pl

    parts = out / "parts"
    tparts = sorted(parts.glob("traces-*.jsonl"))
    trows = _concat([_scan(p, TRACE_COLUMNS, i) for i, p in enumerate(tparts)], TRACE_COLUMNS)
    srows = _concat([_scan(parts / p.name.replace("traces-", "steps-", 1), STEP_COLUMNS, i)
                     for i, p in enumerate(tparts)], STEP_COLUMNS)
    newest = (trows.group_by("trace").agg(pl.col("_part").max()))
    traces = trows.join(newest, on=["trace", "_part"], how="semi").unique(
        subset=["trace"], keep="last", maintain_order=True)
    steps = srows.join(newest, on=["trace", "_part"], how="semi")
    paths = {}
    for name, lf in (("traces", traces), ("steps", steps)):
        dst = out / f"{name}.parquet"
        with output_path(dst) as tmp:
            lf.drop("_part").sink_parquet(tmp)
        paths[f"{name}_table"] = dst
    return paths


def _scan(path: Path, columns, i: int):
    import polars as pl

    if not path.is_file() or path.stat().st_size == 0:
        return None
    return pl.scan_ndjson(path, schema=_schema(columns), ignore_errors=True).with_columns(
        pl.lit(i, pl.Int64).alias("_part"))


def _concat(frames, columns):
    import polars as pl

    frames = [f for f in frames if f is not None]
    if not frames:
        return pl.LazyFrame(schema={**_schema(columns), "_part": pl.Int64})
    return pl.concat(frames, how="vertical")


__all__ = ["STEP_COLUMNS", "TRACE_COLUMNS", "analyse", "find_traces", "run_batch", "write_tables"]

if __name__ == "__main__":
    _worker_main()
