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
from tracekit.specs.stalls import match_cause
from tracekit.steps import Steps
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
            rng = self._decode.filter(pl.col("step") == step) if self._decode is not None else None
            if rng is not None and rng.height:
                s, e = rng["cpu_start_ns"][0], rng["cpu_end_ns"][0]
                for tid, fr in self._frames.items():
                    lo, hi = (int(x) for x in np.searchsorted(fr.start, [s, e]))
                    hits = (fr.name.slice(lo, hi - lo) == op).arg_true().to_numpy()
                    out.extend(tid * 10**9 + lo + k for k in hits.tolist())
            self._positions[key] = out
        return self._positions[key]


# -- the thread's frames (ops nest on one thread) ---------------------------------------------
@dataclass
class _Frames:
    name: pl.Series
    start: np.ndarray
    end: np.ndarray
    parent: np.ndarray
    is_step: np.ndarray


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
    cand = np.arange(-1, n - 1, dtype=np.int64)
    active = np.arange(1, n, dtype=np.int64)
    while active.size:
        c = cand[active]
        closed = (c >= 0) & (en[np.maximum(c, 0)] <= st[active])
        active, c = active[closed], c[closed]
        cand[active] = cand[c]
    return cand


def _frames(trace: Trace, steps: Steps, tid: int) -> _Frames:
    ops = trace.cpu_ops.filter(pl.col("tid") == tid).select("name", "start_ns", "end_ns")
    ann = trace.annotations.filter(~pl.col("on_gpu") & (pl.col("tid") == tid)).select(
        "name", "start_ns", "end_ns")
    f = pl.concat([ops, ann]).sort(["start_ns", "end_ns"], descending=[False, True])
    st = f["start_ns"].to_numpy().astype(np.int64, copy=False)
    en = f["end_ns"].to_numpy().astype(np.int64, copy=False)
    ranges = steps.table.select("cpu_start_ns", "cpu_end_ns").sort("cpu_start_ns", "cpu_end_ns")
    rs = ranges["cpu_start_ns"].to_numpy()
    re_ = ranges["cpu_end_ns"].to_numpy()
    lo = np.searchsorted(rs, st, side="left")
    hi = np.searchsorted(rs, st, side="right")
    is_step = np.zeros(st.size, dtype=bool)
    for d in range(int((hi - lo).max()) if st.size else 0):  # ranges with this start: ~1
        at = lo + d
        ok = at < hi
        is_step[ok] |= re_[at[ok]] == en[ok]
    return _Frames(f["name"], st, en, _parents(st, en), is_step)


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
    annotation down to it, joined by :data:`SEP`. Each frame's stack is built once, from its
    parent's (a parent comes before its children in the frames' order)."""
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
    depth = np.where(ppos < 0, 0, -1)
    while (depth < 0).any():  # one round per nesting level
        todo = np.nonzero(depth < 0)[0]
        ready = depth[ppos[todo]] >= 0
        depth[todo[ready]] = depth[ppos[todo[ready]]] + 1
    names = fr.name.gather(ids)
    out = pl.Series([None] * ids.size, dtype=pl.Utf8)
    for d in range(int(depth.max()) + 1 if ids.size else 0):  # stacks built level by level
        at = np.nonzero(depth == d)[0]
        level = names.gather(at)
        if d:
            level = pl.select(pl.concat_str([out.gather(ppos[at]), level], separator=SEP)
                              ).to_series()
        out = out.scatter(at, level)
    return out.gather(pos[need]).gather(inverse.ravel())


def _first_row(keys: np.ndarray, valid: np.ndarray, query: np.ndarray) -> np.ndarray:
    """For each query value, the first row (in table order) whose key equals it, else -1 (a
    vectorized ``unique(keep="first")`` + left join)."""
    rows = np.nonzero(valid)[0]
    order = rows[np.argsort(keys[rows], kind="stable")]
    sk = keys[order]
    at = np.searchsorted(sk, query, side="left")
    hit = at < sk.size
    hit[hit] = sk[at[hit]] == query[hit]
    return np.where(hit, order[np.minimum(at, max(sk.size - 1, 0))], -1)


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
    ender = _first_row(ops["start_ns"].to_numpy(), np.ones(ops.height, bool), b)
    corr = ops["correlation"]
    corr_ok = corr.is_not_null().to_numpy()
    corr = corr.fill_null(0).to_numpy()
    has = ender >= 0
    has[has] = corr_ok[ender[has]]
    lc = trace.launches["correlation"]
    launch = np.full(a.size, -1)
    launch[has] = _first_row(lc.fill_null(0).to_numpy(), lc.is_not_null().to_numpy(),
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
            names[rows[hit]] = fr.name.gather(kk[hit]).to_list()
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
    tids = g["tid"].drop_nulls().unique().to_list()

    def in_step(df: pl.DataFrame) -> pl.DataFrame:
        df = df.filter(pl.col("tid").is_in(tids)) if tids else df
        return df.sort("start_ns").join_asof(
            decode, left_on="start_ns", right_on="cpu_start_ns", strategy="backward").filter(
            pl.col("step").is_not_null() & (pl.col("start_ns") < pl.col("cpu_end_ns")))

    launches = in_step(trace.launches)
    issue = launches.group_by("step").agg(
        pl.col("start_ns").diff().median().alias("issue_median_ns"), pl.len().alias("launches"),
        (pl.col("start_ns").max() - pl.col("start_ns").min()).alias("launch_span_ns"))
    ops = in_step(trace.cpu_ops).group_by("step").agg(pl.len().alias("cpu_ops"))
    hb = g.group_by("step").agg((pl.col("end_ns") - pl.col("start_ns")).sum().alias("host_bound_ns"))
    out = (decode.join(hb, on="step", how="left").join(issue, on="step", how="left")
           .join(ops, on="step", how="left").with_columns(
        pl.col("host_bound_ns", "launches", "cpu_ops", "launch_span_ns").fill_null(0),
        (pl.col("cpu_end_ns") - pl.col("cpu_start_ns")).alias("cpu_ns")))
    out = out.with_columns((pl.col("launches") + pl.col("cpu_ops")).alias("events"))
    return out.with_columns(pl.max_horizontal(
        pl.col("issue_median_ns").fill_null(0) * STALL_FACTOR, pl.lit(STALL_MIN_NS)
    ).cast(pl.Int64).alias("threshold_ns")).drop("cpu_start_ns", "cpu_end_ns")


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
