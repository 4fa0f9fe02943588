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
    table = steps.table.sort("step")
    ops = steps.ops.sort("start_ns")
    t, t0, nxt_t0, has_ops, timed = _windows_of(steps)
    win = _windows(steps, ops)
    metrics = win.measure(t0[timed], nxt_t0[timed], syncs)
    timed_idx = {int(i): j for j, i in enumerate(np.nonzero(timed)[0])}
    rows = []
    for i, rec in enumerate(t.iter_rows(named=True)):
        s = rec["step"]
        row = {
            "step": s, "name": rec["name"], "kind": rec["kind"],
            "cpu_ns": rec["cpu_end_ns"] - rec["cpu_start_ns"],
            **launch_counts.get(s, {"launches": 0, "graph_launches": 0, "launch_host_ns": 0}),
        }
        if not has_ops[i]:
            row.update(_host_only(rec, table, i))
            rows.append(row)
            continue
        row.update(kernels=rec["kernels"], memcpys=rec["memcpys"], memsets=rec["memsets"])
        j = timed_idx.get(i)
        if j is not None:
            span = int(nxt_t0[i] - t0[i])
            idle = {c: int(metrics["idle"][c][j]) for c in GAP_CLASSES}
            row.update(start_ns=int(t0[i]), latency_ns=span, span_ns=span,
                       gpu_busy_ns=int(metrics["busy"][j]), idle_ns=sum(idle.values()),
                       **{f"idle_{c}_ns": v for c, v in idle.items()})
        else:
            # no successor to end the window (the last step, or the next one ran no GPU work or ran
            # it before this one): no latency; busy is the union of the step's own ops
            g = ops.filter(pl.col("step") == s)
            row.update(_own_metrics(g, syncs))
        rows.append(row)
    schema = {c: pl.Int64 for c in STEP_COLUMNS}
    schema.update(name=pl.Utf8, kind=pl.Utf8)
    return pl.DataFrame(rows, schema=schema).select(STEP_COLUMNS)


def step_gaps(trace: Trace, steps: Steps, step: int) -> dict:
    """One step's GPU ops and classified idle gaps, times in ns from the step's start."""
    ops = steps.ops.sort("start_ns")
    g = ops.filter(pl.col("step") == step)
    if g.height == 0:
        return {}
    ids = steps.table.sort("step")["step"].to_list()
    i = ids.index(step)
    t0 = int(g["start_ns"].min())
    nxt = ops.filter(pl.col("step") == ids[i + 1]) if i + 1 < len(ids) else None
    w = int(nxt["start_ns"].min()) if nxt is not None and nxt.height else None
    syncs = _sync_intervals(trace)
    if w is not None and w > t0:
        m = _windows(steps, ops).measure(np.array([t0]), np.array([w]), syncs, with_gaps=True)
        gaps, latency = m["gaps"], w - t0
    else:
        gaps = []
        _own_metrics(g, syncs, gaps)
        latency = None
    names = g.select("name", "kind").unique()
    cats = {(n, k): categorize(n, k).value for n, k in names.iter_rows()}
    return {
        "step": step,
        "t0_ns": t0,  # on the trace's clock; ops and gaps below are relative to it
        "latency_ns": latency,
        "ops": [{"start_ns": r["start_ns"] - t0, "end_ns": r["end_ns"] - t0, "name": r["name"],
                 "category": cats[(r["name"], r["kind"])], "stream": r["stream"]}
                for r in g.iter_rows(named=True)],
        "gaps": [{"start_ns": a - t0, "end_ns": b - t0, "class": c, "ended_by": op}
                 for a, b, c, _, op in gaps],
    }


GAPS_SCHEMA = {"step": pl.Int64, "start_ns": pl.Int64, "end_ns": pl.Int64, "class": pl.Utf8}


def gap_table(trace: Trace, steps: Steps, *, kinds: tuple[str, ...] = ("decode",)) -> pl.DataFrame:
    """Every classified idle gap of the steps of ``kinds``, absolute ns (the same gaps, cut the
    same way, as :func:`step_table` sums). The op that ends a gap starts at its ``end_ns``."""
    g = gap_columns(trace, steps, kinds=kinds)
    return pl.DataFrame({"step": g["step"], "start_ns": g["start_ns"], "end_ns": g["end_ns"],
                         "class": pl.Series(GAP_CLASSES, dtype=pl.Utf8).gather(g["cls"])},
                        schema=GAPS_SCHEMA)


