"""Where the time goes across many traces: a `tracekit batch` output, read lazily with polars.

    tracekit batch 'runs/**/*.json.gz' --out fleet
    python analyses/batch_overview.py fleet            # prints the table; --md FILE writes it

One row per (GPU, model, verdict class): how many traces, the median step, the median share of
the step that is launch overhead and the median R_floor, and, from steps.parquet, the worst step
seen (the p99 latency over every step of those traces). Failed traces are counted apart, by their
error. Only the columns used are read (``scan_parquet`` pushes the projection down), so this stays
cheap at thousands of traces.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl


def overview(batch_dir: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    traces = pl.scan_parquet(batch_dir / "traces.parquet")
    steps = pl.scan_parquet(batch_dir / "steps.parquet")
    ok = traces.filter(pl.col("status") == "ok").with_columns(
        pl.col("verdict").str.extract(r"^([A-Za-z-]+)", 1).alias("verdict_class"))
    worst = (steps.filter(pl.col("kind") == "decode")
             .group_by("trace").agg(pl.col("latency_ms").quantile(0.99).alias("p99_step_ms")))
    table = (ok.join(worst, on="trace", how="left")
             .group_by("gpu", "model", "verdict_class")
             .agg(pl.len().alias("traces"),
                  pl.col("latency_ms").median().alias("median_step_ms"),
                  (pl.col("launch_overhead_ms") / pl.col("latency_ms")).median()
                  .alias("launch_share"),
                  pl.col("r_floor").median().alias("median_r_floor"),
                  pl.col("p99_step_ms").max().alias("worst_p99_step_ms"))
             .sort("gpu", "model", "verdict_class", nulls_last=True))
    failed = (traces.filter(pl.col("status") == "error")
              .group_by(pl.col("error").str.replace(r"^Error: \S+ ", "Error: FILE ").alias("error"))
              .agg(pl.len().alias("traces")).sort("traces", descending=True))
    return table.collect(), failed.collect()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("batch_dir", type=Path, help="the --out folder of tracekit batch")
    ap.add_argument("--md", type=Path, help="also write the table as Markdown here")
    a = ap.parse_args()
    if not (a.batch_dir / "traces.parquet").is_file():
        print(f"Error: {a.batch_dir}/traces.parquet does not exist: run tracekit batch first",
              file=sys.stderr)
        return 1
    table, failed = overview(a.batch_dir)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=60):
        print(table)
        if failed.height:
            print(failed)
    if a.md:
        lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
        lines += ["| " + " | ".join("" if v is None else f"{v:.3g}" if isinstance(v, float)
                                    else str(v) for v in r) + " |" for r in table.iter_rows()]
        a.md.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
