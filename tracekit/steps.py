"""Find the decode steps in a trace, and which GPU op belongs to which step.

A step is **one model forward pass** — never a layer, never a whole ``generate()`` call. Traces
mark passes in different ways, so detection tries, in order (the first that finds steps wins, and
its name is reported):

1. ``marker``        — annotations matching the user's ``--step-marker REGEX``;
2. ``tracekit``      — ``tracekit.step#N`` ranges written by ``tracekit capture``;
3. the stacks' own markers (:mod:`tracekit.specs.markers`, data with sources): ``sglang_step``,
   ``vllm_execute``, ``trtllm_forward`` (one range is one pass, its name states kind and batch),
   ``profiler_step`` (``ProfilerStep#N``), ``compiled_graph`` (torch.compile's graph calls);
4. ``annotation``    — any other repeating user annotation (``decode_step#3``), the one family of
   ranges that covers the most GPU work with the fewest ranges;
5. ``graph_launch``  — ``cudaGraphLaunch``/``hipGraphLaunch`` calls, grouped by the period of the
   graphs they replay;
6. ``forward_pass``  — no marker at all: the passes found from the kernel sequence
   (:func:`find_passes`: once-per-pass kernels recur at a pass's length, never a layer's);
7. ``kernel_period`` — the last resort, with a warning: the period of the kernel-name sequence.

A generic range (3's ``ProfilerStep`` and compiled graphs, 4 and 5) is checked against the passes
the kernels show: ranges that hold a piece of a pass, or several passes, give way to the passes.

Each method yields host-side (CPU) ranges. **Membership**: a GPU op belongs to a step if the call
that launched it (matched by correlation id) started inside the step's CPU range; the kernels of a
graph replay share their ``cudaGraphLaunch``'s id and so its step. An op launched before the
profiled window (no call of its own in the trace, an id below every call's) is in no step:
counted apart and flagged.

Every step has a kind: from its marker's name, else from the token ids its embedding lookup was
fed (recorded shapes), else from its GPU work. Steps that are not decode steps are flagged, never
silently mixed in: ``prefill`` (the prompt: stated, or several times the median GPU work, or a
first pass running other GEMM/attention kernels than the decode passes), ``mixed`` (chunked
prefill and decode), ``partial`` (far fewer kernels than the median, e.g. cut off by the profiler
window), ``empty`` (no GPU op in a GPU trace) and ``idle`` (an engine step with no pass).

    >>> steps = detect_steps(trace)            # doctest: +SKIP
    >>> steps.method, steps.table.height       # doctest: +SKIP
    ('forward_pass', 8)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from tracekit.errors import BadUsage, NoStepsError
from tracekit.specs.kernels import KernelCategory, categorize
from tracekit.specs.markers import MARKERS, kind_of
from tracekit.trace.model import Trace
from tracekit.trace.shapes import EMBEDDING_OPS, embedding_inputs
from tracekit.trace.table import Strings, Table

TRACEKIT_STEP = re.compile(r"^tracekit\.step#\d+\Z")
PROFILER_STEP = re.compile(r"^ProfilerStep#\d+\Z")
_DIGITS = re.compile(r"\d+")

#: a step with more than this many times the median GPU time is prefill, not decode
PREFILL_FACTOR = 3.0
#: a step with fewer than this fraction of the median kernel count is partial
PARTIAL_FRACTION = 0.8

#: the step table's columns (polars type names; see tracekit.trace.table)
STEPS = {"step": "Int64", "name": "Utf8", "cpu_start_ns": "Int64", "cpu_end_ns": "Int64",
         "kind": "Utf8", "batch": "Int64"}
_RANGES = {k: v for k, v in STEPS.items() if k != "step"}


def __getattr__(name: str):
    if name == "STEPS_SCHEMA":  # the polars form, for users (importing polars costs 0.13 s)
        from tracekit.trace.model import polars_schema

        return polars_schema(STEPS)
    raise AttributeError(name)


@dataclass
class Steps:
    """Detected steps plus the GPU ops with their step (``step`` null when outside every step).

    ``table_t``/``ops_t`` are the tables as numpy columns (what the analysis reads);
    ``table``/``ops``/``decode`` the same as polars DataFrames, built on first use."""

    table_t: Table
    ops_t: Table
    method: str
    detail: str
    warnings: list[str] = field(default_factory=list)
    #: what one decode step contains, in words ("1 forward pass: 28 attention kernels, …")
    contents: str | None = None
    #: what later stages derive from ``ops`` once and share (breakdown's merged busy intervals)
    derived: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def table(self):
        """One row per step (step, name, cpu_start_ns, cpu_end_ns, kind), by step."""
        if "table" not in self.derived:
            self.derived["table"] = self.table_t.to_polars()
        return self.derived["table"]

    @property
    def ops(self):
        """The GPU ops sorted by start, with their launch call and ``step``."""
        if "ops" not in self.derived:
            self.derived["ops"] = self.ops_t.to_polars()
        return self.derived["ops"]

    @property
    def decode(self):
        import polars as pl

        return self.table.filter(pl.col("kind") == "decode")

    @property
    def decode_t(self) -> Table:
        """The decode steps' rows of ``table_t``."""
        t = self.table_t
        return t.take(np.nonzero(t["kind"].eq("decode"))[0])


