"""Per-step metrics: latency, GPU busy, idle gaps by class, kernel and launch counts.

For decode step *i* with first GPU op starting at ``start_i``::

    latency_i  = start_{i+1} - start_i           (the steady-state period; null for the last step)
    window_i   = [start_i, start_{i+1})          (the last step: [start_i, the end of its last op))
    gpu_busy_i = |union of all GPU op intervals, clipped to window_i|   (never a sum: streams
                 overlap; an earlier step's op still running counts, as on any step)
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
from typing import cast

import numpy as np

from tracekit.contract import GapName, KernelCategory, TopKernel
from tracekit.specs.kernels import categorize
from tracekit.steps import Steps, outside_per_step
from tracekit.trace.model import Trace
from tracekit.trace.table import Table


class GapClass(str, Enum):
    HOST_BOUND = "host_bound"
    LAUNCH_LATENCY = "launch_latency"
    SYNC = "sync"
    OTHER = "other"


#: the classes' names, typed as the contract's keys (tests/test_contract.py checks they agree)
GAP_CLASSES: list[GapName] = [cast(GapName, g.value) for g in GapClass]

STEP_COLUMNS = [
    "step", "name", "kind", "start_ns", "latency_ns", "span_ns", "gpu_busy_ns", "idle_ns",
    *[f"idle_{g}_ns" for g in GAP_CLASSES],
    "kernels", "memcpys", "memsets", "launches", "graph_launches", "launch_host_ns", "cpu_ns",
    "batch", "outside_ops",
]


def step_table(trace: Trace, steps: Steps):
    """One row per detected step (all kinds; filter ``kind == 'decode'`` for the summary), as a
    polars DataFrame (:func:`step_records` gives the same rows as dicts)."""
    import polars as pl

    schema: dict[str, type[pl.DataType]] = {c: pl.Int64 for c in STEP_COLUMNS}
    schema.update(name=pl.Utf8, kind=pl.Utf8)
    return pl.DataFrame(step_records(trace, steps), schema=schema)


def step_records(trace: Trace, steps: Steps) -> list[dict]:
    """One dict per detected step, by step, with the :data:`STEP_COLUMNS` (null: unknown)."""
    syncs = _sync_intervals(trace)
    launch_counts = _launch_counts(trace, steps)
    table = steps.table_t
    ops = steps.ops_t
    own, t0, nxt_t0, has_ops, timed = _windows_of(steps)
    metrics = _windows(steps).measure(t0[timed], nxt_t0[timed], syncs)
    timed_idx = {int(i): j for j, i in enumerate(np.nonzero(timed)[0])}
    no_launch = {"launches": 0, "graph_launches": 0, "launch_host_ns": 0}
    ids, names, kinds = table["step"].tolist(), table["name"].tolist(), table["kind"].tolist()
    cpu_s, cpu_e = table["cpu_start_ns"].tolist(), table["cpu_end_ns"].tolist()
    batch = np.where(table.valid("batch"), table["batch"], -1).tolist()
    outside = outside_per_step(ops, table).tolist()
    rows = []
    for i, s in enumerate(ids):
        row = dict.fromkeys(STEP_COLUMNS)
        row.update(step=s, name=names[i], kind=kinds[i], cpu_ns=cpu_e[i] - cpu_s[i],
                   batch=batch[i] if batch[i] >= 0 else None, outside_ops=outside[i],
                   **launch_counts.get(s, no_launch))
        if not has_ops[i]:
            # a step with no GPU op (CPU-only traces): host-side period only
            row.update(start_ns=cpu_s[i],
                       latency_ns=cpu_s[i + 1] - cpu_s[i] if i + 1 < len(ids) else None,
                       span_ns=cpu_e[i] - cpu_s[i], kernels=0, memcpys=0, memsets=0)
            rows.append(row)
            continue
        row.update(kernels=int(own["kernels"][i]), memcpys=int(own["memcpys"][i]),
                   memsets=int(own["memsets"][i]))
        j = timed_idx.get(i)
        if j is not None:
            span = int(nxt_t0[i] - t0[i])
            idle = {c: int(metrics["idle"][c][j]) for c in GAP_CLASSES}
            row.update(start_ns=int(t0[i]), latency_ns=span, span_ns=span,
                       gpu_busy_ns=int(metrics["busy"][j]), idle_ns=sum(idle.values()),
                       **{f"idle_{c}_ns": v for c, v in idle.items()})
        else:
            # no successor to end the window (the last step, or the next one ran no GPU work or ran
            # it before this one): no latency; the window ends where the step's own ops end
            row.update(_own_metrics(steps, _step_ops(ops, s), syncs))
        rows.append(row)
    return rows


def _step_ops(ops: Table, step: int) -> Table:
    """The ops of one step, in start order."""
    return ops.take(np.nonzero(ops.valid("step") & (ops["step"] == step))[0])


def step_gaps(trace: Trace, steps: Steps, step: int) -> dict:
    """One step's GPU ops and classified idle gaps, times in ns from the step's start."""
    ops = steps.ops_t
    g = _step_ops(ops, step)
    if g.height == 0:
        return {}
    ids = steps.table_t["step"].tolist()
    i = ids.index(step)
    t0 = int(g["start_ns"].min())
    nxt = _step_ops(ops, ids[i + 1]) if i + 1 < len(ids) else None
    w = int(nxt["start_ns"].min()) if nxt is not None and nxt.height else None
    syncs = _sync_intervals(trace)
    if w is not None and w > t0:
        m = _windows(steps).measure(np.array([t0]), np.array([w]), syncs, with_gaps=True)
        gaps, latency = m["gaps"], w - t0
    else:
        gaps = []
        _own_metrics(steps, g, syncs, gaps)
        latency = None
    names, kinds = g["name"].tolist(), g["kind"].tolist()
    cats = {(n, k): categorize(n, k).value for n, k in set(zip(names, kinds))}
    stream = np.where(g.valid("stream"), g["stream"], 0).tolist()
    stream_ok = g.valid("stream").tolist()
    return {
        "step": step,
        "t0_ns": t0,  # on the trace's clock; ops and gaps below are relative to it
        "latency_ns": latency,
        "ops": [{"start_ns": a - t0, "end_ns": b - t0, "name": n, "category": cats[(n, k)],
                 "stream": st if ok else None}
                for a, b, n, k, st, ok in zip(g["start_ns"].tolist(), g["end_ns"].tolist(),
                                              names, kinds, stream, stream_ok)],
        "gaps": [{"start_ns": a - t0, "end_ns": b - t0, "class": c, "ended_by": op}
                 for a, b, c, _, op in gaps],
    }


def gap_columns(trace: Trace, steps: Steps, *,
                kinds: tuple[str, ...] | None = ("decode",)) -> dict[str, np.ndarray]:
    """Every classified idle gap of the steps of ``kinds`` (None: every step with GPU ops; the
    same gaps, cut the same way, as :func:`step_records` sums) as numpy columns: ``step``,
    ``start_ns``, ``end_ns`` (int64, absolute ns), ``cls`` (the class as its index in
    :data:`GAP_CLASSES`) and ``ender`` (the row of ``steps.ops_t`` of the op that ends the gap,
    starting at its ``end_ns``; -1 when no op does), sorted by (step, start)."""
    syncs = _sync_intervals(trace)
    ops = steps.ops_t
    t = steps.table_t
    _, t0, nxt_t0, has_ops, timed = _windows_of(steps)
    wanted = t["kind"].isin(kinds) if kinds is not None else np.ones(t.height, bool)
    ids = t["step"]
    # a window to the next step's first op, or (no successor) to the end of the step's own ops
    w = np.where(timed, nxt_t0, 0)
    for i in np.nonzero(has_ops & ~timed & wanted)[0]:
        g = _step_ops(ops, int(ids[i]))
        w[i] = int(np.maximum(g["end_ns"], g["start_ns"]).max())
    sel = np.nonzero(has_ops & wanted)[0]
    m = _windows(steps).measure(t0[sel], w[sel], syncs, with_gaps="arrays")
    a, b, c, wi, ender = m.get("gap_arrays", _NO_GAPS)
    step = ids[sel][wi].astype(np.int64)
    order = np.lexsort((a, step))  # (step, start), whatever order the table lists steps in
    return {"step": step[order], "start_ns": a[order], "end_ns": b[order],
            "cls": c[order].astype(np.int64), "ender": ender[order]}


def gap_rows(trace: Trace, steps: Steps, host_ops: dict | None = None) -> list[dict]:
    """Every idle gap of every step with GPU ops, in time order, as rows: ``step``, ``kind``,
    ``start_ns`` (on the trace's clock), ``start_in_step_us`` (from the step's first GPU op),
    ``duration_us``, ``class``, ``ended_by`` (the GPU op that ended it) and ``host_op``.

    ``host_ops`` maps ``(step, start_ns)`` of a gap to the host op that held the launching thread
    during it (``HostAttribution.gap_ops()``); without it ``host_op`` is None."""
    g = gap_columns(trace, steps, kinds=None)
    t, names = steps.table_t, steps.ops_t["name"]
    kinds = dict(zip(t["step"].tolist(), t["kind"].tolist()))
    t0 = step_starts(steps)
    ender = g["ender"]
    ended_by = names.take(np.maximum(ender, 0)).tolist() if ender.size else []
    held = host_ops or {}
    return [{"step": s, "kind": kinds.get(s), "start_ns": a,
             "start_in_step_us": (a - t0[s]) / 1e3, "duration_us": (b - a) / 1e3,
             "class": GAP_CLASSES[c], "ended_by": op if e >= 0 else None,
             "host_op": held.get((s, a))}
            for s, a, b, c, e, op in zip(g["step"].tolist(), g["start_ns"].tolist(),
                                         g["end_ns"].tolist(), g["cls"].tolist(),
                                         ender.tolist(), ended_by)]


def step_starts(steps: Steps) -> dict[int, int]:
    """Each step with GPU ops: the start of its first op (``start_i``, the step's clock zero)."""
    _, t0, _, has_ops, _ = _windows_of(steps)
    return dict(zip(steps.table_t["step"][has_ops].tolist(), t0[has_ops].tolist()))


def _windows_of(steps: Steps):
    """Per step (in step order): its own ops' counts, its first op, the next step's first op,
    and which steps have a window between."""
    if "windows_of" in steps.derived:
        return steps.derived["windows_of"]
    ops, n = steps.ops_t, steps.table_t.height
    ok = np.nonzero(ops.valid("step"))[0]
    step = ops["step"][ok]
    kind = ops["kind"]
    own = {k: np.bincount(step, weights=kind.eq(v)[ok], minlength=n).astype(np.int64)
           for k, v in (("kernels", "kernel"), ("memcpys", "memcpy"), ("memsets", "memset"))}
    # ops are in start order: a step's first row is its first op
    uniq, first = np.unique(step, return_index=True)
    has_ops = np.zeros(n, dtype=bool)
    has_ops[uniq] = True
    t0 = np.zeros(n, dtype=np.int64)
    t0[uniq] = ops["start_ns"][ok[first]]
    # the window of step i runs to the next step's first op, when that step ran GPU work after it
    nxt_t0 = np.append(t0[1:], 0)
    nxt_ok = np.append(has_ops[1:], False)
    timed = has_ops & nxt_ok & (nxt_t0 > t0)
    steps.derived["windows_of"] = out = (own, t0, nxt_t0, has_ops, timed)
    return out


def _windows(steps: Steps) -> _Windows:
    """The merged busy intervals of ``steps.ops_t`` (in start order), built once per
    :class:`Steps` and shared by the step table, the gap table and the timeline."""
    if "windows" not in steps.derived:
        steps.derived["windows"] = _Windows(steps.ops_t)
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

    def __init__(self, ops: Table) -> None:
        self.ops = ops
        s = ops["start_ns"].astype(np.int64)
        e = np.maximum(ops["end_ns"].astype(np.int64), s)
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
                with_gaps: bool | str = False) -> dict:
        """Busy ns and idle ns by class for each window ``[t0[i], w[i])``.

        Windows go in runs of at most :data:`_PAIRS_PER_RUN` busy intervals: the vectorized
        work holds ~15 arrays of that length, so memory stays bounded (at 1 GB of trace, one run
        over all windows took ~80 MB). Runs are consecutive windows, so their gaps concatenate in
        (window, start) order."""
        if t0.size == 0:
            return self._measure(t0, w, syncs, with_gaps=with_gaps)
        cnt = np.maximum(np.searchsorted(self.mstart, w, side="left")
                         - np.searchsorted(self.mend, t0, side="right"), 0)
        run = np.cumsum(cnt) // _PAIRS_PER_RUN
        cuts = np.concatenate([[0], np.nonzero(np.diff(run))[0] + 1, [t0.size]])
        if cuts.size <= 2:
            return self._measure(t0, w, syncs, with_gaps=with_gaps)
        offsets = cuts[:-1].tolist()  # each run's first window: its window indices start there
        parts = [self._measure(t0[a:b], w[a:b], syncs, with_gaps=with_gaps)
                 for a, b in zip(offsets, cuts[1:].tolist())]
        out: dict = {"busy": np.concatenate([p["busy"] for p in parts]),
                     "idle": {c: np.concatenate([p["idle"][c] for p in parts])
                              for c in GAP_CLASSES},
                     "gaps": [(a, b, c, wi + off, op) for p, off in zip(parts, offsets)
                              for a, b, c, wi, op in p["gaps"]]}
        if any("gap_arrays" in p for p in parts):
            arrays = [p.get("gap_arrays", _NO_GAPS) for p in parts]
            out["gap_arrays"] = (*(np.concatenate([a[i] for a in arrays]) for i in range(3)),
                                 np.concatenate([a[3] + off for a, off in zip(arrays, offsets)]),
                                 np.concatenate([a[4] for a in arrays]))
        return out

    def _measure(self, t0: np.ndarray, w: np.ndarray, syncs: np.ndarray, *,
                 with_gaps: bool | str = False) -> dict:
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
        gs, ge, gw, enders, prevs = [], [], [], [], []
        same = rep[1:] == rep[:-1]
        gs.append(ce[:-1][same])
        ge.append(cs[1:][same])
        gw.append(rep[1:][same])
        enders.append(self.mfirst[k[1:][same]])
        prevs.append(self.mlast[k[:-1][same]])
        has = cnt > 0
        first_pair = np.cumsum(cnt) - cnt
        last_pair = np.cumsum(cnt) - 1
        lead = has & (cs[np.where(has, first_pair, 0)] > t0) if rep.size else np.zeros(nw, bool)
        gs.append(t0[lead])
        ge.append(cs[first_pair[lead]])
        gw.append(np.nonzero(lead)[0])
        enders.append(self.mfirst[k[first_pair[lead]]])
        prevs.append(np.full(int(lead.sum()), -1))
        empty = ~has  # nothing ran in the window (only zero-length ops): all of it is one gap
        gs.append(t0[empty])
        ge.append(w[empty])
        gw.append(np.nonzero(empty)[0])
        enders.append(np.where(khi[empty] < m, self.mfirst[np.minimum(khi[empty], m - 1)], -1))
        prevs.append(np.full(int(empty.sum()), -1))
        tail = has & (ce[np.where(has, last_pair, 0)] < w) if rep.size else np.zeros(nw, bool)
        gs.append(ce[last_pair[tail]])
        ge.append(w[tail])
        gw.append(np.nonzero(tail)[0])
        enders.append(np.where(khi[tail] < m, self.mfirst[np.minimum(khi[tail], m - 1)], -1))
        prevs.append(self.mlast[k[last_pair[tail]]])
        gap_start, gap_end, gwin = (np.concatenate(x).astype(np.int64) for x in (gs, ge, gw))
        ender, prev = np.concatenate(enders).astype(np.int64), np.concatenate(prevs).astype(np.int64)
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
            out["gap_arrays"] = (gap_start[order], gap_end[order], classes[order], gwin[order],
                                 ender[order])
            if with_gaps != "arrays":
                ender = ender[order]
                names = self.ops["name"].take(np.maximum(ender, 0)).tolist() if ender.size else []
                ended_by = [n if i >= 0 else None for n, i in zip(names, ender.tolist())]
                out["gaps"] = list(zip(gap_start[order].tolist(), gap_end[order].tolist(),
                                       [GAP_CLASSES[c] for c in classes[order].tolist()],
                                       gwin[order].tolist(), ended_by))
        return out


