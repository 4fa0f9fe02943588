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

import polars as pl

from tracekit.breakdown import GAP_CLASSES, TOP_KERNEL_COLUMNS, gap_rows, top_kernel_rows
from tracekit.contract import CategoryRow, StepRow
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


def steps_frame(rows: list[StepRow]) -> pl.DataFrame:
    """The contract's per-step rows as a table (nested idle classes become columns)."""
    flat = []
    for r in rows:
        row = {k: v for k, v in r.items() if k != "idle_by_class_ms"}
        by_class = r.get("idle_by_class_ms") or {}
        row.update({f"idle_{c}_ms": by_class.get(c) for c in GAP_CLASSES})
        flat.append(row)
    return pl.DataFrame(flat, infer_schema_length=None)


def gaps_frame(trace: Trace, steps: Steps, host_ops: dict | None = None) -> pl.DataFrame:
    """Every idle gap of every step with GPU ops, in time order (:func:`gap_rows`)."""
    return pl.DataFrame(gap_rows(trace, steps, host_ops), schema=GAPS_SCHEMA)


def kernels_frame(steps: Steps) -> pl.DataFrame:
    """Every kernel (and copy, memset) name over the decode steps, most time per step first."""
    schema: dict[str, type[pl.DataType]] = {c: pl.Float64 for c in TOP_KERNEL_COLUMNS}
    schema.update(name=pl.Utf8, kind=pl.Utf8, category=pl.Utf8)
    return pl.DataFrame(top_kernel_rows(steps, None), schema=schema)


def categories_frame(rows: list[CategoryRow]) -> pl.DataFrame:
    return pl.DataFrame(rows, infer_schema_length=None)


def to_pandas(df: pl.DataFrame):
    """A pandas DataFrame of ``df`` without pyarrow (plain Python columns, dtypes inferred)."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - exercised only where pandas is absent
        raise ImportError("to_pandas() needs pandas: pip install pandas") from None
    return pd.DataFrame(df.to_dict(as_series=False), columns=df.columns)