# -- entry point ------------------------------------------------------------------------------
def detect_steps(trace: Trace, *, step_marker: str | None = None,
                 layers: int | None = None, require_decode: bool = True) -> Steps:
    """Detect the steps of ``trace`` (see the module docstring for the order).

    ``layers``: the model's layer count when it is known; a pass found from the kernels alone must
    then hold that many attention kernels. ``require_decode``: raise :class:`NoStepsError` when no
    step is a decode step (False: return the prefill / mixed steps as they are)."""
    ops, order = _ops_with_launch(trace)
    _check_gpu_clock(ops)
    ann = trace.table("annotations")
    cpu_ann = ann.take(np.nonzero(~ann.filled("on_gpu", True))[0])
    found: tuple | None = None
    notes: list[str] = []
    passes = _LazyPasses(ops, layers)

    if step_marker is not None:
        ranges = _top_level(cpu_ann.take(np.nonzero(_marker_matches(step_marker, cpu_ann))[0]))
        if ranges.height == 0:
            raise NoStepsError(
                f"--step-marker {step_marker!r} matched no annotation; annotations in the trace: "
                f"{_some_names(cpu_ann)}"
            )
        found = (_stated_kinds(ranges), "marker",
                 f"{ranges.height} ranges matching {step_marker!r}")
    if found is None:
        found = _by_name(cpu_ann, TRACEKIT_STEP, "tracekit", "tracekit.step#N")
    if found is None:
        found = _stack_markers(cpu_ann, ops, passes, notes)
    if found is None:
        found = _as_passes(_repeating_annotation(cpu_ann, ops), ops, passes, notes)
    if found is None:
        found = _as_passes(_graph_launches(trace, ops), ops, passes, notes)
    if found is None and (whole := passes.get()) is not None and whole.whole:
        found = _forward_passes(passes.launch_times(), whole)
    if found is None:
        found = _kernel_period(ops)
    if found is None:
        raise NoStepsError(
            "no decode steps found: no annotations, graph launches or repeating kernel sequence; "
            "pass --step-marker REGEX naming the annotation around each step"
        )
    ranges, method, detail = found
    ranges = ranges.take(np.argsort(ranges["cpu_start_ns"], kind="stable"))
    if method != "tracekit":  # tracekit's own steps are decode steps of one sequence
        ranges = _kinds_from_shapes(trace, ranges)
    table = Table({"step": np.arange(ranges.height, dtype=np.int64), **ranges.cols}, STEPS,
                  {"batch": ranges.masks.get("batch")})
    ops = _assign(ops, table, trace.table("launches"))
    trace._share("gpu_ops", ops, order)  # one copy of the GPU ops' columns, not two
    table, warnings = _flag(table, ops, has_gpu=trace.has_gpu, require_decode=require_decode)
    warnings = notes + warnings + _outside_warning(ops, table)
    contents = _contents(ops, table, passes.get() if method in ("forward_pass", "graph_launch")
                         else None)
    if method == "kernel_period":
        warnings.append(
            "tracekit cannot tell a forward pass from a layer in this trace: the kernel sequence "
            "repeats, but no kernel that runs once per pass (embedding lookup, argmax or "
            "sampling) recurs at the step's period, so a step may be a layer or several passes. "
            "Pass --step-marker REGEX, or profile with record_function around each decode step")
    return Steps(table_t=table, ops_t=ops, method=method, detail=detail, warnings=warnings,
                 contents=contents)


class _LazyPasses:
    """The trace's kernels in launch order, their launch times and :func:`find_passes` over them,
    each computed once, on first use (the methods that check their ranges share them)."""

    def __init__(self, ops: Table, layers: int | None) -> None:
        self.ops, self.layers, self._done = ops, layers, False
        self._value: Passes | None = None
        self._kernels: Table | None = None

    def kernels(self) -> Table:
        if self._kernels is None:
            self._kernels = _kernels_in_launch_order(self.ops)
        return self._kernels

    def launch_times(self) -> np.ndarray:
        return launch_or_start(self.kernels())

    def get(self) -> Passes | None:
        if not self._done:
            self._done = True
            kernels = self.kernels()
            self._value = find_passes(kernels, layers=self.layers) if kernels.height else None
        return self._value


def _kernels_in_launch_order(ops: Table) -> Table:
    kernels = ops.take(np.nonzero(ops["kind"].eq("kernel"))[0])
    return kernels.take(np.argsort(launch_or_start(kernels), kind="stable"))


def _as_passes(found, ops: Table, passes: _LazyPasses, notes: list[str]):
    """``found`` if its ranges are forward passes; None (with a note) where they are pieces of a
    pass (a layer, a piecewise graph) or hold several passes each, as the kernels show."""
    if found is None:
        return None
    ranges = found[0]
    p = passes.get()
    if p is None or not p.whole or ranges.height == 0 or not ops.height:
        return found
    at = passes.launch_times()
    per = np.searchsorted(at, ranges["cpu_end_ns"]) - np.searchsorted(at, ranges["cpu_start_ns"])
    held = per[per > 0]
    if held.size == 0:
        return found
    med = float(np.median(held))
    if med < 0.6 * p.period:
        notes.append(f"{found[1]} ranges ({found[2]}) hold ~{med:.0f} kernels each, a piece of "
                     f"a {p.period}-kernel forward pass: steps are the passes instead")
        return None
    if med > 1.8 * p.period and found[1] not in ("marker",):
        notes.append(f"{found[1]} ranges ({found[2]}) hold ~{med / p.period:.1f} forward passes "
                     "each: steps are the passes inside them")
        return None
    return found


def _marker_matches(step_marker: str, ann: Table) -> np.ndarray:
    """Which annotations the user's ``--step-marker`` matches.

    The pattern runs in polars' regex engine (Rust's ``regex`` crate, the RE2 design): matching
    takes time linear in the name whatever the pattern, so ``(a+)+$`` cannot hang on a long
    annotation name the way it does in Python's backtracking ``re``. The price: no look-around and
    no backreferences, which a step marker does not need; such a pattern gets a usage error.
    It runs once per distinct name (polars is imported only for this flag).
    """
    import polars as pl

    names: Strings = ann["name"]
    try:
        per_value = pl.Series(names.values, dtype=pl.Utf8).str.contains(step_marker)
    except pl.exceptions.PolarsError as exc:
        why = str(exc).split("This error occurred")[0].strip().replace("\n", " ")
        why = " ".join(why.split())
        raise BadUsage(f"--step-marker {step_marker!r} is not a regular expression tracekit can "
                       f"run ({why}); look-around and backreferences are not supported") from None
    hit = per_value.fill_null(False).to_numpy().astype(bool)
    return hit[names.codes] if hit.size else np.zeros(names.codes.size, dtype=bool)