def _own_metrics(steps: Steps, g: Table, syncs: np.ndarray, gaps_out: list | None = None) -> dict:
    """A step without a successor: its window runs from its first op to the end of its last op,
    and within it every GPU op counts, as in any other step's window (an earlier step's op still
    running is busy here too, clipped to the window)."""
    t0 = int(g["start_ns"].min())
    end = int(np.maximum(g["end_ns"], g["start_ns"]).max())
    m = _windows(steps).measure(np.array([t0]), np.array([end]), syncs,
                                with_gaps=gaps_out is not None)
    if gaps_out is not None:
        gaps_out.extend(m["gaps"])
    idle = {c: int(m["idle"][c][0]) for c in GAP_CLASSES}
    return {
        "start_ns": t0, "latency_ns": None, "span_ns": end - t0,
        "gpu_busy_ns": int(m["busy"][0]), "idle_ns": sum(idle.values()),
        **{f"idle_{c}_ns": v for c, v in idle.items()},
    }


#: gap_arrays with no gap: start, end, class, window, ending op (see _Windows._measure)
_NO_GAPS = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int8),
            np.empty(0, np.int64), np.empty(0, np.int64))

#: busy intervals measured in one vectorized run (see _Windows.measure)
_PAIRS_PER_RUN = 1 << 16

