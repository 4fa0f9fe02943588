"""Find the decode steps in a trace, and which GPU op belongs to which step.

A decode step is one forward pass that produces one token. Traces mark steps in different ways, so
detection tries, in order (the first that finds steps wins, and its name is reported):

1. ``marker``        — annotations matching the user's ``--step-marker REGEX``;
2. ``tracekit``      — ``tracekit.step#N`` ranges written by ``tracekit capture``;
3. ``profiler_step`` — ``ProfilerStep#N`` from a profiler ``schedule`` + ``prof.step()``;
4. ``annotation``    — any other repeating user annotation (``decode_step#3``), the one family of
   ranges that covers the most GPU work with the fewest ranges;
5. ``graph_launch``  — ``cudaGraphLaunch`` calls, grouped by the period of the graphs they replay;
6. ``kernel_period`` — no markers at all: the period of the kernel-name sequence.

Each method yields host-side (CPU) ranges. **Membership**: a GPU op belongs to a step if the call
that launched it (matched by correlation id) started inside the step's CPU range; the kernels of a
graph replay share their ``cudaGraphLaunch``'s id and so its step.

Steps that are not decode steps are flagged, never silently mixed in: ``prefill`` (several times the
median GPU work), ``partial`` (far fewer kernels than the median, e.g. cut off by the profiler
window) and ``empty`` (no GPU op in a GPU trace).

    >>> steps = detect_steps(trace)            # doctest: +SKIP
    >>> steps.method, steps.table.height       # doctest: +SKIP
    ('annotation', 10)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from tracekit.errors import BadUsage, NoStepsError
from tracekit.trace.model import Trace
from tracekit.trace.table import Table

TRACEKIT_STEP = re.compile(r"^tracekit\.step#\d+$")
PROFILER_STEP = re.compile(r"^ProfilerStep#\d+$")
_DIGITS = re.compile(r"\d+")

#: a step with more than this many times the median GPU time is prefill, not decode
PREFILL_FACTOR = 3.0
#: a step with fewer than this fraction of the median kernel count is partial
PARTIAL_FRACTION = 0.8

STEPS_SCHEMA = {
    "step": pl.Int64,
    "name": pl.Utf8,
    "cpu_start_ns": pl.Int64,
    "cpu_end_ns": pl.Int64,
    "kind": pl.Utf8,
}


@dataclass
class Steps:
    """Detected steps plus the GPU ops with their step (``ops.step`` null when outside every step)."""

    table: pl.DataFrame
    ops: pl.DataFrame
    method: str
    detail: str
    warnings: list[str] = field(default_factory=list)
    #: what later stages derive from ``ops`` once and share (breakdown's merged busy intervals)
    derived: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def decode(self) -> pl.DataFrame:
        return self.table.filter(pl.col("kind") == "decode")

    # -- the same tables as numpy columns (see tracekit.trace.table), what the analysis reads --
    @property
    def ops_t(self) -> Table:
        """``ops`` as columns: the GPU ops sorted by start, with ``launch_start_ns``,
        ``launch_end_ns``, ``launch_kind`` (null: no launch record) and ``step`` (null: in no
        step)."""
        if "ops_t" not in self.derived:
            self.derived["ops_t"] = Table.from_polars(self.ops)
        return self.derived["ops_t"]

    @property
    def table_t(self) -> Table:
        """``table`` as columns: step, name, cpu_start_ns, cpu_end_ns, kind; sorted by step."""
        if "table_t" not in self.derived:
            self.derived["table_t"] = Table.from_polars(self.table.sort("step"))
        return self.derived["table_t"]

    @property
    def decode_t(self) -> Table:
        """The decode steps' rows of ``table_t``."""
        t = self.table_t
        return t.take(np.nonzero(t["kind"].eq("decode"))[0])


# -- entry point ------------------------------------------------------------------------------
def detect_steps(trace: Trace, *, step_marker: str | None = None) -> Steps:
    """Detect the decode steps of ``trace`` (see the module docstring for the order)."""
    ops = _ops_with_launch(trace)
    cpu_ann = trace.annotations.filter(~pl.col("on_gpu"))
    found: tuple[pl.DataFrame, str, str] | None = None

    if step_marker is not None:
        ranges = _top_level(cpu_ann.filter(_marker_matches(step_marker, cpu_ann)))
        if ranges.height == 0:
            raise NoStepsError(
                f"--step-marker {step_marker!r} matched no annotation; annotations in the trace: "
                f"{_some_names(cpu_ann)}"
            )
        found = (ranges, "marker", f"{ranges.height} ranges matching {step_marker!r}")
    if found is None:
        found = _by_name(cpu_ann, TRACEKIT_STEP, "tracekit", "tracekit.step#N")
    if found is None:
        found = _by_name(cpu_ann, PROFILER_STEP, "profiler_step", "ProfilerStep#N")
    if found is None:
        found = _repeating_annotation(cpu_ann, ops)
    if found is None:
        found = _graph_launches(trace, ops)
    if found is None:
        found = _kernel_period(ops)
    if found is None:
        raise NoStepsError(
            "no decode steps found: no annotations, graph launches or repeating kernel sequence; "
            "pass --step-marker REGEX naming the annotation around each step"
        )
    ranges, method, detail = found
    table = ranges.sort("cpu_start_ns").with_row_index("step").with_columns(
        pl.col("step").cast(pl.Int64))
    ops = _assign(ops, table)
    table, warnings = _flag(table, ops, has_gpu=trace.has_gpu)
    return Steps(table=table, ops=ops, method=method, detail=detail, warnings=warnings)