# -- membership -------------------------------------------------------------------------------
def _ops_with_launch(trace: Trace) -> tuple[Table, np.ndarray]:
    """GPU ops sorted by start, with the start/end/kind of the call that launched them (the first
    launch call with the op's correlation id); and the order (rows of ``gpu_ops``) they are in."""
    ops, calls = trace.table("gpu_ops"), trace.table("launches")
    row = first_row(calls.filled("correlation", 0), calls.valid("correlation"),
                    ops.filled("correlation", 0))
    row[~ops.valid("correlation")] = -1
    hit = row >= 0
    take = np.maximum(row, 0)
    if calls.height:
        ls, le = calls["start_ns"][take], calls["end_ns"][take]
        kinds = calls["kind"]
        lk = Strings(np.where(hit, kinds.codes[take], len(kinds.values)).astype(np.uint32),
                     [*kinds.values, None])
    else:
        ls = le = np.zeros(ops.height, np.int64)
        lk = Strings.full(None, ops.height)
    out = ops.with_columns(
        {"launch_start_ns": "Int64", "launch_end_ns": "Int64", "launch_kind": "Utf8"},
        masks={"launch_start_ns": hit, "launch_end_ns": hit},
        launch_start_ns=np.where(hit, ls, 0), launch_end_ns=np.where(hit, le, 0), launch_kind=lk)
    order = np.argsort(out["start_ns"], kind="stable")
    return out.take(order), order


def first_row(keys: np.ndarray, valid: np.ndarray, query: np.ndarray) -> np.ndarray:
    """For each query value, the first row (in table order) among the ``valid`` ones whose key
    equals it, else -1: a vectorized ``unique(keep="first")`` + left join."""
    rows = np.nonzero(valid)[0]
    if rows.size == 0:  # nothing to match (a trace without launch records)
        return np.full(query.shape, -1, dtype=np.int64)
    order = rows[np.argsort(keys[rows], kind="stable")]
    sk = keys[order]
    at = np.searchsorted(sk, query, side="left")
    hit = at < sk.size
    hit[hit] = sk[at[hit]] == query[hit]
    return np.where(hit, order[np.minimum(at, sk.size - 1)], -1)


def launch_or_start(ops: Table) -> np.ndarray:
    """Each op's launch start, or its own start where no launch is known."""
    return np.where(ops.valid("launch_start_ns"), ops["launch_start_ns"], ops["start_ns"])


def _assign(ops: Table, table: Table, calls: Table | None = None) -> Table:
    """Add ``step``: the step whose CPU range holds the op's launch (its own start if unmatched),
    and ``outside``: the op was launched before the window (see :func:`_launched_before`; only
    when ``calls``, the trace's launch calls, are given).

    The range is the last one starting at or before that time (a backward as-of match, found by
    binary search on the sorted starts); the op is in it if the time is before the range's end.
    An op launched before the profiled window belongs to no step, whatever its GPU time: it is
    counted apart, never folded into the step it happens to run in."""
    at = launch_or_start(ops)
    starts = table["cpu_start_ns"]  # sorted: steps are numbered in start order
    i = np.searchsorted(starts, at, side="right") - 1
    j = np.maximum(i, 0)
    inside = (i >= 0) & (at < table["cpu_end_ns"][j]) if starts.size else i >= 0
    outside = _launched_before(ops, calls) if calls is not None else np.zeros(ops.height, bool)
    inside &= ~outside
    step = table["step"][j] if starts.size else np.zeros(at.size, np.int64)
    return ops.with_columns({"step": "Int64", "outside": "Boolean"}, masks={"step": inside},
                            step=np.where(inside, step, 0).astype(np.int64), outside=outside)


def _launched_before(ops: Table, calls: Table) -> np.ndarray:
    """Ops launched before the profiled window: no launch call of theirs is in the trace, and their
    correlation id is below every launch call's (ids grow with each call a process makes)."""
    ids = calls["correlation"][calls.valid("correlation")] if calls.height else np.empty(0)
    if ids.size == 0:
        return np.zeros(ops.height, bool)
    return (~ops.valid("launch_start_ns") & ops.valid("correlation")
            & (ops.filled("correlation", 0) < ids.min()))


def outside_per_step(ops: Table, table: Table) -> np.ndarray:
    """Per step: how many GPU ops launched outside the window (``outside``) started while the
    step's CPU range was open or before the next step's began (the step they would have been
    folded into)."""
    out = ops["outside"] if "outside" in ops else np.zeros(ops.height, bool)
    counts = np.zeros(table.height, np.int64)
    if not out.any() or table.height == 0:
        return counts
    i = np.searchsorted(table["cpu_start_ns"], ops["start_ns"][out], side="right") - 1
    np.add.at(counts, i[i >= 0], 1)
    return counts


def _outside_warning(ops: Table, table: Table) -> list[str]:
    """One warning for GPU ops launched outside the profiled window, with the steps they ran in."""
    out = ops["outside"]
    n = int(out.sum())
    if n == 0:
        return []
    s = ops["start_ns"][out]
    during = table["step"][outside_per_step(ops, table) > 0].tolist()
    where = (f"; they ran during step(s) {_brief(during)}" if during else "")
    busy = int((ops["end_ns"][out] - s).sum())
    return [f"{n} GPU op(s) ({busy / 1e6:.3f} ms of GPU time) were launched before the profiled "
            f"window (no launch call of theirs in the trace, correlation ids below every call's): "
            f"counted apart, in no step{where}"]


def _brief(ids: list[int], n: int = 8) -> str:
    return ", ".join(map(str, ids[:n])) + (f" … ({len(ids)} in all)" if len(ids) > n else "")


