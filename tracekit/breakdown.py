"""Per-step metrics: latency, GPU busy, idle gaps by class, kernel and launch counts.

For decode step *i* with first GPU op starting at ``start_i``::

    latency_i  = start_{i+1} - start_i           (the steady-state period; null for the last step)
    gpu_busy_i = |union of the step's GPU op intervals|   (never a sum: streams overlap)
    idle_i     = latency_i - gpu_busy_i, gap by gap:

    GPU  ██████░░░░░░░████░░██████████░░░░░░░░░░░░░░░░███
              ^gap 1       ^gap 2     ^gap 3 (tail, up to the next step's first op)

Each gap is classified by the op that ends it (the op the GPU was waiting for):

``sync``            the host had been blocked on the device and was released inside the gap (a
                    synchronize call or blocking copy ends in it, or the previous op was a
                    device→host copy): the GPU drained its queue and waits for the round trip;
``host_bound``      the op's launch call had not ended when the previous op finished: the GPU waited
                    for the CPU (for a graph replay: the graph launch had not begun);
``launch_latency``  the op was already queued; the gap is the device's own inter-kernel latency;
``other``           no launch record to tell (e.g. the launch lies outside the profiled window).

    >>> table = step_table(trace, steps)   # doctest: +SKIP
"""

from __future__ import annotations

from enum import Enum

import numpy as np
import polars as pl

from tracekit.specs.kernels import categorize
from tracekit.steps import Steps
from tracekit.trace.model import Trace


class GapClass(str, Enum):
    HOST_BOUND = "host_bound"
    LAUNCH_LATENCY = "launch_latency"
    SYNC = "sync"
    OTHER = "other"


GAP_CLASSES = [g.value for g in GapClass]

STEP_COLUMNS = [
    "step", "name", "kind", "start_ns", "latency_ns", "span_ns", "gpu_busy_ns", "idle_ns",
    *[f"idle_{g}_ns" for g in GAP_CLASSES],
    "kernels", "memcpys", "memsets", "launches", "graph_launches", "launch_host_ns", "cpu_ns",
]


def step_table(trace: Trace, steps: Steps) -> pl.DataFrame:
    """One row per detected step (all kinds; filter ``kind == 'decode'`` for the summary)."""
    syncs = _sync_intervals(trace)
    launch_counts = _launch_counts(trace, steps)
    rows = []
    table = steps.table.sort("step")
    ops = steps.ops.filter(pl.col("step").is_not_null())
    by_step = {k[0]: g.sort("start_ns") for k, g in ops.group_by("step")} if ops.height else {}
    starts = {s: int(g["start_ns"].min()) for s, g in by_step.items()}
    step_ids = table["step"].to_list()
    for i, rec in enumerate(table.iter_rows(named=True)):
        s = rec["step"]
        g = by_step.get(s)
        nxt = _next_with_ops(step_ids, i, starts)
        row = {
            "step": s, "name": rec["name"], "kind": rec["kind"],
            "cpu_ns": rec["cpu_end_ns"] - rec["cpu_start_ns"],
            **launch_counts.get(s, {"launches": 0, "graph_launches": 0, "launch_host_ns": 0}),
        }
        if g is None:
            row.update(_host_only(rec, table, i))
        else:
            nxt_op = by_step[nxt].row(0, named=True) if nxt is not None else None
            row.update(_gpu_metrics(g, nxt_op, syncs))
        rows.append(row)
    schema = {c: pl.Int64 for c in STEP_COLUMNS}
    schema.update(name=pl.Utf8, kind=pl.Utf8)
    return pl.DataFrame(rows, schema=schema).select(STEP_COLUMNS)


def step_gaps(trace: Trace, steps: Steps, step: int) -> dict:
    """One step's GPU ops and classified idle gaps, times in ns from the step's start."""
    ops = steps.ops.filter(pl.col("step").is_not_null())
    g = ops.filter(pl.col("step") == step).sort("start_ns")
    if g.height == 0:
        return {}
    ids = steps.table.sort("step")["step"].to_list()
    i = ids.index(step)
    nxt = ops.filter(pl.col("step") == ids[i + 1]).sort("start_ns") if i + 1 < len(ids) else None
    nxt_op = nxt.row(0, named=True) if nxt is not None and nxt.height else None
    gaps: list = []
    metrics = _gpu_metrics(g, nxt_op, _sync_intervals(trace), gaps)
    t0 = metrics["start_ns"]
    names = g.select("name", "kind").unique()
    cats = {(n, k): categorize(n, k).value for n, k in names.iter_rows()}
    return {
        "step": step,
        "t0_ns": t0,  # on the trace's clock; ops and gaps below are relative to it
        "latency_ns": metrics["latency_ns"],
        "ops": [{"start_ns": r["start_ns"] - t0, "end_ns": r["end_ns"] - t0, "name": r["name"],
                 "category": cats[(r["name"], r["kind"])], "stream": r["stream"]}
                for r in g.iter_rows(named=True)],
        "gaps": [{"start_ns": a - t0, "end_ns": b - t0, "class": c, "ended_by": op}
                 for a, b, c, op in gaps],
    }


