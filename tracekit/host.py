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
from typing import TYPE_CHECKING

import numpy as np

from tracekit.breakdown import GAP_CLASSES, GapClass, gap_columns
from tracekit.contract import HostOp, Stall
from tracekit.memory import release
from tracekit.specs.stalls import match_cause
from tracekit.steps import Steps, first_row
from tracekit.trace.model import Trace
from tracekit.trace.table import Strings, Table

if TYPE_CHECKING:
    import polars as pl

#: a stall holds the host at least this many times the step's median launch-to-launch interval …
STALL_FACTOR = 20.0
#: … and at least this long
STALL_MIN_NS = 200_000
#: the name given to gaps that no single recorded op covers at least half of
NO_OP = "(no recorded op)"

#: the columns of ``HostAttribution.gaps`` and ``.steps`` (polars type names, see trace/table.py)
GAP_COLUMNS = {
    "step": "Int64", "start_ns": "Int64", "end_ns": "Int64", "tid": "Int64",
    "op": "Utf8", "stack": "Utf8", "frame": "Int64", "op_start_ns": "Int64",
    "op_end_ns": "Int64", "stall": "Boolean",
}
STEP_COLUMNS = {
    "step": "Int64", "host_bound_ns": "Int64", "issue_median_ns": "Float64",
    "launches": "UInt32", "launch_span_ns": "Int64", "cpu_ops": "UInt32", "cpu_ns": "Int64",
    "events": "UInt32", "threshold_ns": "Int64", "stall_ns": "Int64", "stall_host_ns": "Int64",
    "launch_issue_ns": "Int64",
}


@dataclass
class HostAttribution:
    """Per host-bound gap (``gaps``) and per decode step (``steps``) attribution.

    The analysis keeps both as numpy columns (``gaps_t``, ``steps_t``: :class:`Table`); the
    polars tables users query are built from them on first access."""

    #: one row per host-bound gap, in time order: step, start/end, launching tid, attributed op,
    #: its stack (outermost first, step annotation excluded, names joined by SEP), ``frame`` (an
    #: id of the op instance; null for NO_OP), the op instance's start/end, and whether the gap
    #: belongs to a stall
    gaps_t: Table
    #: one row per decode step: host_bound_ns, stall_ns (idle held by stalls), launch_issue_ns
    #: (the rest of host_bound_ns), stall_host_ns (host time of the stalling ops), issue_median_ns
    #: (median launch-to-launch interval), threshold_ns, launches, launch_span_ns (first to last
    #: launch), cpu_ops, events (cpu_ops + launches: what the profiler recorded), cpu_ns
    steps_t: Table
    #: the launching threads' frames, and the decode steps' CPU ranges (for ``position``)
    _frames: dict = field(default_factory=dict, repr=False)
    _decode: Table | None = field(default=None, repr=False)
    #: the frames' name codes index this list
    _names: list = field(default_factory=list, repr=False)
    _positions: dict = field(default_factory=dict, repr=False)
    _named: dict = field(default_factory=dict, repr=False)
    _polars: dict = field(default_factory=dict, repr=False)

    @property
    def gaps(self) -> pl.DataFrame:
        """``gaps_t`` as a polars DataFrame (columns :data:`GAP_COLUMNS`)."""
        if "gaps" not in self._polars:
            self._polars["gaps"] = self.gaps_t.to_polars()
        return self._polars["gaps"]

    @property
    def steps(self) -> pl.DataFrame:
        """``steps_t`` as a polars DataFrame (columns :data:`STEP_COLUMNS`)."""
        if "steps" not in self._polars:
            self._polars["steps"] = self.steps_t.to_polars()
        return self._polars["steps"]

    def gap_ops(self) -> dict[tuple[int, int], str]:
        """The op each host-bound gap is attributed to, by the gap's (step, start_ns)."""
        g = self.gaps_t
        return dict(zip(zip(g["step"].tolist(), g["start_ns"].tolist()), g["op"].tolist()))

    def step_columns(self, step_ids: list[int], names: list[str]) -> dict[str, list]:
        """Columns ``names`` of the steps ``step_ids`` as lists (None where null), in step order."""
        t = self.steps_t
        rows = np.nonzero(np.isin(t["step"], np.asarray(step_ids, dtype=np.int64)))[0]
        out = {}
        for c in names:
            vals = t[c][rows].tolist()
            if t.has_nulls(c):
                vals = [v if ok else None for v, ok in zip(vals, t.valid(c)[rows].tolist())]
            out[c] = vals
        return out

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
            if "ranges" not in self._positions:
                d = self._decode
                self._positions["ranges"] = {} if d is None else dict(zip(
                    d["step"].tolist(), zip(d["cpu_start_ns"].tolist(), d["cpu_end_ns"].tolist())))
            rng = self._positions["ranges"].get(step)
            if rng is not None:
                s, e = rng
                named = self._named.get(op)
                if named is None:  # which name codes spell ``op`` (once per op name)
                    named = self._named[op] = np.fromiter(
                        (v == op for v in self._names), bool, len(self._names))
                for tid, fr in self._frames.items():
                    lo, hi = (int(x) for x in np.searchsorted(fr.start, [s, e]))
                    hits = np.nonzero(named[fr.code[lo:hi]])[0]
                    out.extend(tid * 10**9 + lo + k for k in hits.tolist())
            self._positions[key] = out
        return self._positions[key]