# -- methods ----------------------------------------------------------------------------------
def _ranges(names: list[str] | Strings, starts, ends, kinds: list[str] | str = "decode",
            batch: list[int | None] | None = None) -> Table:
    n = len(starts)
    b = [None] * n if batch is None else batch
    return Table({
        "name": names if isinstance(names, Strings) else Strings.of(names),
        "cpu_start_ns": np.asarray(starts, dtype=np.int64).reshape(n),
        "cpu_end_ns": np.asarray(ends, dtype=np.int64).reshape(n),
        "kind": Strings.full(kinds, n) if isinstance(kinds, str) else Strings.of(kinds),
        "batch": np.array([0 if x is None else x for x in b], dtype=np.int64).reshape(n),
    }, _RANGES, {"batch": np.array([x is not None for x in b], dtype=bool).reshape(n)})


def _top_level(ann: Table) -> Table:
    """Matching ranges minus those nested inside another matching range."""
    ann = ann.take(np.argsort(ann["start_ns"], kind="stable"))
    keep, last_end = [], None
    for s, e in zip(ann["start_ns"].tolist(), ann["end_ns"].tolist()):
        keep.append(last_end is None or s >= last_end)
        if keep[-1]:
            last_end = e
    ann = ann.take(np.array(keep, dtype=bool))
    return _ranges(ann["name"], ann["start_ns"], ann["end_ns"])


def _kinds_from_shapes(trace: Trace, ranges: Table) -> Table:
    """The kind and batch of each range whose marker stated neither, from the token ids its
    embedding lookup was fed where the profiler recorded shapes (:mod:`tracekit.trace.shapes`):
    ``[batch, 1]`` is a decode pass of ``batch`` sequences, ``[batch, n > 1]`` a prefill."""
    open_ = ranges["kind"].eq("decode") & ~ranges.valid("batch")
    cpu = trace.table("cpu_ops")
    emb = np.nonzero(cpu["name"].isin(EMBEDDING_OPS))[0] if cpu.height else np.empty(0, int)
    if not open_.any() or emb.size == 0 or trace.meta.get("format") != "kineto":
        return ranges
    shapes = embedding_inputs(trace.meta.get("path"))
    if shapes is None or len(shapes) != emb.size:
        return ranges
    # a lookup belongs to the step whose range holds its end: it ends after launching its kernel,
    # the first of the pass, where a range found from the kernels opens (its start is earlier)
    # (the shapes come in start order, as do the rows sorted by start)
    ends = cpu["end_ns"][emb][np.argsort(cpu["start_ns"][emb], kind="stable")]
    by_end = np.argsort(ends, kind="stable")
    at, shapes = ends[by_end], [shapes[i] for i in by_end.tolist()]
    kinds, batch = ranges["kind"].tolist(), np.where(ranges.valid("batch"), ranges["batch"], -1)
    lo = np.searchsorted(at, ranges["cpu_start_ns"], side="left")
    hi = np.searchsorted(at, ranges["cpu_end_ns"], side="left")
    for i in np.nonzero(open_)[0].tolist():
        fed = [s for j in range(lo[i], hi[i]) if (s := shapes[j]) is not None]
        if len(fed) != 1:  # no lookup, or several passes in one range: the shapes cannot say
            continue
        b, tokens = fed[0]
        kinds[i] = "decode" if tokens == 1 else "prefill"
        batch[i] = b
    return _ranges(ranges["name"], ranges["cpu_start_ns"], ranges["cpu_end_ns"], kinds,
                   [int(x) if x >= 0 else None for x in batch.tolist()])


def _stated_kinds(ranges: Table) -> Table:
    """``ranges`` with the kind and batch each name states where it is a stack's known marker
    (a user's ``--step-marker`` may pick vLLM's or SGLang's ranges: their names still count)."""
    kb = []
    for name in ranges["name"].tolist():
        marker = next((m for m in MARKERS if name and m.pattern.search(name)), None)
        kb.append(kind_of(marker, name) if marker else (None, None))
    return _ranges(ranges["name"], ranges["cpu_start_ns"], ranges["cpu_end_ns"],
                   [k or "decode" for k, _ in kb], [b for _, b in kb])


def _stack_markers(ann: Table, ops: Table, passes: _LazyPasses, notes: list[str]):
    """The first of the stacks' own step markers (:data:`tracekit.specs.markers.MARKERS`) whose
    ranges hold GPU work (any ranges, in a trace without GPU work), with the kind and batch each
    range's name states. A serving engine's marker is one forward pass by its definition; a
    generic one (``ProfilerStep``, a compiled graph's call) is checked against the passes the
    kernels show."""
    at = np.sort(launch_or_start(ops))
    for marker in MARKERS:
        hit = ann["name"].where(marker.pattern.search)
        if not hit.any():
            continue
        ranges = _top_level(ann.take(np.nonzero(hit)[0]))
        per = np.searchsorted(at, ranges["cpu_end_ns"]) - np.searchsorted(at, ranges["cpu_start_ns"])
        if at.size and not (per > 0).any():
            continue
        ranges = _stated_kinds(ranges)
        found = ranges, marker.name, f"{ranges.height} {marker.label} ranges"
        return found if marker.one_pass else _as_passes(found, ops, passes, notes)
    return None


def _by_name(ann: Table, rx: re.Pattern, method: str, label: str):
    hits = ann.take(np.nonzero(ann["name"].where(rx.search))[0])
    if hits.height == 0:
        return None
    ranges = _top_level(hits)
    return ranges, method, f"{ranges.height} {label} ranges"


