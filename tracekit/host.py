"""Host attribution: what the launching thread was doing while the GPU waited for it.

``breakdown.py`` calls a gap ``host_bound`` when the op that ends it had not been launched yet:
the GPU waited for the CPU. That says *that* the host was late, not *why*. This module looks at the
host thread that launched the op ending each host-bound gap and asks which CPU op held it:

    host  ─[linear]─[rms_norm]─[──────── _cudnn_attention_forward (plan build) ────────]─[linear]─
    GPU   ██ ░ ██ ░ ██ ░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░ ██ ░ ██
              ^issue    ^issue                ^ one gap held by one op: a stall

**Attribution.** A gap is attributed to the *innermost* CPU op (Kineto ``cpu_op`` or a CPU
``record_function`` range) on the launching thread whose overlap with the gap is at least half the
gap. Ops on one thread nest, so such an op always contains the gap's midpoint and the candidates
are the stack at the midpoint; the step annotation itself is never the answer. A gap no single op
covers that much of is attributed to ``(no recorded op)`` — Python or untraced host code between
ops (or between steps).

**Launch issue vs stall.** Issuing one op in eager PyTorch (Python, dispatcher, allocator, the
launch call) costs tens of µs on the host; an eager decode step issues ~1300 of them and the GPU
finishes each small kernel before the next arrives, so most host-bound gaps are this steady
*launch issue* cost. A *stall* is different in kind: one op holding the host for a long time. The
threshold comes from the step's own distribution of per-launch host time (the interval between
consecutive launch calls on the launching thread):

    an op instance is a stall when the host-bound idle attributed to it within one step is
    ≥ STALL_FACTOR (20) × the step's median launch-to-launch interval and ≥ STALL_MIN_NS (200 µs)

Why these numbers: in the real eager traces in ``sample_traces/`` the launch-to-launch interval has
a median of ≈20–25 µs (profiled) and its slow tail (layer boundaries, allocator hits, Python
between modules) stays below ≈10× the median, while the stalls are 40–50 ms — three orders of
magnitude apart. 20× the median keeps the ordinary tail out in any trace whose launches are this
regular; the 200 µs floor keeps a fast host (or a graph replay, where the interval is ~µs) from
calling an ordinary slow op a stall. Idle attributed to several gaps of one op instance (a run
of gaps, e.g. an op that launches a tiny kernel in the middle of its stall) adds up.

    >>> from tracekit.host import attribute            # doctest: +SKIP
    >>> h = attribute(trace, steps)                      # doctest: +SKIP
    >>> h.gaps.filter(pl.col("stall"))                   # doctest: +SKIP
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from tracekit.breakdown import GapClass, gap_table
from tracekit.memory import release
from tracekit.specs.stalls import match_cause
from tracekit.steps import Steps, first_row
from tracekit.trace.model import Trace

#: a stall holds the host at least this many times the step's median launch-to-launch interval …
STALL_FACTOR = 20.0
#: … and at least this long
STALL_MIN_NS = 200_000
#: the name given to gaps that no single recorded op covers at least half of
NO_OP = "(no recorded op)"

GAP_COLUMNS = {
    "step": pl.Int64, "start_ns": pl.Int64, "end_ns": pl.Int64, "tid": pl.Int64,
    "op": pl.Utf8, "stack": pl.Utf8, "frame": pl.Int64, "op_start_ns": pl.Int64,
    "op_end_ns": pl.Int64, "stall": pl.Boolean,
}


@dataclass
class HostAttribution:
    """Per host-bound gap (``gaps``) and per decode step (``steps``) attribution."""

    #: one row per host-bound gap: step, start/end, launching tid, attributed op, its stack
    #: (outermost first, step annotation excluded, names joined by SEP), ``frame`` (an id of the op instance; null for
    #: NO_OP), the op instance's start/end, and whether the gap belongs to a stall
    gaps: pl.DataFrame
    #: one row per decode step: host_bound_ns, stall_ns (idle held by stalls), launch_issue_ns
    #: (the rest of host_bound_ns), stall_host_ns (host time of the stalling ops), issue_median_ns
    #: (median launch-to-launch interval), threshold_ns, launches, launch_span_ns (first to last
    #: launch), cpu_ops, events (cpu_ops + launches: what the profiler recorded), cpu_ns
    steps: pl.DataFrame
    #: the launching threads' frames, and the decode steps' CPU ranges (for ``position``)
    _frames: dict = field(default_factory=dict, repr=False)
    _decode: pl.DataFrame | None = field(default=None, repr=False)
    _positions: dict = field(default_factory=dict, repr=False)

    def position(self, step: int, op: str, frame: int | None) -> tuple[int | None, int]:
        """1-based occurrence of this op instance among the step's ops of the same name, and how
        many there are (e.g. (1, 28): the first of 28 attention calls — layer 0)."""
        frames = self._same_name(step, op)
        if frame is None or frame not in frames:
            return None, len(frames)
        return frames.index(frame) + 1, len(frames)

    def _same_name(self, step: int, op: str) -> list[int]:
        """The step's frames named ``op`` in time order (thread by thread), as frame ids."""
        key = (step, op)
        if key not in self._positions:
            out: list[int] = []
            if "ranges" not in self._positions and self._decode is not None:
                self._positions["ranges"] = {
                    st: (a, b) for st, a, b in self._decode.iter_rows()}
            rng = self._positions.get("ranges", {}).get(step)
            if rng is not None:
                s, e = rng
                for tid, fr in self._frames.items():
                    lo, hi = (int(x) for x in np.searchsorted(fr.start, [s, e]))
                    hits = (fr.names(np.arange(lo, hi)) == op).arg_true().to_numpy()
                    out.extend(tid * 10**9 + lo + k for k in hits.tolist())
            self._positions[key] = out
        return self._positions[key]