# -- the thread's frames (ops nest on one thread) ---------------------------------------------
@dataclass
class _Frames:
    """One thread's frames (CPU ops and CPU annotations) sorted by (start, -end): numpy columns;
    a frame's name is a code into the attribution's list of distinct names."""

    code: np.ndarray
    start: np.ndarray
    end: np.ndarray
    parent: np.ndarray
    is_step: np.ndarray


def _parents(st: np.ndarray, en: np.ndarray, *, run: int = 1 << 16) -> np.ndarray:
    """The enclosing frame of each frame (-1: none), for frames sorted by (start, -end).

    A scan with a stack (pop while the top ended at or before this start; the top left is the
    parent) leaves as parent the *latest* earlier frame still open at this start, ``max{j < i :
    en[j] > st[i]}``: a frame popped earlier ended before an earlier start. Found for all frames at
    once by pointer jumping: each frame's candidate starts at the frame before it; a candidate that
    ended by the frame's start is replaced by the candidate's own candidate. Everything a jump
    skips ended by the candidate's start, hence by this one's (starts ascend), so the first
    candidate still open is the answer. Rounds: about log2 of the longest run skipped.

    Frames are taken in runs of ``run`` (in order), so the search's temporaries are bounded by the
    run, not the thread (~45 MB for the 1.5 M frames of a 1 GB trace). A jump into an earlier run
    lands on that frame's parent, which is already final and as valid a jump: everything between
    a frame and its parent ended by the frame's start."""
    n = st.size
    cand = np.arange(-1, n - 1, dtype=np.int32)
    for lo in range(1, n, run):
        active = np.arange(lo, min(lo + run, n), dtype=np.int32)
        while active.size:
            c = cand[active]
            closed = (c >= 0) & (en[np.maximum(c, 0)] <= st[active])
            active, c = active[closed], c[closed]
            cand[active] = cand[c]
    return cand


def _name_codes(trace: Trace) -> tuple[np.ndarray, np.ndarray, dict]:
    """One code per distinct name over the CPU ops and the annotations: each table's name codes
    mapped into it (``ops_map[code]``, ``ann_map[code]``), and the dict name -> code."""
    index: dict = {}
    maps = []
    for key in ("cpu_ops", "annotations"):
        values = trace.table(key)["name"].values
        maps.append(np.fromiter((index.setdefault(v, len(index)) for v in values), np.uint32,
                                len(values)))
    return maps[0], maps[1], index