def _repeating_annotation(ann: Table, ops: Table):
    """The family of same-shaped names (digits ignored) that covers most launches in fewest ranges."""
    ann = ann.take(np.nonzero(~ann["name"].where(PROFILER_STEP.search))[0])
    if ann.height < 2:
        return None
    fam, fam_names = Strings.of(ann["name"].map(lambda n: _DIGITS.sub("#", n))).dense()
    counts = np.bincount(fam, minlength=len(fam_names))
    at = np.sort(launch_or_start(ops))
    best = None
    # families in order of first appearance; a family needs two ranges at least
    for f in np.nonzero(counts >= 2)[0]:
        ranges = _top_level(ann.take(np.nonzero(fam == f)[0]))
        if ranges.height < 2:
            continue
        starts = ranges["cpu_start_ns"]
        ends = ranges["cpu_end_ns"]
        per_range = np.searchsorted(at, ends) - np.searchsorted(at, starts)
        covered = int(per_range.sum())
        if at.size and (per_range > 0).sum() < 2:
            continue  # a repeating name that holds no GPU work is not a step
        score = (covered, -ranges.height)
        if best is None or score > best[0]:
            best = (score, ranges, fam_names[f])
    if best is None:
        return None
    _, ranges, family = best
    return ranges, "annotation", f"{ranges.height} '{family}' ranges (a repeating annotation)"


def _smallest_period(sig: list) -> int:
    """The smallest ``p`` with ``sig[i] == sig[i + p]`` for every ``i`` (``len(sig)`` if none).

    That is ``n`` minus the longest proper border (prefix that is also a suffix), which the
    Knuth-Morris-Pratt prefix function gives in linear time.
    """
    n = len(sig)
    if n == 0:
        return 0
    pi = [0] * n
    k = 0
    for i in range(1, n):
        while k and sig[i] != sig[k]:
            k = pi[k - 1]
        if sig[i] == sig[k]:
            k += 1
        pi[i] = k
    p = n - pi[-1]
    return p if p <= n // 2 else n


def _graph_launches(trace: Trace, ops: Table):
    calls = trace.table("launches")
    g = calls.take(np.nonzero(calls["kind"].eq("graph"))[0])
    g = g.take(np.argsort(g["start_ns"], kind="stable"))
    if g.height < 2:
        return None
    # per correlation id: how many ops it ran and the first one's name (ops are in start order)
    ok = ops.valid("correlation")
    corr = ops["correlation"][ok]
    uniq, first, n = np.unique(corr, return_index=True, return_counts=True)
    names = ops["name"].take(np.nonzero(ok)[0][first]).tolist()
    at = np.searchsorted(uniq, g["correlation"])
    hit = g.valid("correlation") & (at < uniq.size)
    hit[hit] = uniq[at[hit]] == g["correlation"][hit]
    sig = [(int(n[a]), names[a]) if h else (0, "") for a, h in zip(at.tolist(), hit.tolist())]
    p = _smallest_period(sig)
    if p == len(sig):
        p = 1  # no repetition: call every launch a step rather than invent a grouping
    starts = g["start_ns"].tolist()[::p]
    n_full = len(sig) // p
    cpu_end = [starts[i + 1] for i in range(len(starts) - 1)] + [int(g["end_ns"].max()) + 1]
    ranges = _ranges([f"graph replay {i}" for i in range(len(starts))], starts, cpu_end,
                     ["decode"] * n_full + ["partial"] * (len(starts) - n_full))
    per = "1 graph launch" if p == 1 else f"{p} graph launches"
    return ranges, "graph_launch", f"{n_full} steps of {per} each"


#: the step period is the shortest whose kernel sequence matches itself this well, shifted by it
PERIOD_MATCH = 0.98