_NO_LAUNCH = -1  # launch times are absolute ns on a positive clock; -1 marks "no launch record"


def _gap_enders(g: Table) -> dict[str, np.ndarray]:
    """What the classifier needs of each op, were it to end a gap (its predecessor: the op before
    it in start order)."""
    corr = g.filled("correlation", -1)
    prev = np.append([-2], corr[:-1]) if corr.size else corr
    return {
        "launch_start": g.filled("launch_start_ns", _NO_LAUNCH),
        "launch_end": g.filled("launch_end_ns", _NO_LAUNCH),
        "is_graph": g["launch_kind"].eq("graph"),
        "first_of_graph": corr != prev,
    }


def _is_dtoh(g: Table) -> np.ndarray:
    return g["kind"].eq("memcpy") & g["name"].where(lambda n: n is not None and "DtoH" in n)


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
    s = trace.table("syncs")
    if s.height == 0:
        return np.empty((0, 2), dtype=np.int64)
    order = np.argsort(s["start_ns"], kind="stable")
    return np.stack([s["start_ns"][order], s["end_ns"][order]], axis=1)


def int_sums(keys: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Exact int64 sums of ``values`` per key in ``range(n)``."""
    values = values.astype(np.int64, copy=False)
    if values.size == 0 or np.abs(values).sum(dtype=np.float64) < 2.0**52:
        # every partial sum is an integer a float64 holds exactly
        return np.rint(np.bincount(keys, weights=values, minlength=n)).astype(np.int64)
    out = np.zeros(n, np.int64)
    np.add.at(out, keys, values)
    return out


def _launch_counts(trace: Trace, steps: Steps) -> dict[int, dict]:
    """Launch calls (runtime + driver + graph) that started inside each step's CPU range."""
    calls = trace.table("launches")
    if calls.height == 0:
        return {}
    r = steps.table_t
    order = np.argsort(r["cpu_start_ns"], kind="stable")
    starts, ends, ids = r["cpu_start_ns"][order], r["cpu_end_ns"][order], r["step"][order]
    at = calls["start_ns"]
    i = np.searchsorted(starts, at, side="right") - 1
    inside = (i >= 0) & (at < ends[np.maximum(i, 0)])
    k = i[inside]
    n = starts.size
    count = np.bincount(k, minlength=n)
    graphs = np.bincount(k, weights=calls["kind"].eq("graph")[inside], minlength=n)
    host = int_sums(k, (calls["end_ns"] - calls["start_ns"])[inside], n)
    return {int(ids[j]): {"launches": int(count[j]), "graph_launches": int(graphs[j]),
                          "launch_host_ns": int(host[j])} for j in np.nonzero(count)[0]}


def _decode_ops(steps: Steps) -> tuple[Table, int]:
    """The decode steps' ops: only the columns the kernel tables read (at 1 GB of trace a copy
    of every column would be ~40 MB)."""
    decode = steps.decode_t["step"]
    ops = steps.ops_t
    ops = ops.select(("name", "kind", "start_ns", "end_ns", "bytes"))
    return (ops.take(np.nonzero(steps.ops_t.valid("step")
                                & np.isin(steps.ops_t["step"], decode))[0]),
            max(decode.size, 1))


def _per_name(ops: Table) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Group ids of the ops by (name, kind), and each group's (name, kind)."""
    name, kind = ops["name"], ops["kind"]
    key = name.codes.astype(np.int64) * (len(kind.values) + 1) + kind.codes
    _, first, group = np.unique(key, return_index=True, return_inverse=True)
    return group.ravel(), [(name[i], kind[i]) for i in first.tolist()]


TOP_KERNEL_COLUMNS = ["name", "kind", "category", "ms_per_step", "calls_per_step", "median_us"]


def kernel_category_rows(steps: Steps) -> list[KernelCategory]:
    """Time, count and recorded bytes per kernel category, per decode step (the JSON contract's
    ``kernels_by_category``).

    Time here is the sum of op durations (overlapping ops count twice; GPU busy counts the union).
    ``bytes_per_step`` are the bytes the trace records (copies and memsets only; null when none),
    ``trace_gbps`` their rate over the ops that carry them, and ``ops_with_bytes_per_step`` how
    many of the category's ops carry a byte count (copy *kernels* do not: bytes then cover only
    part of the category, and the reports say so).
    """
    ops, n_steps = _decode_ops(steps)
    if ops.height == 0:
        return []
    group, keys = _per_name(ops)
    g = len(keys)
    dur = ops["end_ns"] - ops["start_ns"]
    known = ops.valid("bytes")
    per = {"dur": int_sums(group, dur, g), "n": np.bincount(group, minlength=g),
           "bytes": int_sums(group, ops.filled("bytes", 0), g),
           "known": np.bincount(group, weights=known, minlength=g).astype(np.int64),
           "dur_known": int_sums(group[known], dur[known], g)}
    cats: dict[str, dict] = {}
    for i, (n, k) in enumerate(keys):
        c = cats.setdefault(categorize(n, k).value, dict.fromkeys(per, 0))
        for f, v in per.items():
            c[f] += int(v[i])
    total = sum(c["dur"] for c in cats.values()) or 1  # integer ns: exact in any order
    rows: list[KernelCategory] = []
    for cat in sorted(cats):
        c = cats[cat]
        some = c["known"] > 0
        rows.append({
            "category": cat, "ms_per_step": c["dur"] / n_steps / 1e6, "share": c["dur"] / total,
            "ops_per_step": c["n"] / n_steps,
            "bytes_per_step": c["bytes"] / n_steps if some else None,
            "trace_gbps": c["bytes"] / c["dur_known"] if some and c["dur_known"] > 0 else None,
            "ops_with_bytes_per_step": c["known"] / n_steps,
        })
    rows.sort(key=lambda r: (-r["ms_per_step"], r["category"]))
    return rows


def top_kernel_rows(steps: Steps, n: int | None = 10) -> list[TopKernel]:
    """The ``n`` kernels (and copies, memsets) that take the most time per decode step
    (``None``: all of them), by (name, kind): :data:`TOP_KERNEL_COLUMNS`."""
    ops, n_steps = _decode_ops(steps)
    if ops.height == 0:
        return []
    group, keys = _per_name(ops)
    dur = (ops["end_ns"] - ops["start_ns"]).astype(np.int64)
    sums = int_sums(group, dur, len(keys))
    counts = np.bincount(group, minlength=len(keys))
    sd = dur[np.lexsort((dur, group))]  # by group, then duration
    first = np.cumsum(counts) - counts
    # the median: the middle one, or the mean of the middle two (exact: ns sums stay below 2**53)
    median = (sd[first + (counts - 1) // 2] + sd[first + counts // 2]) / 2
    del sd
    rows: list[TopKernel] = []
    for i, (name, kind) in enumerate(keys):
        c = int(counts[i])
        rows.append({"name": name, "kind": kind, "category": categorize(name, kind).value,
                     "ms_per_step": int(sums[i]) / n_steps / 1e6,
                     "calls_per_step": c / n_steps, "median_us": float(median[i]) / 1e3})
    rows.sort(key=lambda r: (-r["ms_per_step"], r["name"]))
    return rows[:n] if n is not None else rows