def gap_columns(trace: Trace, steps: Steps, *,
                kinds: tuple[str, ...] = ("decode",)) -> dict[str, np.ndarray]:
    """:func:`gap_table` as numpy columns: ``step``, ``start_ns``, ``end_ns`` (int64) and ``cls``
    (the class as its index in :data:`GAP_CLASSES`), sorted by (step, start)."""
    syncs = _sync_intervals(trace)
    ops = steps.ops.sort("start_ns")
    t, t0, nxt_t0, has_ops, timed = _windows_of(steps)
    wanted = t["kind"].is_in(list(kinds)).to_numpy()
    ids = t["step"].to_numpy()
    sel = timed & wanted
    m = _windows(steps, ops).measure(t0[sel], nxt_t0[sel], syncs, with_gaps="arrays")
    a, b, c, wi = m.get("gap_arrays", (np.empty(0, np.int64),) * 2 + (np.empty(0, np.int8),)
                        + (np.empty(0, np.int64),))
    cols = [[ids[sel][wi].astype(np.int64)], [a], [b], [c]]
    for i in np.nonzero(has_ops & ~timed & wanted)[0]:
        gaps: list = []
        _own_metrics(ops.filter(pl.col("step") == int(ids[i])), syncs, gaps)
        cols[0].append(np.full(len(gaps), int(ids[i]), dtype=np.int64))
        cols[1].append(np.array([g[0] for g in gaps], dtype=np.int64))
        cols[2].append(np.array([g[1] for g in gaps], dtype=np.int64))
        cols[3].append(np.array([GAP_CLASSES.index(g[2]) for g in gaps], dtype=np.int8))
    step, a, b = (np.concatenate(x).astype(np.int64) for x in cols[:3])
    c = np.concatenate(cols[3]).astype(np.int64)
    order = np.lexsort((a, step))  # stable: (step, start), as the steps' gaps come
    return {"step": step[order], "start_ns": a[order], "end_ns": b[order], "cls": c[order]}


def _windows_of(steps: Steps):
    """Each step's first op, the next step's first op, and which steps have a window between."""
    ops = steps.ops
    own = ops.filter(pl.col("step").is_not_null()).group_by("step").agg(
        pl.col("start_ns").min().alias("t0"),
        pl.max_horizontal("start_ns", "end_ns").max().alias("own_end"),
        (pl.col("kind") == "kernel").sum().alias("kernels"),
        (pl.col("kind") == "memcpy").sum().alias("memcpys"),
        (pl.col("kind") == "memset").sum().alias("memsets"),
    )
    t = steps.table.join(own, on="step", how="left").sort("step")
    has_ops = ~t["t0"].is_null().to_numpy()
    t0 = np.where(has_ops, t["t0"].fill_null(0).to_numpy(), 0).astype(np.int64)
    # the window of step i runs to the next step's first op, when that step ran GPU work after it
    nxt_t0 = np.append(t0[1:], 0)
    nxt_ok = np.append(has_ops[1:], False)
    timed = has_ops & nxt_ok & (nxt_t0 > t0)
    return t, t0, nxt_t0, has_ops, timed


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


def _windows(steps: Steps, ops: pl.DataFrame) -> _Windows:
    """The merged busy intervals of ``steps.ops`` (sorted by start as ``ops``), built once per
    :class:`Steps` and shared by the step table, the gap table and the timeline."""
    if "windows" not in steps.derived:
        steps.derived["windows"] = _Windows(ops)
    return steps.derived["windows"]