GAPS_SCHEMA = {"step": pl.Int64, "start_ns": pl.Int64, "end_ns": pl.Int64, "class": pl.Utf8}


def gap_table(trace: Trace, steps: Steps, *, kinds: tuple[str, ...] = ("decode",)) -> pl.DataFrame:
    """Every classified idle gap of the steps of ``kinds``, absolute ns (the same gaps, cut the
    same way, as :func:`step_table` sums). The op that ends a gap starts at its ``end_ns``."""
    syncs = _sync_intervals(trace)
    table = steps.table.sort("step")
    ops = steps.ops.filter(pl.col("step").is_not_null())
    by_step = {k[0]: g.sort("start_ns") for k, g in ops.group_by("step")} if ops.height else {}
    starts = {s: 0 for s in by_step}
    step_ids = table["step"].to_list()
    rows: list[tuple] = []
    for i, (s, kind) in enumerate(zip(step_ids, table["kind"].to_list())):
        if kind not in kinds or s not in by_step:
            continue
        nxt = _next_with_ops(step_ids, i, starts)
        nxt_op = by_step[nxt].row(0, named=True) if nxt is not None else None
        gaps: list = []
        _gpu_metrics(by_step[s], nxt_op, syncs, gaps)
        rows.extend((s, a, b, c) for a, b, c, *_ in gaps)
    return pl.DataFrame(rows, schema=GAPS_SCHEMA, orient="row")


def _next_with_ops(step_ids: list[int], i: int, starts: dict[int, int]) -> int | None:
    """The next step, if it ran GPU work (its first op ends this step's window)."""
    if i + 1 < len(step_ids) and step_ids[i + 1] in starts:
        return step_ids[i + 1]
    return None


def _host_only(rec: dict, table: pl.DataFrame, i: int) -> dict:
    """A step with no GPU op (CPU-only traces): host-side period only."""
    nxt = table["cpu_start_ns"][i + 1] if i + 1 < table.height else None
    return {
        "start_ns": rec["cpu_start_ns"],
        "latency_ns": (nxt - rec["cpu_start_ns"]) if nxt is not None else None,
        "span_ns": rec["cpu_end_ns"] - rec["cpu_start_ns"],
        "gpu_busy_ns": None, "idle_ns": None, **{f"idle_{c}_ns": None for c in GAP_CLASSES},
        "kernels": 0, "memcpys": 0, "memsets": 0,
    }


def _gpu_metrics(g: pl.DataFrame, nxt_op: dict | None, syncs: np.ndarray,
                 gaps_out: list | None = None) -> dict:
    end = g["end_ns"].to_numpy()
    t0 = int(g["start_ns"][0])
    window_end = int(nxt_op["start_ns"]) if nxt_op is not None else int(end.max())
    # ops of this step that start after the next step's first op (other streams, overlapping
    # steps) count up to the window's end only: idle can never exceed the step's span
    start = np.minimum(g["start_ns"].to_numpy(), window_end)
    run_end = np.maximum.accumulate(np.minimum(end, window_end))
    # a gap ends at op j (j >= 1) when it starts after everything before it has finished; the
    # tail gap ends at the next step's first op
    j = np.nonzero(start[1:] > run_end[:-1])[0] + 1
    gap_start, gap_end = run_end[j - 1], start[j]
    nxt = _gap_enders(g, j)
    prev_dtoh = _is_dtoh(g, j - 1)
    tail = nxt_op is not None and window_end > run_end[-1]
    if tail:
        gap_start = np.append(gap_start, run_end[-1])
        gap_end = np.append(gap_end, window_end)
        last = g.row(g.height - 1, named=True)
        nxt = {k: np.append(v, _op_value(k, nxt_op, last)) for k, v in nxt.items()}
        prev_dtoh = np.append(prev_dtoh, _is_dtoh(g, np.array([g.height - 1])))
    classes = classify_gaps(gap_start, gap_end, syncs=syncs, prev_dtoh=prev_dtoh, **nxt)
    lengths = gap_end - gap_start
    idle = {c: int(lengths[classes == c].sum()) for c in GAP_CLASSES}
    if gaps_out is not None:
        enders = g["name"].to_numpy()[j].tolist() + ([nxt_op.get("name")] if tail else [])
        gaps_out.extend(zip(gap_start.tolist(), gap_end.tolist(), classes.tolist(), enders))
    idle_total = sum(idle.values())
    span = window_end - t0
    kinds = g["kind"]
    return {
        "start_ns": t0,
        "latency_ns": span if nxt_op is not None else None,
        "span_ns": span,
        "gpu_busy_ns": span - idle_total,
        "idle_ns": idle_total,
        **{f"idle_{c}_ns": v for c, v in idle.items()},
        "kernels": int((kinds == "kernel").sum()),
        "memcpys": int((kinds == "memcpy").sum()),
        "memsets": int((kinds == "memset").sum()),
    }