def kernel_period(names: np.ndarray, *, min_period: int = 2) -> tuple[int, float]:
    """The smallest period ``p`` of an integer sequence whose self-match at shift ``p`` is near best.

    A decode trace repeats at two scales: the layer (tens of kernels) and the step (one pass over
    all layers plus embedding, head and sampling). The layer period matches well but not perfectly —
    it breaks at every step boundary — while the step period matches almost exactly. So: score every
    shift, and take the smallest whose score is within a hair of the best.
    """
    names = names[:MAX_PERIOD_KERNELS]
    n = names.size
    if n < 2 * min_period:
        return 0, 0.0
    shifts = np.arange(min_period, n // 2 + 1)
    if shifts.size * n <= EXACT_PERIOD_WORK:
        scores = np.array([np.mean(names[p:] == names[:-p]) for p in shifts])
    else:
        scores = _sampled_then_exact(names, shifts)
    best = scores.max()
    ok = np.nonzero(scores >= max(best - 0.002, PERIOD_MATCH))[0]
    if ok.size == 0:
        return 0, float(best)
    return int(shifts[ok[0]]), float(scores[ok[0]])


#: kernel_period looks at no more than this many kernels (a step period shows long before)
MAX_PERIOD_KERNELS = 200_000
#: up to this many element comparisons every shift is scored exactly; beyond, sampled first
EXACT_PERIOD_WORK = 200_000_000
_SAMPLE = 4096
_CANDIDATES = 256


def _sampled_then_exact(names: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Scores of every shift, exact only where a sampled score says it could be near the best.

    Each shift is first scored on the same 4096 random positions (standard error under 1%); the
    256 best (at least 0.9) are then scored exactly. Shifts that cannot reach ``PERIOD_MATCH`` keep
    their sampled score, far below it. Linear in the number of kernels times a constant.
    """
    n = names.size
    rng = np.random.default_rng(0)
    pos = np.sort(rng.integers(0, n - shifts[-1], size=_SAMPLE))
    sampled = np.array([np.mean(names[pos + p] == names[pos]) for p in shifts])
    order = np.argsort(-sampled, kind="stable")[:_CANDIDATES]
    order = order[sampled[order] >= 0.9]
    scores = np.minimum(sampled, 0.5)
    for i in order:
        p = shifts[i]
        scores[i] = np.mean(names[p:] == names[:-p])
    return scores


def _kernel_period(ops: Table):
    kernels = ops.take(np.nonzero(ops["kind"].eq("kernel"))[0])
    if kernels.height < 4:
        return None
    codes = kernels["name"].codes
    p, score = kernel_period(codes)
    if p == 0 or kernels.height // p < 2:
        return None
    phase = _phase(kernels, p)
    first = np.arange(phase, kernels.height, p)
    at = launch_or_start(kernels)
    bounds = at[first]
    # only whole cycles are steps; a complete final cycle has a successor or ends the trace
    n_steps = len(bounds) - 1 if len(bounds) * p + phase > kernels.height else len(bounds)
    if n_steps < 2:
        return None
    cpu_end = [int(bounds[i + 1]) if i + 1 < len(bounds) else int(at.max()) + 1
               for i in range(n_steps)]
    ranges = _ranges([f"period {i}" for i in range(n_steps)], bounds[:n_steps], cpu_end)
    detail = f"{n_steps} periods of {p} kernels (self-match {score:.1%})"
    return ranges, "kernel_period", detail


#: the embedding lookup that starts every decode step
EMBEDDING = re.compile(r"(?<!rotary_)(?<!rotary)embedding|indexselect|index_select",
                       re.IGNORECASE)
#: kernels a forward pass runs once and a layer never does: the embedding lookup (not a rotary
#: embedding, which runs in every layer), and the token choice after the LM head (argmax,
#: sampling; not top-k, which a mixture-of-experts router runs in every layer). Evidence that a
#: period is a whole pass.
ONCE_PER_PASS = re.compile(r"(?<!rotary_)(?<!rotary)embedding|indexselect|index_select|argmax"
                           r"|multinomial|sampl", re.IGNORECASE)
#: a kernel name is periodic when this share of the gaps between its runs are the median gap,
#: within PASS_GAP_TOLERANCE of it (a few kernels per pass may come and go: a cache that grows)
PASS_GAP_SHARE = 0.75
PASS_GAP_TOLERANCE = 0.02


@dataclass
class Passes:
    """Forward passes found from the kernel sequence alone (see :func:`find_passes`)."""

    period: int  #: kernels per pass (the median gap between runs of the anchor kernel)
    layer: int | None  #: kernels per layer: the repeating block inside a pass, if one is seen
    anchor: str  #: the kernel that opens every pass
    starts: np.ndarray  #: indices (into the kernels in launch order) where each pass starts
    evidence: list[str]  #: once-per-pass kernels seen at the pass period
    whole: bool  #: True when the period holds a layer block or once-per-pass kernels


def _periodic_names(codes: np.ndarray) -> list[tuple[float, int]]:
    """(median gap, code) of every kernel name that recurs at a steady gap: at least 3 runs, and
    most gaps between them at the median gap."""
    order = np.argsort(codes, kind="stable")
    sc = codes[order]
    cuts = np.nonzero(np.diff(sc))[0] + 1
    out = []
    for grp in np.split(order, cuts):
        if grp.size < 3:
            continue
        gaps = np.diff(grp)  # grp is in sequence order (the sort is stable)
        med = float(np.median(gaps))
        near = np.abs(gaps - med) <= max(2.0, PASS_GAP_TOLERANCE * med)
        if near.mean() >= PASS_GAP_SHARE:
            out.append((med, int(codes[grp[0]])))
    return out


def _scales(periodic: list[tuple[float, int]]) -> list[tuple[float, list[int]]]:
    """The periodic names grouped by their gap (within the tolerance), smallest gap first."""
    groups: list[tuple[float, list[int]]] = []
    for med, code in sorted(periodic):
        if groups and med <= groups[-1][0] * (1 + PASS_GAP_TOLERANCE) + 1:
            groups[-1][1].append(code)
        else:
            groups.append((med, [code]))
    return groups


def find_passes(kernels: Table, *, layers: int | None = None) -> Passes | None:
    """The forward passes of a decode trace with no step marker, from its kernels alone.

    A decode trace repeats at two scales: the layer (tens of kernels, its names recurring at the
    layer's length) and the pass (every layer plus the embedding, the final norm, the LM head and
    the token choice). Kernels that run once per pass (the embedding lookup, argmax or sampling)
    recur at exactly the pass's length, from one token to the next — and never at a layer's. So:

    1. every kernel name that recurs at a steady gap is periodic at that gap;
    2. the pass is the shortest scale at which once-per-pass kernels recur; without any, the
       longest scale, marked not ``whole``: tracekit cannot tell a pass from a layer (a layer
       holds smaller repeating blocks too, so nesting alone proves nothing);
    3. each pass opens at one kernel of that scale: the embedding lookup where there is one, else
       the one after the longest recurring pause of the host (or of the GPU, without launches).

    A pass is cut at each run of that kernel, so passes may differ by a few kernels, and a prefill
    (whose kernels differ) still ends where the first decode pass begins. ``layers``, when the
    model is known, must equal the attention kernels per pass; a scale that fails it is skipped.
    """
    n = kernels.height
    if n < 6:
        return None
    codes = kernels["name"].codes.astype(np.int64)
    names = kernels["name"].values
    scales = _scales(_periodic_names(codes))
    if not scales:
        return None
    attn = _attention_codes(names)
    chosen = None
    for i, (med, group) in enumerate(scales):
        evidence = [names[c] for c in group if ONCE_PER_PASS.search(names[c] or "")]
        if evidence and (layers is None or _attention_per(codes, attn, med) in (0, layers)):
            chosen = (i, med, group, evidence)
            break
    whole = chosen is not None
    if chosen is None:
        i = len(scales) - 1
        chosen = (i, scales[i][0], scales[i][1], [])
    i, med, group, evidence = chosen
    layer = int(round(scales[i - 1][0])) if i > 0 else None
    anchor = _opening_kernel(kernels, codes, group, names)
    pos = np.nonzero(codes == anchor)[0]
    keep = [int(pos[0])]
    for p in pos[1:].tolist():  # one opening per pass: a second run too soon is inside the pass
        if p - keep[-1] >= 0.5 * med:
            keep.append(p)
    return Passes(period=int(round(med)), layer=layer, anchor=names[anchor],
                  starts=np.array(keep, dtype=np.int64), evidence=sorted(set(evidence)),
                  whole=whole)


def _attention_codes(names: list) -> np.ndarray:
    return np.array([c for c, nm in enumerate(names)
                     if nm and categorize(nm) == KernelCategory.ATTENTION], dtype=np.int64)


def _attention_per(codes: np.ndarray, attn: np.ndarray, period: float) -> int:
    """Attention kernels per ``period`` kernels (0 when none is recognised)."""
    if attn.size == 0:
        return 0
    return int(round(np.isin(codes, attn).sum() * period / codes.size))


def _opening_kernel(kernels: Table, codes: np.ndarray, group: list[int], names: list) -> int:
    """Which kernel of the pass scale opens a pass: the embedding lookup if exactly one is there,
    else the one after the longest recurring pause (host launch to launch, else GPU idle)."""
    emb = [c for c in group if EMBEDDING.search(names[c] or "")]
    if len(emb) == 1:
        return emb[0]
    cands = emb or group
    if not kernels.has_nulls("launch_start_ns"):
        t = kernels["launch_start_ns"]
        pause = np.concatenate([[0], np.diff(t)])
    else:
        ends = np.maximum.accumulate(kernels["end_ns"])
        pause = np.concatenate([[0], kernels["start_ns"][1:] - ends[:-1]])
    score = [float(np.median(pause[codes == c])) for c in cands]
    return cands[int(np.argmax(score))]


def _forward_passes(at: np.ndarray, passes: Passes):
    """Steps as the forward passes :func:`find_passes` found in the kernel sequence (``at``: the
    kernels' launch times, in launch order)."""
    starts = passes.starts
    if starts.size < 2:
        return None
    bounds = at[starts].tolist()
    # what runs before the first opening is a pass of its own when it is most of one (a prefill,
    # or a pass cut by the window's start); a few kernels are simply before the first pass
    if starts[0] >= 0.5 * passes.period:
        bounds.insert(0, int(at[0]))
    ends = bounds[1:] + [int(at.max()) + 1]
    ranges = _ranges([f"pass {i}" for i in range(len(bounds))], bounds, ends)
    detail = (f"{len(bounds)} forward passes of ~{passes.period} kernels found from the kernels "
              f"alone, each opening with {_short(passes.anchor)!r}")
    return ranges, "forward_pass", detail


def _short(name: str, n: int = 60) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def _phase(kernels: Table, p: int) -> int:
    """Where in the cycle a step starts.

    First choice: the embedding lookup, if exactly one kernel of the cycle looks like one. Else the
    position after the longest recurring pause — on the host (launch to launch: Python between
    steps) when launches are known, on the GPU otherwise.
    """
    names = kernels["name"].take(np.arange(min(p, kernels.height))).tolist()
    emb = [i for i, n in enumerate(names) if EMBEDDING.search(n)]
    if len(emb) == 1:
        return emb[0]
    n_cycles = kernels.height // p
    if not kernels.has_nulls("launch_start_ns"):
        t = kernels["launch_start_ns"]
        gaps = np.concatenate([[0], np.diff(t)])
    else:
        starts = kernels["start_ns"]
        ends = np.maximum.accumulate(kernels["end_ns"])
        gaps = np.concatenate([[0], starts[1:] - ends[:-1]])
    g = gaps[: n_cycles * p].reshape(n_cycles, p)
    score = np.median(g[1:] if n_cycles > 1 else g, axis=0).astype(float)
    # A step boundary never falls inside the repeated layer block: only positions outside it
    # (embedding, final norm, head, sampling) are candidates.
    codes = kernels["name"].codes[: 2 * p]
    q, _ = kernel_period(codes[:p])
    if 0 < q < p:
        cyc = np.concatenate([codes, codes])[: 2 * p]
        in_layer = np.array([cyc[x] == cyc[x + q] or (x >= q and cyc[x] == cyc[x - q])
                             for x in range(p)])
        if (~in_layer).any():
            score[in_layer] = -np.inf
    return int(np.argmax(score))


# -- what the steps are ---------------------------------------------------------------------
#: kernels of a backward pass (cuDNN/cuBLAS/PyTorch name them so), and the CPU ops of autograd and
#: of an optimizer step: none of them runs in a decode step
BACKWARD_KERNEL = re.compile(r"backward|_bwd|bwd_|wgrad|dgrad", re.IGNORECASE)
TRAINING_CPU_OP = re.compile(r"^autograd::engine::|^Optimizer\.(step|zero_grad)|Backward\d*\Z")


def training_evidence(trace: Trace, steps: Steps) -> str | None:
    """Why the decode steps look like training iterations, or None.

    A training iteration runs a backward pass and an optimizer step; decode runs neither. Evidence:
    the steps' GPU ops include backward kernels, or their CPU ranges hold autograd or
    ``Optimizer.step`` ops.
    """
    decode = steps.decode_t
    if decode.height == 0:
        return None
    ops = steps.ops_t
    in_decode = ops.valid("step") & np.isin(ops["step"], decode["step"])
    bwd = np.nonzero(in_decode & ops["name"].where(BACKWARD_KERNEL.search))[0]
    reasons = []
    if bwd.size:
        reasons.append(f"{bwd.size} backward kernels such as {ops['name'][bwd[0]][:60]!r}")
    cpu = trace.table("cpu_ops")
    hits = np.nonzero(cpu["name"].where(TRAINING_CPU_OP.search))[0]
    if hits.size:
        hits = hits[np.argsort(cpu["start_ns"][hits], kind="stable")]
        at = cpu["start_ns"][hits]
        order = np.argsort(decode["cpu_start_ns"], kind="stable")
        starts, ends = decode["cpu_start_ns"][order], decode["cpu_end_ns"][order]
        i = np.searchsorted(starts, at, side="right") - 1
        inside = hits[(i >= 0) & (at < ends[np.maximum(i, 0)])]
        if inside.size:
            reasons.append(f"{inside.size} autograd/optimizer ops such as "
                           f"{cpu['name'][inside[0]][:60]!r}")
    return "; ".join(reasons) or None


def _check_gpu_clock(ops: Table) -> None:
    """Every GPU op at one instant, each of no duration: the trace has no GPU timeline to explain
    (seen where a second torch.profiler session ran in the process before the first was
    exported: every kernel at ts 0, dur 0). Said as that, not as steps without kernels."""
    if ops.height < 2:
        return
    start, end = ops["start_ns"], ops["end_ns"]
    if (end == start).all() and (start == start[0]).all():
        raise NoStepsError(
            f"all {ops.height} GPU events (kernels, copies, memsets) have the same timestamp and "
            "no duration: the trace has no GPU timeline (a profiler that lost its GPU clock; "
            "with torch.profiler, export each profile before another profiler runs in the "
            "process); profile again"
        )


# -- flagging ---------------------------------------------------------------------------------
def _flag(table: Table, ops: Table, *, has_gpu: bool, require_decode: bool = True):
    """Decide each candidate step's kind from its GPU work; keep the kinds a marker stated."""
    warnings: list[str] = []
    if not has_gpu:
        return table, warnings
    n = table.height
    ok = ops.valid("step")
    step = ops["step"][ok]
    k = np.bincount(step, weights=ops["kind"].eq("kernel")[ok], minlength=n).astype(np.int64)
    t = np.zeros(n, np.int64)
    np.add.at(t, step, (ops["end_ns"] - ops["start_ns"])[ok])
    kind = table["kind"]
    candidates = kind.eq("decode")
    med_k = float(np.median(k[candidates])) if candidates.any() else 0
    med_t = float(np.median(t[candidates])) if candidates.any() else 0
    new = np.where(~candidates, kind.tolist(), np.where(
        k == 0, "empty", np.where(t > PREFILL_FACTOR * med_t, "prefill", np.where(
            k < PARTIAL_FRACTION * med_k, "partial", "decode"))))
    new = _first_pass_prefill(new, ops, table, t)
    new_kind = Strings.of(new.tolist())
    for label in ("prefill", "mixed", "partial", "empty", "idle"):
        idx = table["step"][new == label].tolist()
        if idx:
            warnings.append(f"{len(idx)} step(s) flagged {label} and left out of the summary: "
                            f"{_brief(idx)}")
    if require_decode and not (new == "decode").any():
        kinds = {label: int((new == label).sum()) for label in np.unique(new).tolist()}
        said = ", ".join(f"{v} {k}" for k, v in kinds.items())
        raise NoStepsError(
            f"found {n} step range(s) but none holds a decode step ({said}); tracekit explains "
            "decode steps: profile a window of decode steps, or pass --step-marker REGEX naming "
            "the annotation around each decode step"
        )
    return table.with_columns({}, kind=new_kind), warnings


#: a first pass whose GEMM and attention kernels share less than this with the decode passes'
#: ran other shapes: the prompt (a prefill), not one token
PREFILL_KERNEL_OVERLAP = 0.5


def _first_pass_prefill(new: np.ndarray, ops: Table, table: Table, t: np.ndarray) -> np.ndarray:
    """The first step is a prefill when its GEMM/attention kernels are other kernels than the
    decode steps run (cuBLAS and attention libraries pick their kernels by shape: a pass over the
    prompt runs other tiles than one over a token) and it takes longer than the median decode
    step. ``generate()`` prefills in its first pass; a short prompt is not 3× a decode step."""
    dec = np.nonzero(new == "decode")[0]
    if dec.size < 3 or new[0] != "decode":
        return new
    heavy = {KernelCategory.GEMM, KernelCategory.ATTENTION}
    names = ops["name"]
    is_heavy = names.where(lambda v: bool(v) and categorize(v) in heavy)
    ok = ops.valid("step") & is_heavy & ops["kind"].eq("kernel")
    step = ops["step"]
    first = set(names.take(np.nonzero(ok & (step == table["step"][0]))[0]).tolist())
    rest = dec[dec != 0]
    others = set(names.take(np.nonzero(ok & np.isin(step, table["step"][rest]))[0]).tolist())
    if not first or not others:
        return new
    overlap = len(first & others) / len(first)
    if overlap < PREFILL_KERNEL_OVERLAP and t[0] > np.median(t[rest]):
        new = new.copy()
        new[0] = "prefill"
    return new


def _contents(ops: Table, table: Table, passes: Passes | None) -> str | None:
    """What one decode step holds, in words: its attention kernels (one per layer), its GEMMs,
    and the once-per-pass kernels (embedding, LM head's token choice) seen in it."""
    dec = table["step"][table["kind"].eq("decode")]
    if dec.size == 0:
        return None
    ok = ops.valid("step") & np.isin(ops["step"], dec) & ops["kind"].eq("kernel")
    names = ops["name"]
    cat = names.map(lambda v: categorize(v).value if v else "other")
    per = {}
    for c in (KernelCategory.ATTENTION, KernelCategory.GEMM):
        per[c.value] = float(np.sum(ok & (cat == c.value))) / dec.size
    once = names.where(lambda v: bool(v) and ONCE_PER_PASS.search(v) is not None)
    n_once = float(np.sum(ok & once)) / dec.size
    kernels = float(np.sum(ok)) / dec.size
    parts = [f"~{kernels:.0f} kernels"]
    if per["attention"]:
        parts.append(f"{per['attention']:.0f} attention kernels")
    if per["gemm"]:
        parts.append(f"{per['gemm']:.0f} GEMM kernels")
    if n_once:
        parts.append(f"{n_once:.0f} once-per-pass kernels (embedding, token choice)")
    if passes is not None and passes.layer:
        parts.append(f"a ~{passes.layer}-kernel block repeated ~{passes.period / passes.layer:.0f}×"
                     " (the layer pattern)")
    return "1 step = " + ", ".join(parts)


def _some_names(ann: Table, n: int = 8) -> str:
    names = ann["name"].dense()[1][:n]
    return ", ".join(repr(x) for x in names) if names else "(none)"