# -- the thread's frames (ops nest on one thread) ---------------------------------------------
@dataclass
class _Frames:
    """One thread's frames (CPU ops and CPU annotations) sorted by (start, -end): numpy columns,
    names fetched on demand from the trace's own name columns (no sorted copy of them)."""

    #: the trace's CPU op names, then its annotation names (the columns themselves, not copies)
    source_names: pl.Series
    #: the frame's row in ``source_names``
    row: np.ndarray
    start: np.ndarray
    end: np.ndarray
    parent: np.ndarray
    is_step: np.ndarray

    def names(self, ks: np.ndarray) -> pl.Series:
        """The names of frames ``ks`` (all >= 0)."""
        return self.source_names.gather(self.row[ks])


def _parents(st: np.ndarray, en: np.ndarray) -> np.ndarray:
    """The enclosing frame of each frame (-1: none), for frames sorted by (start, -end).

    A scan with a stack (pop while the top ended at or before this start; the top left is the
    parent) leaves as parent the *latest* earlier frame still open at this start, ``max{j < i :
    en[j] > st[i]}``: a frame popped earlier ended before an earlier start. Found for all frames at
    once by pointer jumping: each frame's candidate starts at the frame before it; a candidate that
    ended by the frame's start is replaced by the candidate's own candidate. Everything a jump
    skips ended by the candidate's start, hence by this one's (starts ascend), so the first
    candidate still open is the answer. Rounds: about log2 of the longest run skipped."""
    n = st.size
    cand = np.arange(-1, n - 1, dtype=np.int32)
    active = np.arange(1, n, dtype=np.int32)
    while active.size:
        c = cand[active]
        closed = (c >= 0) & (en[np.maximum(c, 0)] <= st[active])
        active, c = active[closed], c[closed]
        cand[active] = cand[c]
    return cand


def _frames(trace: Trace, steps: Steps, tid: int) -> _Frames:
    ops, ann = trace.cpu_ops, trace.annotations
    mine = np.nonzero((ops["tid"] == tid).fill_null(False).to_numpy())[0].astype(np.int32)
    mine_ann = np.nonzero((~ann["on_gpu"] & (ann["tid"] == tid)).fill_null(False).to_numpy())[0]

    def column(name: str) -> np.ndarray:
        a = ops[name].to_numpy()
        return np.concatenate([a if mine.size == a.size else a[mine],
                               ann[name].to_numpy()[mine_ann]]).astype(np.int64, copy=False)

    st, en = column("start_ns"), column("end_ns")
    order = np.lexsort((-en, st)).astype(np.int32)  # by start, the longer first (encloser first)
    st, en = st[order], en[order]
    row = np.concatenate([mine, (ops.height + mine_ann).astype(np.int32)])[order]
    del order
    names = pl.concat([ops["name"], ann["name"]], rechunk=False)
    ranges = steps.table.select("cpu_start_ns", "cpu_end_ns")
    step_ranges = set(ranges.iter_rows())
    is_step = np.isin(st, ranges["cpu_start_ns"].to_numpy())  # a step's start: check its end
    for k in np.nonzero(is_step)[0].tolist():
        is_step[k] = (int(st[k]), int(en[k])) in step_ranges
    frames = _Frames(names, row, st, en, _parents(st, en), is_step)
    release()  # the sort and the parent search freed several times what the frames keep
    return frames


