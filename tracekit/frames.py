"""The notebook view of an explanation: polars DataFrames, one per question.

``Explanation.steps``       one row per detected step (decode, prefill, partial): the JSON
                            contract's ``steps`` with ``idle_by_class_ms`` spread into
                            ``idle_<class>_ms`` columns
``Explanation.gaps``        one row per GPU idle gap of every step with GPU work: where it starts
                            (``start_ns`` on the trace's clock, ``start_in_step_us`` from the
                            step's first GPU op), how long it lasts, its class (see
                            :mod:`tracekit.breakdown`), the GPU op that ended it and, where host
                            attribution is available, the host op that held the CPU
``Explanation.kernels``     one row per kernel name over the decode steps, slowest first
``Explanation.categories``  one row per kernel category (the JSON's ``kernels_by_category``)

These are views of numbers the pipeline already computed; nothing here decides anything.
pandas users: ``explanation.to_pandas("gaps")`` (polars' own ``to_pandas`` needs pyarrow; this
does not).

    >>> import tracekit
    >>> e = tracekit.explain(tracekit.sample_path())              # doctest: +SKIP
    >>> e.gaps.group_by("class").agg(pl.col("duration_us").sum())  # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import polars as pl

from tracekit.breakdown import (
    GAP_CLASSES,
    TOP_KERNEL_COLUMNS,
    gap_columns,
    step_starts,
    top_kernel_rows,
)
from tracekit.steps import Steps
from tracekit.trace.model import Trace

FRAMES = ("steps", "gaps", "kernels", "categories")

GAPS_SCHEMA = {
    "step": pl.Int64,
    "kind": pl.Utf8,
    "start_ns": pl.Int64,
    "start_in_step_us": pl.Float64,
    "duration_us": pl.Float64,
    "class": pl.Utf8,
    "ended_by": pl.Utf8,
    "host_op": pl.Utf8,
}


def steps_frame(rows: list[dict]) -> pl.DataFrame:
    """The contract's per-step rows as a table (nested idle classes become columns)."""
    flat = []
    for r in rows:
        row = {k: v for k, v in r.items() if k != "idle_by_class_ms"}
        by_class = r.get("idle_by_class_ms") or {}
        row.update({f"idle_{c}_ms": by_class.get(c) for c in GAP_CLASSES})
        flat.append(row)
    return pl.DataFrame(flat, infer_schema_length=None)


def gaps_frame(trace: Trace, steps: Steps, host_ops: dict | None = None) -> pl.DataFrame:
    """Every idle gap of every step with GPU ops, in time order.

    ``host_ops`` maps ``(step, start_ns)`` of a gap to the host op that held the launching thread
    during it (host attribution); without it the column is null.
    """
    g = gap_columns(trace, steps, kinds=None)
    t, names = steps.table_t, steps.ops_t["name"]
    kinds = dict(zip(t["step"].tolist(), t["kind"].tolist()))
    t0 = step_starts(steps)
    ender = g["ender"]
    ended_by = names.take(np.maximum(ender, 0)).tolist() if ender.size else []
    rows = [{"step": s, "kind": kinds.get(s), "start_ns": a,
             "start_in_step_us": (a - t0[s]) / 1e3, "duration_us": (b - a) / 1e3,
             "class": GAP_CLASSES[c], "ended_by": op if e >= 0 else None,
             "host_op": (host_ops or {}).get((s, a))}
            for s, a, b, c, e, op in zip(g["step"].tolist(), g["start_ns"].tolist(),
                                         g["end_ns"].tolist(), g["cls"].tolist(),
                                         ender.tolist(), ended_by)]
    return pl.DataFrame(rows, schema=GAPS_SCHEMA)


def kernels_frame(steps: Steps) -> pl.DataFrame:
    """Every kernel (and copy, memset) name over the decode steps, most time per step first."""
    schema = {c: pl.Float64 for c in TOP_KERNEL_COLUMNS}
    schema.update(name=pl.Utf8, kind=pl.Utf8, category=pl.Utf8)
    return pl.DataFrame(top_kernel_rows(steps, None), schema=schema)


def categories_frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, infer_schema_length=None)


def to_pandas(df: pl.DataFrame):
    """A pandas DataFrame of ``df`` without pyarrow (plain Python columns, dtypes inferred)."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - exercised only where pandas is absent
        raise ImportError("to_pandas() needs pandas: pip install pandas") from None
    return pd.DataFrame(df.to_dict(as_series=False), columns=df.columns)
