"""The vectorized helpers under step membership and host attribution, against plain Python
(and host attribution's summaries against the polars code they replaced).

``first_row`` replaces a ``unique(keep="first")`` + left join; ``_parents`` replaces a scan
with a stack over a thread's frames. Each is checked on random inputs (ties, nesting, partial
overlaps, empty tables) against the straightforward loop it replaced.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from tracekit.host import _count_in_runs, _parents
from tracekit.steps import first_row


def _stack_scan(st: list[int], en: list[int]) -> list[int]:
    parent, stack = [-1] * len(st), []
    for i, s in enumerate(st):
        while stack and en[stack[-1]] <= s:
            stack.pop()
        if stack:
            parent[i] = stack[-1]
        stack.append(i)
    return parent


@pytest.mark.parametrize("seed", range(20))
def test_parents_match_a_stack_scan(seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        n = int(rng.integers(0, 120))
        st = np.sort(rng.integers(0, 200, n))
        en = st + rng.integers(0, int(rng.integers(1, 80)), n)
        order = np.lexsort((-en, st))
        st, en = st[order], en[order]
        want = _stack_scan(st.tolist(), en.tolist())
        assert _parents(st, en).tolist() == want
        # in short runs: jumps land in earlier runs, whose parents are already final
        for run in (1, 2, 7):
            assert _parents(st, en, run=run).tolist() == want


def _owner(v: int, cs, ce) -> int | None:
    """The rule as written: the last range starting at or before ``v``, if it has not ended."""
    k = max((i for i in range(len(cs)) if cs[i] <= v), default=None)
    return k if k is not None and v < ce[k] else None


@pytest.mark.parametrize("seed", range(10))
def test_count_in_runs_counts_each_row_in_its_range(seed):
    """A row belongs to the last range starting at or before it, if that range has not ended
    (ranges may overlap or share a start); only valid rows on the given threads count."""
    from tracekit.trace.table import Table

    rng = np.random.default_rng(seed)
    for _ in range(40):
        n, r = int(rng.integers(0, 60)), int(rng.integers(0, 8))
        cs = np.sort(rng.integers(0, 100, r))
        ce = cs + rng.integers(0, 30, r)
        start = rng.integers(-5, 140, n)
        tid = rng.integers(1, 4, n)
        valid = rng.random(n) < 0.9
        t = Table({"start_ns": start, "tid": tid}, {"start_ns": "Int64", "tid": "Int64"},
                  masks={"start_ns": valid, "tid": rng.random(n) < 0.9})
        tids = np.unique(rng.integers(1, 4, int(rng.integers(0, 3))))
        want = [0] * r
        for s, ok, th, tok in zip(start.tolist(), valid.tolist(), tid.tolist(),
                                  t.valid("tid").tolist()):
            if not ok or (tids.size and not (tok and th in tids.tolist())):
                continue
            k = _owner(s, cs, ce)
            if k is not None:
                want[k] += 1
        for run in (1, 3, 1 << 16):
            assert _count_in_runs(t, tids, cs, ce, run=run).tolist() == want


@pytest.mark.parametrize("seed", range(10))
def test_first_row_is_the_first_valid_match(seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        n, m = int(rng.integers(0, 40)), int(rng.integers(0, 40))
        keys = rng.integers(0, 15, n)
        valid = rng.random(n) < 0.8
        query = rng.integers(-2, 18, m)
        first: dict[int, int] = {}
        for i, (k, ok) in enumerate(zip(keys.tolist(), valid.tolist())):
            if ok:
                first.setdefault(k, i)
        want = [first.get(q, -1) for q in query.tolist()]
        assert first_row(keys, valid, query).tolist() == want


# -- host attribution's summaries on numpy columns, against the polars code they replaced -----
# The floats agree to rounding, not bit for bit: tracekit sums integer ns and divides once;
# polars multiplies by reciprocals and sums floats in its own order.
def _by_op_polars(gaps, ids, n=15):
    """host.by_op_table as it was written in polars (the oracle)."""
    import polars as pl

    k = max(len(ids), 1)
    g = gaps.filter(pl.col("step").is_in(ids))
    dur = pl.col("end_ns") - pl.col("start_ns")
    agg = g.group_by("op").agg(
        (dur.sum() / k / 1e6).alias("ms_per_step"), (pl.len() / k).alias("gaps_per_step"),
        (dur.filter(pl.col("stall")).sum() / k / 1e6).alias("stall_ms_per_step"),
        (dur.median() / 1e3).alias("median_gap_us")).sort("op")
    total = agg["ms_per_step"].sum() or 1.0
    return agg.with_columns((pl.col("ms_per_step") / total).alias("share")).sort(
        ["ms_per_step", "op"], descending=[True, False]).head(n).to_dicts()


def _normal_polars(gaps, ids):
    import polars as pl

    g = gaps.filter(~pl.col("stall") & pl.col("step").is_in(ids)
                    & pl.col("frame").is_not_null()).unique("frame")
    return dict(g.group_by("op").agg(((pl.col("op_end_ns") - pl.col("op_start_ns")).median()
                                      / 1e3).alias("us")).iter_rows())


def _steps_polars(gaps, steps):
    """host's per-step stall sums as they were written in polars: a stall is an op instance
    holding >= the step's threshold; its host time counts once, a lone gap's its own length."""
    import polars as pl

    dur = pl.col("end_ns") - pl.col("start_ns")
    g = gaps.join(steps.select("step", "threshold_ns"), on="step", how="left")
    key = pl.coalesce(pl.col("frame"), -pl.int_range(1, pl.len() + 1))
    g = g.with_columns((dur.sum().over("step", key) >= pl.col("threshold_ns")).alias("stall"))
    inst = g.filter(pl.col("stall")).group_by("step", "frame", "op_start_ns", "op_end_ns").agg(
        dur.sum().alias("idle"))
    host = pl.when(pl.col("frame").is_not_null()).then(
        pl.col("op_end_ns") - pl.col("op_start_ns")).otherwise(pl.col("idle"))
    sums = inst.group_by("step").agg(pl.col("idle").sum().alias("stall_ns"),
                                     host.sum().alias("stall_host_ns"))
    return g["stall"], steps.select("step").join(sums, on="step", how="left").with_columns(
        pl.col("stall_ns", "stall_host_ns").fill_null(0))


@pytest.mark.parametrize("name", ["qwen2.5-7b_ctx2048_eager.json.gz",
                                  "h100/qwen2.5-7b_ctx2048_eager_sdpa-flash.json.gz"])
def test_host_summaries_match_the_polars_code(name):
    from pathlib import Path

    pl = pytest.importorskip("polars")
    from tracekit.host import GAP_COLUMNS, STEP_COLUMNS, _normal_cost, attribute, by_op_table
    from tracekit.steps import detect_steps
    from tracekit.trace import load

    tr = load(Path(__file__).parent.parent / "sample_traces" / name)
    h = attribute(tr, detect_steps(tr))
    assert h.gaps.schema == {c: getattr(pl, t) for c, t in GAP_COLUMNS.items()}
    assert h.steps.schema == {c: getattr(pl, t) for c, t in STEP_COLUMNS.items()}
    assert h.gaps["start_ns"].is_sorted() and h.gaps["stall"].any()
    assert (h.gaps["frame"].is_null() == (h.gaps["op"] == "(no recorded op)")).all()
    stall, sums = _steps_polars(h.gaps, h.steps)
    assert stall.to_list() == h.gaps["stall"].to_list()
    assert sums.equals(h.steps.select("step", "stall_ns", "stall_host_ns"))
    ids = h.steps["step"].to_list()
    for some in (ids, ids[1:2], ids[::3]):
        assert by_op_table(h, some) == [pytest.approx(r, rel=1e-12)
                                        for r in _by_op_polars(h.gaps, some)]
        assert _normal_cost(h, some) == pytest.approx(_normal_polars(h.gaps, some), rel=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_runs_give_each_value_to_the_last_range_starting_before_it(seed):
    from tracekit.host import _runs

    rng = np.random.default_rng(seed)
    for _ in range(50):
        m, n = int(rng.integers(0, 8)), int(rng.integers(0, 60))
        cs = np.sort(rng.integers(0, 100, m))  # ties, overlaps, empty and inverted ranges
        ce = cs + rng.integers(-5, 40, m)
        start = np.sort(rng.integers(-10, 150, n))
        want: list[list[int]] = [[] for _ in range(m)]
        for v in start.tolist():
            k = _owner(v, cs, ce)
            if k is not None:
                want[k].append(v)
        lo, hi = _runs(start, cs, ce)
        assert [start[a:b].tolist() for a, b in zip(lo.tolist(), hi.tolist())] == want


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.integers(-5, 40), max_size=60), st.integers(0, 2))
def test_unique_inverse_is_numpys(keys, spread):
    """host._unique_inverse (a presence table for keys of a small range) against np.unique,
    on narrow keys (the table) and keys spread past its range (np.unique itself)."""
    from tracekit.host import _unique_inverse

    key = np.array(keys, dtype=np.int64) * (10 ** (6 * spread))
    uniq, back = _unique_inverse(key)
    want_u, want_b = np.unique(key, return_inverse=True)
    assert uniq.tolist() == want_u.tolist()
    assert back.tolist() == want_b.ravel().tolist()


@pytest.mark.parametrize("seed", range(10))
def test_frame_order_is_start_then_longer_first(seed):
    """The frames' order is lexsort((-end, start)), with or without equal starts."""
    from tracekit.host import _by_start_longer_first

    rng = np.random.default_rng(seed)
    for _ in range(40):
        n = int(rng.integers(0, 50))
        st = rng.integers(0, [5, 1000][seed % 2], n)  # few distinct starts, or mostly distinct
        if seed % 3 == 0:
            st = rng.permutation(np.unique(st))  # no ties: the single-key path
        en = st + rng.integers(0, 20, st.size)
        assert _by_start_longer_first(st, en).tolist() == np.lexsort((-en, st)).tolist()