class _Windows:
    """GPU busy and idle gaps inside time windows, over every GPU op of the trace.

    A step's window runs from its first op to the next step's first op. Whatever the GPU ran in it
    counts as busy — also an op launched by an earlier step that is still running, or one from
    another stream — and every op is clipped to the window at both ends, so per step
    ``0 <= busy <= latency``. The ops are merged once into disjoint busy intervals::

        ops     ████  ███████            ████   █
                  ██████                   ██████
        merged  ███████████░░░░░░░░░░░░░████████░█
                           ^ gap, ended by the first op of the next interval

    Each gap is classified by the op that ends it (the first op of the next busy interval) and the
    op that ended the busy interval before it (a device-to-host copy means a sync round trip).
    """

    def __init__(self, ops: pl.DataFrame) -> None:
        self.ops = ops
        s = ops["start_ns"].to_numpy().astype(np.int64)
        e = np.maximum(ops["end_ns"].to_numpy().astype(np.int64), s)
        n = s.size
        run = np.maximum.accumulate(e) if n else e
        new = np.ones(n, dtype=bool)
        new[1:] = s[1:] > run[:-1]
        first = np.nonzero(new)[0]
        last = np.append(first[1:] - 1, n - 1) if n else first
        self.mstart, self.mend = s[first], run[last]
        self.mfirst = first
        # the op that ends each interval: the one whose end set the running maximum last
        self.mlast = np.maximum.accumulate(np.where(e == run, np.arange(n), 0))[last] if n else last
        self.enders = _gap_enders(ops)
        self.dtoh = _is_dtoh(ops)

    def measure(self, t0: np.ndarray, w: np.ndarray, syncs: np.ndarray, *,
                with_gaps: bool = False) -> dict:
        """Busy ns and idle ns by class for each window ``[t0[i], w[i])``."""
        nw = t0.size
        out: dict = {"busy": np.zeros(nw, dtype=np.int64),
                     "idle": {c: np.zeros(nw, dtype=np.int64) for c in GAP_CLASSES}, "gaps": []}
        if nw == 0:
            return out
        m = self.mstart.size
        klo = np.searchsorted(self.mend, t0, side="right")  # first interval ending after t0
        khi = np.searchsorted(self.mstart, w, side="left")  # intervals starting before w
        cnt = np.maximum(khi - klo, 0)
        rep = np.repeat(np.arange(nw), cnt)
        offs = np.arange(rep.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        k = np.repeat(klo, cnt) + offs
        cs = np.maximum(self.mstart[k], t0[rep])
        ce = np.minimum(self.mend[k], w[rep])
        out["busy"] = np.bincount(rep, weights=ce - cs, minlength=nw).astype(np.int64)
        # gaps: before the first interval, between intervals, after the last one
        gs, ge, gw, ender, prev = [], [], [], [], []
        same = rep[1:] == rep[:-1]
        gs.append(ce[:-1][same])
        ge.append(cs[1:][same])
        gw.append(rep[1:][same])
        ender.append(self.mfirst[k[1:][same]])
        prev.append(self.mlast[k[:-1][same]])
        has = cnt > 0
        first_pair = np.cumsum(cnt) - cnt
        last_pair = np.cumsum(cnt) - 1
        lead = has & (cs[np.where(has, first_pair, 0)] > t0) if rep.size else np.zeros(nw, bool)
        gs.append(t0[lead])
        ge.append(cs[first_pair[lead]])
        gw.append(np.nonzero(lead)[0])
        ender.append(self.mfirst[k[first_pair[lead]]])
        prev.append(np.full(int(lead.sum()), -1))
        empty = ~has  # nothing ran in the window (only zero-length ops): all of it is one gap
        gs.append(t0[empty])
        ge.append(w[empty])
        gw.append(np.nonzero(empty)[0])
        ender.append(np.where(khi[empty] < m, self.mfirst[np.minimum(khi[empty], m - 1)], -1))
        prev.append(np.full(int(empty.sum()), -1))
        tail = has & (ce[np.where(has, last_pair, 0)] < w) if rep.size else np.zeros(nw, bool)
        gs.append(ce[last_pair[tail]])
        ge.append(w[tail])
        gw.append(np.nonzero(tail)[0])
        ender.append(np.where(khi[tail] < m, self.mfirst[np.minimum(khi[tail], m - 1)], -1))
        prev.append(self.mlast[k[last_pair[tail]]])
        gap_start, gap_end, gwin = (np.concatenate(x).astype(np.int64) for x in (gs, ge, gw))
        ender, prev = np.concatenate(ender).astype(np.int64), np.concatenate(prev).astype(np.int64)
        keep = gap_end > gap_start
        gap_start, gap_end, gwin, ender, prev = (x[keep] for x in (gap_start, gap_end, gwin,
                                                                    ender, prev))
        has_ender = ender >= 0
        e = np.maximum(ender, 0)
        classes = classify_gaps(
            gap_start, gap_end, syncs=syncs,
            prev_dtoh=(prev >= 0) & self.dtoh[np.maximum(prev, 0)],
            launch_start=np.where(has_ender, self.enders["launch_start"][e], _NO_LAUNCH),
            launch_end=np.where(has_ender, self.enders["launch_end"][e], _NO_LAUNCH),
            is_graph=has_ender & self.enders["is_graph"][e],
            first_of_graph=has_ender & self.enders["first_of_graph"][e],
        )
        lengths = gap_end - gap_start
        for i, c in enumerate(GAP_CLASSES):
            sel = classes == i
            out["idle"][c] = np.bincount(gwin[sel], weights=lengths[sel],
                                         minlength=nw).astype(np.int64)
        if with_gaps:
            order = np.lexsort((gap_start, gwin))
            out["gap_arrays"] = (gap_start[order], gap_end[order], classes[order], gwin[order])
            if with_gaps != "arrays":
                ender = ender[order]
                names = self.ops["name"].gather(np.maximum(ender, 0)).to_list() if ender.size else []
                ended_by = [n if i >= 0 else None for n, i in zip(names, ender.tolist())]
                out["gaps"] = list(zip(gap_start[order].tolist(), gap_end[order].tolist(),
                                       [GAP_CLASSES[c] for c in classes[order].tolist()],
                                       gwin[order].tolist(), ended_by))
        return out


def _own_metrics(g: pl.DataFrame, syncs: np.ndarray, gaps_out: list | None = None) -> dict:
    """A step without a successor: the union of its own ops, from its first op to its last end."""
    g = g.sort("start_ns")
    t0 = int(g["start_ns"].min())
    end = int(np.maximum(g["end_ns"].to_numpy(), g["start_ns"].to_numpy()).max())
    m = _Windows(g).measure(np.array([t0]), np.array([end]), syncs,
                            with_gaps=gaps_out is not None)
    if gaps_out is not None:
        gaps_out.extend(m["gaps"])
    idle = {c: int(m["idle"][c][0]) for c in GAP_CLASSES}
    return {
        "start_ns": t0, "latency_ns": None, "span_ns": end - t0,
        "gpu_busy_ns": int(m["busy"][0]), "idle_ns": sum(idle.values()),
        **{f"idle_{c}_ns": v for c, v in idle.items()},
    }


_NO_LAUNCH = -1  # launch times are absolute ns on a positive clock; -1 marks "no launch record"


def _gap_enders(g: pl.DataFrame) -> dict[str, np.ndarray]:
    """What the classifier needs of each op, were it to end a gap (its predecessor: the op before
    it in start order)."""
    corr = g["correlation"].fill_null(-1).to_numpy()
    prev = np.append([-2], corr[:-1]) if corr.size else corr
    return {
        "launch_start": g["launch_start_ns"].fill_null(_NO_LAUNCH).to_numpy(),
        "launch_end": g["launch_end_ns"].fill_null(_NO_LAUNCH).to_numpy(),
        "is_graph": (g["launch_kind"] == "graph").fill_null(False).to_numpy(),
        "first_of_graph": corr != prev,
    }


def _is_dtoh(g: pl.DataFrame) -> np.ndarray:
    return ((g["kind"] == "memcpy") & g["name"].str.contains("DtoH")).fill_null(False).to_numpy()


def classify_gaps(gap_start: np.ndarray, gap_end: np.ndarray, *, syncs: np.ndarray,
                  prev_dtoh: np.ndarray, launch_start: np.ndarray, launch_end: np.ndarray,
                  is_graph: np.ndarray, first_of_graph: np.ndarray) -> np.ndarray:
    """The class of each gap as its index in :data:`GAP_CLASSES` (see the module docstring),
    first matching rule wins."""
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
    code = {c: np.int8(i) for i, c in enumerate(GAP_CLASSES)}
    return np.select(
        [released | prev_dtoh, no_launch, is_graph & graph_host, is_graph,
         launch_end > gap_start],
        [code["sync"], code["other"], code["host_bound"], code["launch_latency"],
         code["host_bound"]],
        default=code["launch_latency"],
    ).astype(np.int8)


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


def _decode_ops(steps: Steps) -> tuple[pl.DataFrame, int]:
    """The decode steps' ops, only the columns the kernel tables read, names as categorical (a
    group-by on 100-character kernel names would otherwise copy every one of them into its keys:
    ~200 MB at 1 GB of trace)."""
    decode = steps.decode["step"]
    ops = steps.ops.select("name", "kind", "start_ns", "end_ns", "bytes", "step").filter(
        pl.col("step").is_in(decode.implode()))
    return ops.with_columns(pl.col("name").cast(pl.Categorical)), max(decode.len(), 1)


def _with_category(groups: pl.DataFrame) -> pl.DataFrame:
    """``category`` for rows of distinct (name, kind): categorized once per kernel name, not per
    op (the aggregations before it are per (name, kind), which the category is a function of)."""
    groups = groups.with_columns(pl.col("name").cast(pl.Utf8))
    return groups.with_columns(pl.Series(
        "category", [categorize(n, k).value for n, k in groups.select("name", "kind").iter_rows()],
        dtype=pl.Utf8))


def kernel_categories(steps: Steps) -> pl.DataFrame:
    """Time, count and recorded bytes per kernel category, per decode step.

    Time here is the sum of op durations (overlapping ops count twice; GPU busy counts the union).
    ``bytes_per_step`` are the bytes the trace records (copies and memsets only; null when none),
    ``trace_gbps`` their rate over the ops that carry them, and ``ops_with_bytes_per_step`` how
    many of the category's ops carry a byte count (copy *kernels* do not: bytes then cover only
    part of the category, and the reports say so).
    """
    ops, n_steps = _decode_ops(steps)
    if ops.height == 0:
        return pl.DataFrame(schema={"category": pl.Utf8, "ms_per_step": pl.Float64,
                                    "share": pl.Float64, "ops_per_step": pl.Float64,
                                    "bytes_per_step": pl.Float64, "trace_gbps": pl.Float64,
                                    "ops_with_bytes_per_step": pl.Float64})
    dur = pl.col("end_ns") - pl.col("start_ns")
    known = pl.col("bytes").is_not_null()
    # integer sums per (name, kind), then per category: the same integers as one pass per category
    per_name = _with_category(ops.group_by("name", "kind").agg(
        dur.sum().alias("dur"), pl.len().alias("n"), pl.col("bytes").sum().alias("bytes"),
        known.sum().alias("known"), dur.filter(known).sum().alias("dur_known")))
    some = pl.col("known").sum() > 0
    agg = per_name.group_by("category").agg(
        (pl.col("dur").sum() / n_steps / 1e6).alias("ms_per_step"),
        (pl.col("n").sum() / n_steps).alias("ops_per_step"),
        pl.when(some).then(pl.col("bytes").sum() / n_steps).alias("bytes_per_step"),
        (pl.col("known").sum() / n_steps).alias("ops_with_bytes_per_step"),
        pl.when(some & (pl.col("dur_known").sum() > 0))
        .then(pl.col("bytes").sum() / pl.col("dur_known").sum()).alias("trace_gbps"),
    )
    agg = agg.sort("category")  # group order varies run to run; a float sum must not
    total = agg["ms_per_step"].sum() or 1.0
    return agg.with_columns((pl.col("ms_per_step") / total).alias("share")).sort(
        ["ms_per_step", "category"], descending=[True, False]).select(
        "category", "ms_per_step", "share", "ops_per_step", "bytes_per_step", "trace_gbps",
        "ops_with_bytes_per_step")


def top_kernels(steps: Steps, n: int | None = 10) -> pl.DataFrame:
    """The ``n`` kernels that take the most time per decode step (``None``: all of them)."""
    ops, n_steps = _decode_ops(steps)
    if ops.height == 0:
        return pl.DataFrame(schema={"name": pl.Utf8, "kind": pl.Utf8, "category": pl.Utf8,
                                    "ms_per_step": pl.Float64, "calls_per_step": pl.Float64,
                                    "median_us": pl.Float64})
    per_name = ops.group_by("name", "kind").agg(
        ((pl.col("end_ns") - pl.col("start_ns")).sum() / n_steps / 1e6).alias("ms_per_step"),
        (pl.len() / n_steps).alias("calls_per_step"),
        ((pl.col("end_ns") - pl.col("start_ns")).median() / 1e3).alias("median_us"),
    )
    return _with_category(per_name).select(
        "name", "kind", "category", "ms_per_step", "calls_per_step", "median_us",
    ).sort(["ms_per_step", "name"], descending=[True, False]).head(
        n if n is not None else ops.height)