def _frames(trace: Trace, steps: Steps, tid: int, ops_map: np.ndarray,
            ann_map: np.ndarray) -> _Frames:
    ops, ann = trace.table("cpu_ops"), trace.table("annotations")
    mine = np.nonzero(ops.valid("tid") & (ops["tid"] == tid))[0].astype(np.int32)
    mine_ann = np.nonzero(ann.valid("on_gpu") & ~ann["on_gpu"] & ann.valid("tid")
                          & (ann["tid"] == tid))[0]

    def column(name: str) -> np.ndarray:
        a = ops[name]
        return np.concatenate([a if mine.size == a.size else a[mine],
                               ann[name][mine_ann]]).astype(np.int64, copy=False)

    st, en = column("start_ns"), column("end_ns")
    order = _by_start_longer_first(st, en)
    st, en = st[order], en[order]
    code = np.concatenate([ops_map[ops["name"].codes[mine]],
                           ann_map[ann["name"].codes[mine_ann]]])[order]
    del order
    ranges = steps.table_t
    cs, ce = ranges["cpu_start_ns"], ranges["cpu_end_ns"]
    step_ranges = set(zip(cs.tolist(), ce.tolist()))
    # a step's start (then check its end); a binary search, not np.isin, which sorts a copy of
    # every frame's start once there are more than a few dozen steps
    starts = np.sort(cs)
    is_step = (starts[np.minimum(np.searchsorted(starts, st), starts.size - 1)] == st
               if starts.size else np.zeros(st.size, bool))
    for k in np.nonzero(is_step)[0].tolist():
        is_step[k] = (int(st[k]), int(en[k])) in step_ranges
    frames = _Frames(code, st, en, _parents(st, en), is_step)
    release()  # the sort and the parent search freed several times what the frames keep
    return frames


def _by_start_longer_first(st: np.ndarray, en: np.ndarray) -> np.ndarray:
    """The order by start, the longer first among equal starts (an encloser before what it holds):
    ``lexsort((-en, st))``. A profiler writes a thread's ops nearly in start order, and a stable
    sort of the starts alone is then a few times faster than the two-key sort (5 ms for the 140 k
    ops of a 92 MB trace); the two-key sort runs only where two starts are equal."""
    order = np.argsort(st, kind="stable")
    s = st[order]
    if s.size > 1 and bool((s[1:] == s[:-1]).any()):
        order = np.lexsort((-en, st))
    return order.astype(np.int32)


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


def _stacks(fr: _Frames, ks: np.ndarray, names: list) -> tuple[np.ndarray, list[str]]:
    """For each frame in ``ks`` (all >= 0): the names from the outermost frame below the step
    annotation down to it, joined by :data:`SEP`, as (codes, the distinct stacks they index).

    A stack is a code into a dictionary of the distinct stacks (a few hundred: the same calls
    repeat every layer and step), built level by level from the parent's code and the frame's
    name code; only the distinct stacks are ever spelled out."""
    inchain = np.zeros(fr.start.size, dtype=bool)
    cur = ks.astype(np.int32)
    while cur.size:  # every frame on the way up, below the step annotation (`ks` may repeat a
        cur = cur[(cur >= 0)]  # frame: the repeat only climbs along, no sort to drop it first)
        cur = cur[~fr.is_step[cur] & ~inchain[cur]]
        inchain[cur] = True
        cur = fr.parent[cur]
    # positions are int32 (a thread's frames number far below 2**31): at 1 GB of trace this
    # stage held ~1.5 M frames' worth of these arrays at once, the host stage's peak
    ids = np.nonzero(inchain)[0].astype(np.int32)  # ascending: a parent before its children
    del inchain, cur
    release()  # the climb's temporaries (each of these steps adds to the host stage's peak)
    pos = np.full(fr.start.size, -1, dtype=np.int32)
    pos[ids] = np.arange(ids.size, dtype=np.int32)
    ppos = pos[np.maximum(fr.parent[ids], 0)]
    ppos[fr.parent[ids] < 0] = -1  # -1: the outermost frame below the step annotation
    # a frame's name is already a code into `names`: keys (parent stack, name) sort as (parent
    # stack, name code), so each level's new stacks come in that order
    name_code = fr.code[ids]  # uint32
    width = len(names) + 1
    code = np.full(ids.size, -1, dtype=np.int32)  # the stack's code in `spelled`
    spelled: list[str] = []
    root = ppos < 0
    at = np.flatnonzero(root).astype(np.int32)  # this level's frames (chain positions)
    pending = np.flatnonzero(~root).astype(np.int32)  # the frames below it, not yet coded
    del root
    while at.size:  # one round per nesting level
        up = ppos[at]
        key = np.where(up >= 0, code[np.maximum(up, 0)], -1).astype(np.int64) * width
        key += name_code[at]
        uniq, back = _unique_inverse(key)
        del up, key
        base = len(spelled)
        for k in uniq.tolist():
            pc, nc = divmod(k, width)
            spelled.append(f"{spelled[pc]}{SEP}{names[nc]}" if pc >= 0 else names[nc])
        code[at] = base + back
        ready = code[ppos[pending]] >= 0  # the parent got its code: the next level
        at, pending = pending[ready], pending[~ready]
        del ready, back, uniq
        release()  # this level's temporaries, before the next level's
    return code[pos[ks]], spelled