def _marker_matches(step_marker: str, ann: pl.DataFrame) -> pl.Series:
    """Which annotations the user's ``--step-marker`` matches.

    The pattern runs in polars' regex engine (Rust's ``regex`` crate, the RE2 design): matching
    takes time linear in the name whatever the pattern, so ``(a+)+$`` cannot hang on a long
    annotation name the way it does in Python's backtracking ``re``. The price: no look-around and
    no backreferences, which a step marker does not need; such a pattern gets a usage error.
    """
    try:
        return ann.select(pl.col("name").str.contains(step_marker).fill_null(False))["name"]
    except pl.exceptions.PolarsError as exc:
        why = str(exc).split("This error occurred")[0].strip().replace("\n", " ")
        why = " ".join(why.split())
        raise BadUsage(f"--step-marker {step_marker!r} is not a regular expression tracekit can "
                       f"run ({why}); look-around and backreferences are not supported") from None


# -- membership -------------------------------------------------------------------------------
def _ops_with_launch(trace: Trace) -> pl.DataFrame:
    """GPU ops sorted by start, with the start/end/kind of the call that launched them (the first
    launch call with the op's correlation id)."""
    ops, calls = trace.gpu_ops, trace.launches
    corr = ops["correlation"]
    row = first_row(calls["correlation"].fill_null(0).to_numpy(),
                    calls["correlation"].is_not_null().to_numpy(), corr.fill_null(0).to_numpy())
    row[corr.is_null().to_numpy()] = -1
    miss = pl.Series(row < 0)
    take = pl.Series(np.maximum(row, 0))

    def pick(col: str, name: str) -> pl.Series:
        s = calls[col].gather(take) if calls.height else pl.Series([None] * ops.height,
                                                                  dtype=calls[col].dtype)
        return (s.set(miss, None) if calls.height and miss.any() else s).alias(name)

    return ops.with_columns(pick("start_ns", "launch_start_ns"), pick("end_ns", "launch_end_ns"),
                            pick("kind", "launch_kind")).sort("start_ns")


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


def _assign(ops: pl.DataFrame, table: pl.DataFrame) -> pl.DataFrame:
    """Add ``step``: the step whose CPU range holds the op's launch (its own start if unmatched).

    The range is the last one starting at or before that time (a backward as-of match, found by
    binary search on the sorted starts); the op is in it if the time is before the range's end."""
    if ops.height == 0:
        return ops.with_columns(pl.lit(None, dtype=pl.Int64).alias("step"))
    at = ops["launch_start_ns"].fill_null(ops["start_ns"]).to_numpy()
    ranges = table.select("step", "cpu_start_ns", "cpu_end_ns").sort("cpu_start_ns")
    starts = ranges["cpu_start_ns"].to_numpy()
    i = np.searchsorted(starts, at, side="right") - 1
    j = np.maximum(i, 0)
    inside = (i >= 0) & (at < ranges["cpu_end_ns"].to_numpy()[j]) if starts.size else i >= 0
    step = pl.Series("step", ranges["step"].to_numpy()[j] if starts.size else i, dtype=pl.Int64)
    return ops.with_columns(step.set(pl.Series(~inside), None) if not inside.all() else step)


