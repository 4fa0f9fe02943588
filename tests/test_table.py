"""tracekit.trace.table: the numpy columns the analysis runs on, against polars as the oracle.

Every table users see is built from these columns (``Table.to_polars``), and a table a user
builds in polars is read back through ``Table.from_polars``; both directions must keep values,
nulls, dtypes and row order, on real traces and on random ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers import examples
from hypothesis import given, settings
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from tracekit.trace import load
from tracekit.trace.model import GPU_OPS_SCHEMA
from tracekit.trace.table import Strings, Table

SAMPLES = Path(__file__).resolve().parents[1] / "sample_traces"
TRACES = ["h100/qwen2.5-7b_ctx2048_eager.json.gz", "qwen2.5-7b_ctx2048_eager_nsys.sqlite.gz",
          "peer/hta/rank0.json.gz"]


@pytest.mark.parametrize("name", TRACES)
def test_round_trip_on_real_traces(name):
    trace = load(SAMPLES / name)
    for key in ("gpu_ops", "launches", "annotations", "syncs", "cpu_ops"):
        frame = trace.__getattribute__(key)
        assert_frame_equal(Table.from_polars(frame).to_polars(), frame)


def test_gpu_ops_schema_is_the_polars_schema_users_see():
    trace = load(SAMPLES / TRACES[0])
    assert dict(trace.gpu_ops.schema) == GPU_OPS_SCHEMA


@settings(max_examples=examples(200), deadline=None)
@given(st.data())
def test_round_trip_random(data):
    n = data.draw(st.integers(0, 30))
    a = data.draw(st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
                           min_size=n, max_size=n))
    s = data.draw(st.lists(st.one_of(st.none(), st.text(max_size=6)), min_size=n, max_size=n))
    b = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    df = pl.DataFrame({"a": a, "s": s, "b": b}, schema={"a": pl.Int64, "s": pl.Utf8,
                                                       "b": pl.Boolean})
    t = Table.from_polars(df)
    assert_frame_equal(t.to_polars(), df)
    # the columns say the same as polars, row by row
    assert t["s"].tolist() == s
    assert t.valid("a").tolist() == [x is not None for x in a]
    assert t.filled("a", 7).tolist() == [7 if x is None else x for x in a]
    # take keeps rows in the order asked, nulls included
    idx = np.array(data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=10)) if n else [],
                   dtype=np.int64)
    assert_frame_equal(t.take(idx).to_polars(), df[idx.tolist()] if n else df)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "ü", ""])), max_size=30))
def test_strings(items):
    s = Strings.of(items)
    assert s.tolist() == items
    assert s.eq("a").tolist() == [x == "a" for x in items]
    assert s.isin({"b", ""}).tolist() == [x in {"b", ""} for x in items]
    assert s.where(lambda v: v is not None and v > "a").tolist() == [
        x is not None and x > "a" for x in items]
    codes, values = s.dense()
    assert [values[c] for c in codes.tolist()] == items
    # values in order of first occurrence, each once
    seen = []
    for x in items:
        if x not in seen:
            seen.append(x)
    assert values == seen
    assert s.to_polars("x").to_list() == items



@pytest.mark.parametrize("name", [TRACES[0], TRACES[2]])
def test_gpu_ops_read_back_the_same_after_step_detection(name):
    """Step detection keeps one copy of the GPU ops (sorted by start, shared with the trace);
    the trace's own table must still read back row for row as the reader made it."""
    from tracekit.steps import detect_steps

    fresh, trace = load(SAMPLES / name), load(SAMPLES / name)
    before = fresh.gpu_ops
    assert not before["start_ns"].is_sorted()  # so the shared copy really is in another order
    steps = detect_steps(trace)
    assert steps.ops_t.height == before.height
    assert_frame_equal(trace.gpu_ops, before)
    assert trace.has_gpu and trace.table("gpu_ops").height == before.height
    # and a second detection over the rebuilt table finds the same steps
    assert_frame_equal(detect_steps(trace).table, steps.table)


@settings(max_examples=examples(100), deadline=None)
@given(st.lists(st.lists(st.tuples(st.one_of(st.none(), st.integers(-5, 5)),
                                   st.one_of(st.none(), st.sampled_from(["a", "b", "c"]))),
                         max_size=5), min_size=1, max_size=4))
def test_concat_is_polars_concat(parts):
    """Table.concat (readers join their tables with it) against polars' own concat."""
    schema = {"a": pl.Int64, "s": pl.Utf8}
    frames = [pl.DataFrame(p, schema=schema, orient="row") for p in parts]
    got = Table.concat([Table.from_polars(f) for f in frames]).to_polars()
    assert_frame_equal(got, pl.concat(frames))