def _unique_inverse(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(key, return_inverse=True)``, by a presence table when the keys span a small
    range (stack keys do: a few hundred stacks × the distinct names): no sort, and a fraction of
    the sort's memory (it held ~50 MB for the million frames of a 1 GB trace)."""
    if key.size == 0:
        return key, key
    lo = int(key.min())
    span = int(key.max()) - lo + 1
    if span > max(4 * key.size, 1 << 16):
        uniq, back = np.unique(key, return_inverse=True)
        return uniq, back.ravel()
    at = key - lo
    present = np.zeros(span, dtype=bool)
    present[at] = True
    rank = np.cumsum(present, dtype=np.int64) - 1
    return np.nonzero(present)[0] + lo, rank[at]


# -- entry point ------------------------------------------------------------------------------
def attribute(trace: Trace, steps: Steps) -> HostAttribution | None:
    """Attribute every host-bound gap of the decode steps; ``None`` when the trace has no CPU ops."""
    if not trace.has_cpu_ops or not trace.has_gpu:
        return None
    cols = gap_columns(trace, steps)
    sel = np.nonzero(cols["cls"] == GAP_CLASSES.index(GapClass.HOST_BOUND.value))[0]
    sel = sel[np.argsort(cols["start_ns"][sel], kind="stable")]
    gstep, a, b = (cols[c][sel].astype(np.int64, copy=False)
                   for c in ("step", "start_ns", "end_ns"))
    del cols, sel
    # the merged busy intervals (~26 MB at 1 GB of trace) are rebuilt if a timeline asks again:
    # this stage is the run's memory peak
    steps.derived.pop("windows", None)
    release()  # the gap search's temporaries (~70 MB at 1 GB of trace) before the frames
    # the op that ends each gap (the first op of the step table starting there), its launch's tid
    ops = steps.ops_t
    ender = first_row(ops["start_ns"], np.ones(ops.height, bool), b)
    corr_ok, corr = ops.valid("correlation"), ops.filled("correlation", 0)
    has = ender >= 0
    has[has] = corr_ok[ender[has]]
    calls = trace.table("launches")
    launch = np.full(a.size, -1)
    launch[has] = first_row(calls.filled("correlation", 0), calls.valid("correlation"),
                             corr[ender[has]])
    tid_ok = np.zeros(a.size, bool)
    tid = np.zeros(a.size, np.int64)
    got = launch >= 0
    tid_ok[got] = calls.valid("tid")[launch[got]]
    tid[got] = calls.filled("tid", 0)[launch[got]]
    tid_ok &= got
    tid[~tid_ok] = 0
    del ender, corr_ok, corr, has, launch, got

    ops_map, ann_map, index = _name_codes(trace)
    no_op = index.setdefault(NO_OP, len(index))
    names = list(index)
    frames: dict[int, _Frames] = {}
    k = np.full(a.size, -1)
    frame = np.zeros(a.size, np.int64)
    op_start = np.zeros(a.size, np.int64)
    op_end = np.zeros(a.size, np.int64)
    op = np.full(a.size, no_op, np.uint32)
    stack_index = {"": 0}
    stack = np.zeros(a.size, np.uint32)
    for t in dict.fromkeys(tid[tid_ok].tolist()):  # threads in order of their first gap
        rows = np.nonzero(tid_ok & (tid == t))[0]
        fr = frames[t] = _frames(trace, steps, t, ops_map, ann_map)
        if fr.start.size == 0:  # the launching thread recorded no CPU op
            continue
        kk, inner = _attribute_gaps(fr, a[rows], b[rows])
        k[rows] = kk
        hit = kk >= 0
        safe = np.maximum(kk, 0)
        frame[rows] = t * 10**9 + kk
        op_start[rows], op_end[rows] = fr.start[safe], fr.end[safe]
        op[rows[hit]] = fr.code[kk[hit]]
        top = np.where(hit, kk, inner)
        some = top >= 0
        if some.any():
            release()  # the climb's temporaries, before the stacks' own
            local, spelled = _stacks(fr, top[some], names)
            to_global = np.fromiter((stack_index.setdefault(s, len(stack_index)) for s in spelled),
                                    np.uint32, len(spelled))
            stack[rows[some]] = to_global[local]
    hit = k >= 0
    for col in (frame, op_start, op_end):
        col[~hit] = 0  # a null's slot holds 0
    g = Table({"step": gstep, "start_ns": a, "end_ns": b, "tid": tid, "op": Strings(op, names),
               "stack": Strings(stack, list(stack_index)), "frame": frame,
               "op_start_ns": op_start, "op_end_ns": op_end},
              {c: t for c, t in GAP_COLUMNS.items() if c != "stall"},
              masks={"tid": tid_ok, "frame": hit, "op_start_ns": hit, "op_end_ns": hit})
    release()  # the attribution's temporaries, before the per-step work
    per_step, gpos = _per_step(trace, steps, g)
    g = g.with_columns({"stall": "Boolean"}, stall=_mark_stalls(g, gpos, per_step["threshold_ns"]))
    stall_ns, stall_host_ns = _stall_sums(g, gpos, per_step["step"].size)
    per_step.update(stall_ns=stall_ns, stall_host_ns=stall_host_ns,
                    launch_issue_ns=per_step["host_bound_ns"] - stall_ns)
    valid = per_step.pop("issue_median_ok")
    steps_t = Table({c: per_step[c] for c in STEP_COLUMNS}, dict(STEP_COLUMNS),
                    masks={"issue_median_ns": valid})
    return HostAttribution(gaps_t=g, steps_t=steps_t, _frames=frames, _decode=steps.decode_t,
                           _names=names)


def _per_step(trace: Trace, steps: Steps, g: Table) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per decode step (in time order): host-bound idle, the launch-to-launch median, the stall
    threshold, the span of the step's launches and how many host events the profiler recorded in
    the step; and each gap's position among these steps."""
    decode = steps.decode_t
    o = np.argsort(decode["cpu_start_ns"], kind="stable")
    ids = decode["step"][o].astype(np.int64)
    cs, ce = decode["cpu_start_ns"][o], decode["cpu_end_ns"][o]
    n = ids.size
    # (return_counts: numpy's plain unique() imports numpy.ma, 13 ms, to ask if a mask is set)
    tids = np.unique(g["tid"][g.valid("tid")], return_counts=True)[0]

    def in_step(t: Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The sorted starts of the rows on the launching threads, and each decode step's run of
        them (``starts[lo[k]:hi[k]]``), by binary search on the sorted starts."""
        ok = t.valid("start_ns")
        if tids.size:
            ok = ok & t.valid("tid") & np.isin(t["tid"], tids)
        start = t["start_ns"][ok]  # a copy: sorted in place
        start.sort()
        return (start, *_runs(start, cs, ce))

    at, lo, hi = in_step(trace.table("launches"))
    launches = hi - lo
    bounds = list(zip(lo.tolist(), hi.tolist()))
    median = np.array([float(np.median(np.diff(at[a:b]))) if b - a > 1 else 0.0
                       for a, b in bounds], dtype=np.float64)
    median_ok = launches > 1
    span = np.array([int(at[b - 1] - at[a]) if b > a else 0 for a, b in bounds], dtype=np.int64)
    del at
    cpu_ops = _count_in_runs(trace.table("cpu_ops"), tids, cs, ce)
    order = np.argsort(ids, kind="stable")
    gpos = order[np.searchsorted(ids[order], g["step"])] if n else np.zeros(g.height, np.int64)
    hb = np.zeros(n, dtype=np.int64)
    np.add.at(hb, gpos, g["end_ns"] - g["start_ns"])
    threshold = np.maximum(median * STALL_FACTOR, float(STALL_MIN_NS)).astype(np.int64)
    return {
        "step": ids, "host_bound_ns": hb, "issue_median_ns": median,
        "issue_median_ok": median_ok, "launches": launches.astype(np.uint32),
        "launch_span_ns": span, "cpu_ops": cpu_ops.astype(np.uint32),
        "cpu_ns": (ce - cs).astype(np.int64),
        "events": (launches + cpu_ops).astype(np.uint32), "threshold_ns": threshold,
    }, gpos


def _runs(start: np.ndarray, cs: np.ndarray, ce: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted ``start`` and ranges sorted by start ``cs`` (ends ``ce``): each range's run
    ``start[lo[k]:hi[k]]`` of the values that belong to it — a value belongs to the last range
    starting at or before it, if that range has not ended. So range k holds the values in
    ``[cs[k], min(ce[k], cs[k + 1]))``: two binary searches, no per-value step index."""
    upper = np.minimum(ce, np.append(cs[1:], np.iinfo(np.int64).max)) if cs.size else ce
    lo = np.searchsorted(start, cs, side="left")
    return lo, np.maximum(np.searchsorted(start, upper, side="left"), lo)


def _count_in_runs(t: Table, tids: np.ndarray, cs: np.ndarray, ce: np.ndarray, *,
                   run: int = 1 << 16) -> np.ndarray:
    """How many rows of ``t`` on the threads ``tids`` (any thread if none) each range holds, by
    the rule of :func:`_runs`: the last range starting at or before the row's start, if that
    range has not ended. Counted ``run`` rows at a time, so a million CPU ops need no sorted
    copy of their starts (~12 MB at 1 GB of trace, at the host stage's memory peak)."""
    counts = np.zeros(cs.size, np.int64)
    if cs.size == 0:
        return counts
    start, valid = t["start_ns"], t.valid("start_ns")
    tid, tid_ok = t["tid"], t.valid("tid")
    for a in range(0, t.height, run):
        s = start[a:a + run]
        ok = valid[a:a + run]
        if tids.size:
            ok = ok & tid_ok[a:a + run] & np.isin(tid[a:a + run], tids)
        k = np.searchsorted(cs, s, side="right") - 1
        inside = ok & (k >= 0)
        inside[inside] = s[inside] < ce[k[inside]]
        counts += np.bincount(k[inside], minlength=cs.size)
    return counts


def _mark_stalls(g: Table, gpos: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """A stall: an op instance holding ≥ threshold of the step's host-bound idle (a gap with no
    recorded op counts on its own)."""
    n = g.height
    if n == 0:
        return np.zeros(0, bool)
    key = np.where(g.valid("frame"), g["frame"], -np.arange(1, n + 1))  # NO_OP gaps: one each
    step = g["step"]
    o = np.lexsort((key, step))
    new = _run_starts(step[o], key[o])
    held = np.empty(n, np.int64)
    held[o] = np.add.reduceat((g["end_ns"] - g["start_ns"])[o], np.nonzero(new)[0])[
        np.cumsum(new) - 1]
    return held >= threshold[gpos]


def _stall_sums(g: Table, gpos: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per step: the idle held by stalls, and the host time of the stalling op instances (a
    stalled gap with no recorded op counts its own length)."""
    stall, hit = g["stall"], g.valid("frame")
    dur = g["end_ns"] - g["start_ns"]
    idle = np.zeros(n, np.int64)
    np.add.at(idle, gpos[stall], dur[stall])
    host = np.zeros(n, np.int64)
    r = np.nonzero(stall & hit)[0]
    if r.size:  # each op instance once
        r = r[np.lexsort((g["frame"][r], gpos[r]))]
        r = r[_run_starts(gpos[r], g["frame"][r])]
        np.add.at(host, gpos[r], g["op_end_ns"][r] - g["op_start_ns"][r])
    lone = stall & ~hit
    np.add.at(host, gpos[lone], dur[lone])
    return idle, host


# -- summaries for the JSON contract ----------------------------------------------------------
def stall_table(h: HostAttribution, step_ids: list[int], latency_ms: float | None) -> list[Stall]:
    """Stalls grouped by (op, stack) over ``step_ids``: ms per step, occurrences per step, share
    of the step latency, position in the step, what the same op costs when it does not stall,
    and the known cause (``specs/stalls.py``)."""
    n = max(len(step_ids), 1)
    g = h.gaps_t
    rows = np.nonzero(g["stall"] & _in_steps(g, step_ids))[0]
    if rows.size == 0:
        return []
    # op instances (one per stalled frame; a step's stalled gaps with no op form one), in order
    # of their first gap
    inst: dict[tuple, dict] = {}
    hit = g.valid("frame")[rows].tolist()
    for st, fr, ok, op, stack, os_, oe, a, b in zip(
            g["step"][rows].tolist(), g["frame"][rows].tolist(), hit,
            g["op"].take(rows).tolist(), g["stack"].take(rows).tolist(),
            g["op_start_ns"][rows].tolist(), g["op_end_ns"][rows].tolist(),
            g["start_ns"][rows].tolist(), g["end_ns"][rows].tolist()):
        key = (st, fr if ok else None)
        r = inst.get(key)
        if r is None:
            inst[key] = {"step": st, "frame": fr if ok else None, "op": op,
                         "op_start_ns": os_ if ok else None, "op_end_ns": oe if ok else None,
                         "idle_ns": b - a, "stack": stack}
        else:
            r["idle_ns"] += b - a
    groups: dict[tuple, list[dict]] = {}
    for r in inst.values():
        groups.setdefault((r["op"], r["stack"]), []).append(r)
    normal = _normal_cost(h, step_ids)
    out: list[Stall] = []
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


def _in_steps(g: Table, step_ids: list[int]) -> np.ndarray:
    return np.isin(g["step"], np.asarray(step_ids, dtype=np.int64))


def _groups(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows grouped by code: (the distinct codes, a stable order of the rows by code, the start
    of each code's run in that order)."""
    order = np.argsort(codes, kind="stable")
    sc = codes[order]
    starts = np.nonzero(_run_starts(sc))[0]
    return sc[starts], order, starts


def _run_starts(*keys: np.ndarray) -> np.ndarray:
    """For rows sorted by ``keys``: which rows start a run of equal keys."""
    new = np.ones(keys[0].size, bool)
    if new.size:
        new[1:] = False
        for k in keys:
            new[1:] |= k[1:] != k[:-1]
    return new


def _normal_cost(h: HostAttribution, step_ids: list[int]) -> dict[str, float]:
    """Median host µs of each op name over its attributed instances that did not stall."""
    g = h.gaps_t
    rows = np.nonzero(~g["stall"] & _in_steps(g, step_ids) & g.valid("frame"))[0]
    if rows.size == 0:
        return {}
    rows = rows[np.unique(g["frame"][rows], return_index=True)[1]]  # each op instance once
    host = g["op_end_ns"][rows] - g["op_start_ns"][rows]
    codes, order, starts = _groups(g["op"].codes[rows])
    names = g["op"].values
    us = [float(np.median(d)) / 1e3 for d in np.split(host[order], starts[1:])]
    return dict(zip((names[c] for c in codes.tolist()), us))


def by_op_table(h: HostAttribution, step_ids: list[int], n: int = 15) -> list[HostOp]:
    """Host-bound idle per attributed op name, per step: the ops the GPU waited on most."""
    k = max(len(step_ids), 1)
    g = h.gaps_t
    rows = np.nonzero(_in_steps(g, step_ids))[0]
    if rows.size == 0:
        return []
    dur = g["end_ns"][rows] - g["start_ns"][rows]
    stall = g["stall"][rows]
    codes, order, starts = _groups(g["op"].codes[rows])
    names = g["op"].values
    parts = np.split(dur[order], starts[1:])
    stalled = np.split(stall[order], starts[1:])
    # sums of integer ns (exact, in any order); each figure is then one division
    total = int(dur.sum()) or 1
    agg: list[HostOp] = [
        {"op": names[c], "ms_per_step": int(d.sum()) / k / 1e6, "gaps_per_step": d.size / k,
         "stall_ms_per_step": int(d[s].sum()) / k / 1e6,
         "median_gap_us": float(np.median(d)) / 1e3, "share": int(d.sum()) / total}
        for c, d, s in zip(codes.tolist(), parts, stalled)]
    return sorted(agg, key=lambda r: (-r["ms_per_step"], r["op"]))[:n]