_NO_LAUNCH = -1  # launch times are absolute ns on a positive clock; -1 marks "no launch record"


def _gap_enders(g: pl.DataFrame, j: np.ndarray) -> dict[str, np.ndarray]:
    """What the classifier needs of the op that ends each gap (at row j; its predecessor j-1)."""
    corr = g["correlation"].fill_null(-1).to_numpy()
    return {
        "launch_start": g["launch_start_ns"].fill_null(_NO_LAUNCH).to_numpy()[j],
        "launch_end": g["launch_end_ns"].fill_null(_NO_LAUNCH).to_numpy()[j],
        "is_graph": (g["launch_kind"] == "graph").fill_null(False).to_numpy()[j],
        "first_of_graph": corr[j] != corr[j - 1],
    }


def _op_value(key: str, op: dict, prev: dict):
    if key == "first_of_graph":
        return op.get("correlation") != prev.get("correlation")
    if key == "is_graph":
        return op.get("launch_kind") == "graph"
    v = op.get("launch_start_ns" if key == "launch_start" else "launch_end_ns")
    return _NO_LAUNCH if v is None else v


def _is_dtoh(g: pl.DataFrame, rows: np.ndarray) -> np.ndarray:
    dtoh = ((g["kind"] == "memcpy") & g["name"].str.contains("DtoH")).fill_null(False).to_numpy()
    return dtoh[rows]


def classify_gaps(gap_start: np.ndarray, gap_end: np.ndarray, *, syncs: np.ndarray,
                  prev_dtoh: np.ndarray, launch_start: np.ndarray, launch_end: np.ndarray,
                  is_graph: np.ndarray, first_of_graph: np.ndarray) -> np.ndarray:
    """The class of each gap (see the module docstring), first matching rule wins."""
    if syncs.size:
        # The host was released inside the gap: it had waited for the device to drain, so the
        # GPU idles for the round trip. (A wait that spans the whole gap proves work was queued.)
        ends = np.sort(syncs[:, 1])
        released = (np.searchsorted(ends, gap_end, side="right")
                    - np.searchsorted(ends, gap_start, side="left")) > 0
    else:
        released = np.zeros(gap_start.shape, dtype=bool)
    no_launch = launch_start == _NO_LAUNCH
    # Kernels of one graph replay are queued by a single call; only the first can wait on the host.
    graph_host = is_graph & first_of_graph & (launch_start >= gap_start)
    return np.select(
        [released | prev_dtoh, no_launch, is_graph & graph_host, is_graph,
         launch_end > gap_start],
        [GapClass.SYNC.value, GapClass.OTHER.value, GapClass.HOST_BOUND.value,
         GapClass.LAUNCH_LATENCY.value, GapClass.HOST_BOUND.value],
        default=GapClass.LAUNCH_LATENCY.value,
    )


def _sync_intervals(trace: Trace) -> np.ndarray:
    s = trace.syncs.sort("start_ns")
    if s.height == 0:
        return np.empty((0, 2), dtype=np.int64)
    return np.stack([s["start_ns"].to_numpy(), s["end_ns"].to_numpy()], axis=1)