def _attribute_gaps(fr: _Frames, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each gap [a, b): the attributed frame (or -1) and the innermost frame holding its
    midpoint (or -1), vectorized: walk every gap up its stack at once."""
    m = (a + b) / 2
    i = np.searchsorted(fr.start, m, side="right") - 1
    while True:  # up to the innermost frame that contains the midpoint
        out = (i >= 0) & (fr.end[np.maximum(i, 0)] <= m)
        if not out.any():
            break
        i = np.where(out, fr.parent[np.maximum(i, 0)], i)
    inner = np.where((i >= 0) & ~fr.is_step[np.maximum(i, 0)], i, -1)
    k = inner.copy()
    while True:  # up to the first frame covering half the gap; never the step annotation
        j = np.maximum(k, 0)
        cover = np.minimum(b, fr.end[j]) - np.maximum(a, fr.start[j])
        climb = (k >= 0) & (2 * cover < (b - a))
        if not climb.any():
            break
        k = np.where(climb, fr.parent[j], k)
        k = np.where((k >= 0) & fr.is_step[np.maximum(k, 0)], -1, k)
    return k, inner


#: joins the names of a stack in the ``stack`` column (a character no op name contains)
SEP = "\x1f"


def _stacks(fr: _Frames, ks: np.ndarray) -> pl.Series:
    """For each frame in ``ks`` (all >= 0): the names from the outermost frame below the step
    annotation down to it, joined by :data:`SEP`.

    A stack is a code into a dictionary of the distinct stacks (a few hundred: the same calls
    repeat every layer and step), built level by level from the parent's code and the frame's
    name code; only the distinct stacks are ever spelled out."""
    need, inverse = np.unique(ks, return_inverse=True)
    inchain = np.zeros(fr.start.size, dtype=bool)
    cur = need
    while cur.size:  # every frame on the way up, below the step annotation
        cur = cur[(cur >= 0)]
        cur = cur[~fr.is_step[cur] & ~inchain[cur]]
        inchain[cur] = True
        cur = fr.parent[cur]
    ids = np.nonzero(inchain)[0]  # ascending: a parent before its children
    pos = np.full(fr.start.size, -1, dtype=np.int64)
    pos[ids] = np.arange(ids.size)
    ppos = pos[np.maximum(fr.parent[ids], 0)]
    ppos[fr.parent[ids] < 0] = -1  # -1: the outermost frame below the step annotation
    names = fr.names(ids)
    distinct_names = names.unique(maintain_order=True)
    name_code = names.cast(pl.Enum(distinct_names)).to_physical().to_numpy().astype(np.int64)
    code = np.full(ids.size, -1, dtype=np.int64)  # the stack's code in `spelled`
    spelled: list[str] = []
    todo = ppos < 0
    parent_code = np.full(ids.size, -1, dtype=np.int64)
    while todo.any():  # one round per nesting level
        at = np.nonzero(todo)[0]
        key = parent_code[at] * (distinct_names.len() + 1) + name_code[at]
        uniq, back = np.unique(key, return_inverse=True)
        base = len(spelled)
        names_list = distinct_names.to_list()
        for k in uniq.tolist():
            pc, nc = divmod(k, distinct_names.len() + 1)
            spelled.append(f"{spelled[pc]}{SEP}{names_list[nc]}" if pc >= 0 else names_list[nc])
        code[at] = base + back.ravel()
        nxt = np.zeros(ids.size, dtype=bool)
        child = (ppos >= 0) & (code < 0)
        ready = child.copy()
        ready[child] = code[ppos[child]] >= 0
        parent_code[ready] = code[ppos[ready]]
        nxt[ready] = True
        todo = nxt
    return pl.Series(spelled, dtype=pl.Utf8).gather(code[pos[need]][inverse.ravel()])


_GAP_SCHEMA = {c: t for c, t in GAP_COLUMNS.items() if c != "stall"}


# -- entry point ------------------------------------------------------------------------------
def attribute(trace: Trace, steps: Steps) -> HostAttribution | None:
    """Attribute every host-bound gap of the decode steps; ``None`` when the trace has no CPU ops."""
    if not trace.has_cpu_ops or not trace.has_gpu:
        return None
    gaps = gap_table(trace, steps).filter(pl.col("class") == GapClass.HOST_BOUND.value)
    gaps = gaps.sort("start_ns")
    a, b = gaps["start_ns"].to_numpy(), gaps["end_ns"].to_numpy()
    # the op that ends each gap (the first op of the step table starting there), its launch's tid
    ops = steps.ops
    ender = first_row(ops["start_ns"].to_numpy(), np.ones(ops.height, bool), b)
    corr = ops["correlation"]
    corr_ok = corr.is_not_null().to_numpy()
    corr = corr.fill_null(0).to_numpy()
    has = ender >= 0
    has[has] = corr_ok[ender[has]]
    lc = trace.launches["correlation"]
    launch = np.full(a.size, -1)
    launch[has] = first_row(lc.fill_null(0).to_numpy(), lc.is_not_null().to_numpy(),
                             corr[ender[has]])
    ltid = trace.launches["tid"]
    tid_ok = np.zeros(a.size, bool)
    tid = np.zeros(a.size, np.int64)
    got = launch >= 0
    tid_ok[got] = ltid.is_not_null().to_numpy()[launch[got]]
    tid[got] = ltid.fill_null(0).to_numpy()[launch[got]]
    tid_ok &= got

    frames: dict[int, _Frames] = {}
    k = np.full(a.size, -1)
    frame = np.zeros(a.size, np.int64)
    op_start = np.zeros(a.size, np.int64)
    op_end = np.zeros(a.size, np.int64)
    names = np.full(a.size, None, dtype=object)
    stacks = pl.Series([""] * a.size, dtype=pl.Utf8)
    for t in dict.fromkeys(tid[tid_ok].tolist()):  # threads in order of their first gap
        rows = np.nonzero(tid_ok & (tid == t))[0]
        fr = frames[t] = _frames(trace, steps, t)
        kk, inner = _attribute_gaps(fr, a[rows], b[rows])
        k[rows] = kk
        hit = kk >= 0
        safe = np.maximum(kk, 0)
        frame[rows] = t * 10**9 + kk
        op_start[rows], op_end[rows] = fr.start[safe], fr.end[safe]
        if hit.any():
            names[rows[hit]] = fr.names(kk[hit]).to_list()
        top = np.where(hit, kk, inner)
        some = top >= 0
        if some.any():
            stacks = stacks.scatter(rows[some], _stacks(fr, top[some]))
    hit = k >= 0
    names[~hit] = NO_OP
    g = pl.DataFrame({
        "step": gaps["step"], "start_ns": gaps["start_ns"], "end_ns": gaps["end_ns"],
        "tid": pl.Series(tid, dtype=pl.Int64).set(pl.Series(~tid_ok), None)
        if (~tid_ok).any() else pl.Series(tid, dtype=pl.Int64),
        "op": pl.Series(names.tolist(), dtype=pl.Utf8),
        "stack": stacks,
        "frame": _nullable(frame, hit), "op_start_ns": _nullable(op_start, hit),
        "op_end_ns": _nullable(op_end, hit),
    }, schema=_GAP_SCHEMA)
    per_step = _per_step(trace, steps, g)
    g = _mark_stalls(g, per_step)
    per_step = per_step.join(_stall_sums(g), on="step", how="left").with_columns(
        pl.col("stall_ns", "stall_host_ns").fill_null(0)).with_columns(
        (pl.col("host_bound_ns") - pl.col("stall_ns")).alias("launch_issue_ns"))
    return HostAttribution(gaps=g, steps=per_step, _frames=frames, _decode=steps.decode.select(
        "step", "cpu_start_ns", "cpu_end_ns"))


def _nullable(values: np.ndarray, ok: np.ndarray) -> pl.Series:
    s = pl.Series(values, dtype=pl.Int64)
    return s if ok.all() else s.set(pl.Series(~ok), None)


def _per_step(trace: Trace, steps: Steps, g: pl.DataFrame) -> pl.DataFrame:
    """Per decode step: host-bound idle, the launch-to-launch median, the stall threshold, the
    span of the step's launches and how many host events the profiler recorded in the step."""
    decode = steps.decode.select("step", "cpu_start_ns", "cpu_end_ns").sort("cpu_start_ns")
    n = decode.height
    cs, ce = decode["cpu_start_ns"].to_numpy(), decode["cpu_end_ns"].to_numpy()
    tids = g["tid"].drop_nulls().unique()

    def in_step(df: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(the decode step's position, start) of each row on the launching threads that starts
        inside a decode step, by start: the last step starting at or before it, if not ended."""
        start = (df["start_ns"].filter(df["tid"].is_in(tids.implode()).fill_null(False))
                 if tids.len() else df["start_ns"]).drop_nulls().to_numpy()
        start = np.sort(start)
        i = np.searchsorted(cs, start, side="right") - 1
        ok = (i >= 0) & (start < ce[np.maximum(i, 0)]) if n else np.zeros(start.size, bool)
        return i[ok], start[ok]

    pos, at = in_step(trace.launches)
    launches = np.bincount(pos, minlength=n)
    cut = np.searchsorted(pos, np.arange(n + 1))  # pos ascends with start: steps are runs
    median = [float(np.median(np.diff(at[a:b]))) if b - a > 1 else None
              for a, b in zip(cut[:-1].tolist(), cut[1:].tolist())]
    span = [int(at[b - 1] - at[a]) if b > a else 0 for a, b in zip(cut[:-1].tolist(),
                                                                   cut[1:].tolist())]
    cpu_ops = np.bincount(in_step(trace.cpu_ops)[0], minlength=n)
    order = np.argsort(decode["step"].to_numpy(), kind="stable")
    gpos = order[np.searchsorted(decode["step"].to_numpy()[order], g["step"].to_numpy())]
    hb = np.zeros(n, dtype=np.int64)
    np.add.at(hb, gpos, (g["end_ns"] - g["start_ns"]).to_numpy())
    out = pl.DataFrame({
        "step": decode["step"],
        "host_bound_ns": pl.Series(hb, dtype=pl.Int64),
        "issue_median_ns": pl.Series(median, dtype=pl.Float64),
        "launches": pl.Series(launches, dtype=pl.UInt32),
        "launch_span_ns": pl.Series(span, dtype=pl.Int64),
        "cpu_ops": pl.Series(cpu_ops, dtype=pl.UInt32),
        "cpu_ns": pl.Series(ce - cs, dtype=pl.Int64),
    })
    out = out.with_columns((pl.col("launches") + pl.col("cpu_ops")).alias("events"))
    return out.with_columns(pl.max_horizontal(
        pl.col("issue_median_ns").fill_null(0) * STALL_FACTOR, pl.lit(STALL_MIN_NS)
    ).cast(pl.Int64).alias("threshold_ns"))


def _mark_stalls(g: pl.DataFrame, per_step: pl.DataFrame) -> pl.DataFrame:
    """A stall: an op instance holding ≥ threshold of the step's host-bound idle (a gap with no
    recorded op counts on its own)."""
    dur = pl.col("end_ns") - pl.col("start_ns")
    g = g.join(per_step.select("step", "threshold_ns"), on="step", how="left")
    key = pl.coalesce(pl.col("frame"), -pl.int_range(1, pl.len() + 1))  # NO_OP gaps: one each
    held = dur.sum().over("step", key)
    return g.with_columns((held >= pl.col("threshold_ns")).alias("stall")).drop("threshold_ns")


def _stall_sums(g: pl.DataFrame) -> pl.DataFrame:
    s = g.filter(pl.col("stall"))
    inst = s.group_by("step", "frame", "op_start_ns", "op_end_ns").agg(
        (pl.col("end_ns") - pl.col("start_ns")).sum().alias("idle"),
        (pl.col("end_ns") - pl.col("start_ns")).sum().alias("gap_sum"))
    host = pl.when(pl.col("frame").is_not_null()).then(
        pl.col("op_end_ns") - pl.col("op_start_ns")).otherwise(pl.col("gap_sum"))
    return inst.group_by("step").agg(pl.col("idle").sum().alias("stall_ns"),
                                     host.sum().alias("stall_host_ns"))


# -- summaries for the JSON contract ----------------------------------------------------------
def stall_table(h: HostAttribution, step_ids: list[int], latency_ms: float | None) -> list[dict]:
    """Stalls grouped by (op, stack) over ``step_ids``: ms per step, occurrences per step, share
    of the step latency, position in the step, what the same op costs when it does not stall,
    and the known cause (``specs/stalls.py``)."""
    n = max(len(step_ids), 1)
    g = h.gaps.filter(pl.col("stall") & pl.col("step").is_in(step_ids))
    if g.height == 0:
        return []
    inst = g.group_by("step", "frame", "op", "op_start_ns", "op_end_ns").agg(
        (pl.col("end_ns") - pl.col("start_ns")).sum().alias("idle_ns"),
        pl.col("stack").first(), pl.col("start_ns").min().alias("gap_start_ns")).sort("gap_start_ns")
    groups: dict[tuple, list[dict]] = {}
    for r in inst.iter_rows(named=True):
        groups.setdefault((r["op"], r["stack"]), []).append(r)
    normal = _normal_cost(h, step_ids)
    out = []
    for (op, stack), rs in groups.items():
        idle = sum(r["idle_ns"] for r in rs)
        host = [r["op_end_ns"] - r["op_start_ns"] for r in rs if r["frame"] is not None]
        pos = Counter(h.position(r["step"], op, r["frame"]) for r in rs).most_common(1)[0][0]
        frames = stack.split(SEP) if stack else []
        cause = match_cause(op if op != NO_OP else None, frames)
        out.append({
            "op": op, "stack": frames,
            "ms_per_step": idle / n / 1e6,
            "per_step": len(rs) / n,
            "count": len(rs),
            "share": (idle / n / 1e6) / latency_ms if latency_ms else None,
            "host_ms_per_step": sum(host) / n / 1e6 if host else None,
            "occurrence": pos[0], "of_per_step": pos[1],
            "normal_us": normal.get(op),
            "cause": cause.cause if cause else None,
            "advice": cause.advice if cause else None,
            "short_cause": cause.short_cause if cause else None,
            "short_advice": cause.short_advice if cause else None,
            "cause_id": cause.name if cause else None,
            "sources": list(cause.sources) if cause else [],
        })
    return sorted(out, key=lambda r: (-r["ms_per_step"], r["op"], r["stack"]))


def _normal_cost(h: HostAttribution, step_ids: list[int]) -> dict[str, float]:
    """Median host µs of each op name over its attributed instances that did not stall."""
    g = h.gaps.filter(~pl.col("stall") & pl.col("step").is_in(step_ids)
                      & pl.col("frame").is_not_null()).unique("frame")
    if g.height == 0:
        return {}
    agg = g.group_by("op").agg(((pl.col("op_end_ns") - pl.col("op_start_ns")).median() / 1e3)
                               .alias("us"))
    return dict(agg.iter_rows())


def by_op_table(h: HostAttribution, step_ids: list[int], n: int = 15) -> list[dict]:
    """Host-bound idle per attributed op name, per step: the ops the GPU waited on most."""
    k = max(len(step_ids), 1)
    g = h.gaps.filter(pl.col("step").is_in(step_ids))
    if g.height == 0:
        return []
    dur = pl.col("end_ns") - pl.col("start_ns")
    agg = g.group_by("op").agg(
        (dur.sum() / k / 1e6).alias("ms_per_step"),
        (pl.len() / k).alias("gaps_per_step"),
        (dur.filter(pl.col("stall")).sum() / k / 1e6).alias("stall_ms_per_step"),
        (dur.median() / 1e3).alias("median_gap_us"),
    )
    agg = agg.sort("op")  # group order varies run to run; a float sum must not
    total = agg["ms_per_step"].sum() or 1.0
    return agg.with_columns((pl.col("ms_per_step") / total).alias("share")).sort(
        ["ms_per_step", "op"], descending=[True, False]).head(n).to_dicts()