# -- methods ----------------------------------------------------------------------------------
def _as_ranges(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(
        "name",
        pl.col("start_ns").alias("cpu_start_ns"),
        pl.col("end_ns").alias("cpu_end_ns"),
        pl.lit("decode").alias("kind"),
    )


def _top_level(ann: pl.DataFrame) -> pl.DataFrame:
    """Matching ranges minus those nested inside another matching range."""
    ann = ann.sort("start_ns")
    keep, last_end = [], None
    for s, e in zip(ann["start_ns"].to_list(), ann["end_ns"].to_list()):
        keep.append(last_end is None or s >= last_end)
        if keep[-1]:
            last_end = e
    return _as_ranges(ann.filter(pl.Series(keep, dtype=pl.Boolean)))


def _by_name(ann: pl.DataFrame, rx: re.Pattern, method: str, label: str):
    hits = ann.filter(pl.col("name").str.contains(rx.pattern))
    if hits.height == 0:
        return None
    ranges = _top_level(hits)
    return ranges, method, f"{ranges.height} {label} ranges"


def _repeating_annotation(ann: pl.DataFrame, ops: pl.DataFrame):
    """The family of same-shaped names (digits ignored) that covers most launches in fewest ranges."""
    ann = ann.filter(~pl.col("name").str.contains(PROFILER_STEP.pattern))
    if ann.height < 2:
        return None
    ann = ann.with_columns(pl.col("name").str.replace_all(_DIGITS.pattern, "#").alias("family"))
    # a family needs two ranges at least: drop the one-off names before the per-family work
    ann = ann.filter(pl.len().over("family") >= 2)
    at = np.sort(ops.select(pl.coalesce("launch_start_ns", "start_ns")).to_series().to_numpy())
    best = None
    for family, group in ann.group_by("family"):
        ranges = _top_level(group)
        if ranges.height < 2:
            continue
        starts = ranges["cpu_start_ns"].to_numpy()
        ends = ranges["cpu_end_ns"].to_numpy()
        per_range = np.searchsorted(at, ends) - np.searchsorted(at, starts)
        covered = int(per_range.sum())
        if at.size and (per_range > 0).sum() < 2:
            continue  # a repeating name that holds no GPU work is not a step
        score = (covered, -ranges.height)
        if best is None or score > best[0]:
            best = (score, ranges, family[0])
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


def _graph_launches(trace: Trace, ops: pl.DataFrame):
    g = trace.launches.filter(pl.col("kind") == "graph").sort("start_ns")
    if g.height < 2:
        return None
    counts = ops.group_by("correlation").agg(pl.len().alias("n"), pl.col("name").first())
    g = g.join(counts, on="correlation", how="left")
    sig = list(zip(g["n"].fill_null(0).to_list(), g["name"].fill_null("").to_list()))
    p = _smallest_period(sig)
    if p == len(sig):
        p = 1  # no repetition: call every launch a step rather than invent a grouping
    starts = g["start_ns"].to_list()[::p]
    n_full = len(sig) // p
    cpu_end = [starts[i + 1] for i in range(len(starts) - 1)] + [int(g["end_ns"].max()) + 1]
    ranges = pl.DataFrame({
        "name": [f"graph replay {i}" for i in range(len(starts))],
        "cpu_start_ns": starts,
        "cpu_end_ns": cpu_end,
        "kind": ["decode"] * n_full + ["partial"] * (len(starts) - n_full),
    }, schema={k: STEPS_SCHEMA[k] for k in ("name", "cpu_start_ns", "cpu_end_ns", "kind")})
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


def _kernel_period(ops: pl.DataFrame):
    kernels = ops.filter(pl.col("kind") == "kernel")
    if kernels.height < 4:
        return None
    codes = kernels["name"].cast(pl.Categorical).to_physical().to_numpy()
    p, score = kernel_period(codes)
    if p == 0 or kernels.height // p < 2:
        return None
    phase = _phase(kernels, p)
    first = np.arange(phase, kernels.height, p)
    at = kernels.select(pl.coalesce("launch_start_ns", "start_ns")).to_series().to_numpy()
    bounds = at[first]
    # only whole cycles are steps; a complete final cycle has a successor or ends the trace
    n_steps = len(bounds) - 1 if len(bounds) * p + phase > kernels.height else len(bounds)
    if n_steps < 2:
        return None
    cpu_end = [int(bounds[i + 1]) if i + 1 < len(bounds) else int(at.max()) + 1
               for i in range(n_steps)]
    ranges = pl.DataFrame({
        "name": [f"period {i}" for i in range(n_steps)],
        "cpu_start_ns": bounds[:n_steps].astype(np.int64),
        "cpu_end_ns": cpu_end,
        "kind": ["decode"] * n_steps,
    }, schema={k: STEPS_SCHEMA[k] for k in ("name", "cpu_start_ns", "cpu_end_ns", "kind")})
    detail = f"{n_steps} periods of {p} kernels (self-match {score:.1%})"
    return ranges, "kernel_period", detail


#: the embedding lookup that starts every decode step
EMBEDDING = re.compile(r"embedding|indexselect|index_select", re.IGNORECASE)


def _phase(kernels: pl.DataFrame, p: int) -> int:
    """Where in the cycle a step starts.

    First choice: the embedding lookup, if exactly one kernel of the cycle looks like one. Else the
    position after the longest recurring pause — on the host (launch to launch: Python between
    steps) when launches are known, on the GPU otherwise.
    """
    names = kernels["name"].head(p).to_list()
    emb = [i for i, n in enumerate(names) if EMBEDDING.search(n)]
    if len(emb) == 1:
        return emb[0]
    n_cycles = kernels.height // p
    at = kernels["launch_start_ns"]
    if at.null_count() == 0:
        t = at.to_numpy()
        gaps = np.concatenate([[0], np.diff(t)])
    else:
        starts = kernels["start_ns"].to_numpy()
        ends = np.maximum.accumulate(kernels["end_ns"].to_numpy())
        gaps = np.concatenate([[0], starts[1:] - ends[:-1]])
    g = gaps[: n_cycles * p].reshape(n_cycles, p)
    score = np.median(g[1:] if n_cycles > 1 else g, axis=0).astype(float)
    # A step boundary never falls inside the repeated layer block: only positions outside it
    # (embedding, final norm, head, sampling) are candidates.
    codes = kernels["name"].head(2 * p).cast(pl.Categorical).to_physical().to_numpy()
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
BACKWARD_KERNEL = r"(?i)backward|_bwd|bwd_|wgrad|dgrad"
TRAINING_CPU_OP = r"^autograd::engine::|^Optimizer\.(step|zero_grad)|Backward\d*$"


def training_evidence(trace: Trace, steps: Steps) -> str | None:
    """Why the decode steps look like training iterations, or None.

    A training iteration runs a backward pass and an optimizer step; decode runs neither. Evidence:
    the steps' GPU ops include backward kernels, or their CPU ranges hold autograd or
    ``Optimizer.step`` ops.
    """
    decode = steps.decode
    if decode.height == 0:
        return None
    ops = steps.ops.filter(pl.col("step").is_in(decode["step"].implode()))
    bwd = ops.filter(pl.col("name").str.contains(BACKWARD_KERNEL))
    reasons = []
    if bwd.height:
        reasons.append(f"{bwd.height} backward kernels such as {bwd['name'][0][:60]!r}")
    cpu = trace.cpu_ops.filter(pl.col("name").str.contains(TRAINING_CPU_OP)).sort("start_ns")
    if cpu.height:
        ranges = decode.select("cpu_start_ns", "cpu_end_ns").sort("cpu_start_ns")
        inside = cpu.join_asof(ranges, left_on="start_ns", right_on="cpu_start_ns",
                               strategy="backward").filter(
            pl.col("cpu_end_ns").is_not_null() & (pl.col("start_ns") < pl.col("cpu_end_ns")))
        if inside.height:
            reasons.append(f"{inside.height} autograd/optimizer ops such as "
                           f"{inside['name'][0][:60]!r}")
    return "; ".join(reasons) or None


# -- flagging ---------------------------------------------------------------------------------
def _flag(table: pl.DataFrame, ops: pl.DataFrame, *, has_gpu: bool):
    warnings: list[str] = []
    if not has_gpu:
        return table, warnings
    per = ops.filter(pl.col("step").is_not_null()).group_by("step").agg(
        (pl.col("kind") == "kernel").sum().alias("k"),
        (pl.col("end_ns") - pl.col("start_ns")).sum().alias("t"),
    )
    t = table.join(per, on="step", how="left").with_columns(pl.col("k", "t").fill_null(0))
    candidates = t.filter(pl.col("kind") == "decode")
    med_k = candidates["k"].median() or 0
    med_t = candidates["t"].median() or 0
    kind = (
        pl.when(pl.col("kind") != "decode").then(pl.col("kind"))
        .when(pl.col("k") == 0).then(pl.lit("empty"))
        .when(pl.col("t") > PREFILL_FACTOR * med_t).then(pl.lit("prefill"))
        .when(pl.col("k") < PARTIAL_FRACTION * med_k).then(pl.lit("partial"))
        .otherwise(pl.lit("decode"))
    )
    t = t.with_columns(kind.alias("kind"))
    for k in ("prefill", "partial", "empty"):
        idx = t.filter(pl.col("kind") == k)["step"].to_list()
        if idx:
            warnings.append(f"{len(idx)} step(s) flagged {k} and left out of the summary: {idx}")
    if t.filter(pl.col("kind") == "decode").height == 0:
        raise NoStepsError(
            f"found {t.height} step ranges but none holds a decode step's GPU work; "
            "pass --step-marker REGEX naming the annotation around each decode step"
        )
    return t.drop("k", "t"), warnings


def _some_names(ann: pl.DataFrame, n: int = 8) -> str:
    names = ann["name"].unique(maintain_order=True).head(n).to_list()
    return ", ".join(repr(x) for x in names) if names else "(none)"