def _launch_counts(trace: Trace, steps: Steps) -> dict[int, dict]:
    """Launch calls (runtime + driver + graph) that started inside each step's CPU range."""
    if trace.launches.height == 0:
        return {}
    ranges = steps.table.select("step", "cpu_start_ns", "cpu_end_ns").sort("cpu_start_ns")
    calls = trace.launches.sort("start_ns").join_asof(
        ranges, left_on="start_ns", right_on="cpu_start_ns", strategy="backward"
    ).filter(pl.col("step").is_not_null() & (pl.col("start_ns") < pl.col("cpu_end_ns")))
    agg = calls.group_by("step").agg(
        pl.len().alias("launches"),
        (pl.col("kind") == "graph").sum().alias("graph_launches"),
        (pl.col("end_ns") - pl.col("start_ns")).sum().alias("launch_host_ns"),
    )
    return {r["step"]: {k: int(r[k]) for k in ("launches", "graph_launches", "launch_host_ns")}
            for r in agg.iter_rows(named=True)}


def _decode_ops_with_category(steps: Steps) -> tuple[pl.DataFrame, int]:
    decode = steps.decode["step"]
    ops = steps.ops.filter(pl.col("step").is_in(decode.implode()))
    if ops.height:
        names = ops.select("name", "kind").unique()
        names = names.with_columns(pl.Series(
            "category", [categorize(n, k).value for n, k in names.iter_rows()], dtype=pl.Utf8))
        ops = ops.join(names, on=["name", "kind"], how="left")
    return ops, max(decode.len(), 1)


def kernel_categories(steps: Steps) -> pl.DataFrame:
    """Time, count and recorded bytes per kernel category, per decode step.

    Time here is the sum of op durations (overlapping ops count twice; GPU busy counts the union).
    ``bytes_per_step`` are the bytes the trace records (copies and memsets only; null when none),
    ``trace_gbps`` their rate over the ops that carry them, and ``ops_with_bytes_per_step`` how
    many of the category's ops carry a byte count (copy *kernels* do not: bytes then cover only
    part of the category, and the reports say so).
    """
    ops, n_steps = _decode_ops_with_category(steps)
    if ops.height == 0:
        return pl.DataFrame(schema={"category": pl.Utf8, "ms_per_step": pl.Float64,
                                    "share": pl.Float64, "ops_per_step": pl.Float64,
                                    "bytes_per_step": pl.Float64, "trace_gbps": pl.Float64,
                                    "ops_with_bytes_per_step": pl.Float64})
    dur = pl.col("end_ns") - pl.col("start_ns")
    known = pl.col("bytes").is_not_null()
    agg = ops.group_by("category").agg(
        (dur.sum() / n_steps / 1e6).alias("ms_per_step"),
        (pl.len() / n_steps).alias("ops_per_step"),
        pl.when(known.any()).then(pl.col("bytes").sum() / n_steps).alias("bytes_per_step"),
        (known.sum() / n_steps).alias("ops_with_bytes_per_step"),
        pl.when(known.any() & (dur.filter(known).sum() > 0))
        .then(pl.col("bytes").filter(known).sum() / dur.filter(known).sum()).alias("trace_gbps"),
    )
    agg = agg.sort("category")  # group order varies run to run; a float sum must not
    total = agg["ms_per_step"].sum() or 1.0
    return agg.with_columns((pl.col("ms_per_step") / total).alias("share")).sort(
        ["ms_per_step", "category"], descending=[True, False]).select(
        "category", "ms_per_step", "share", "ops_per_step", "bytes_per_step", "trace_gbps",
        "ops_with_bytes_per_step")


def top_kernels(steps: Steps, n: int | None = 10) -> pl.DataFrame:
    """The ``n`` kernels that take the most time per decode step (``None``: all of them)."""
    ops, n_steps = _decode_ops_with_category(steps)
    if ops.height == 0:
        return pl.DataFrame(schema={"name": pl.Utf8, "kind": pl.Utf8, "category": pl.Utf8,
                                    "ms_per_step": pl.Float64, "calls_per_step": pl.Float64,
                                    "median_us": pl.Float64})
    return ops.group_by("name", "kind", "category").agg(
        ((pl.col("end_ns") - pl.col("start_ns")).sum() / n_steps / 1e6).alias("ms_per_step"),
        (pl.len() / n_steps).alias("calls_per_step"),
        ((pl.col("end_ns") - pl.col("start_ns")).median() / 1e3).alias("median_us"),
    ).sort(["ms_per_step", "name"], descending=[True, False]).head(
        n if n is not None else ops.height)
