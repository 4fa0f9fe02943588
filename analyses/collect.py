"""Collect measured cells into ``analyses/results/study.parquet`` (and its ``.csv`` copy).

Inputs, any mix of:

* sweep output folders (``tracekit sweep ... --out runs/h100``): their ``parts/*.parquet`` rows;
* ``tracekit capture`` files or globs (``'sample_traces/h100/*.json.gz'``): one row each, made as a
  sweep cell would make it (:func:`tracekit.sweep.row_from_capture`); files that are not tracekit
  captures (plain profiler traces) and captures run under Nsight Systems (whose timings carry its
  tracing) are skipped with a note.

When two rows describe the same cell (GPU, model, context, mode, attention), the one with more
sessions wins (then the later input). Rows are sorted by GPU, model, context, mode, attention.

    python analyses/collect.py runs/h100 runs/h200            # after a GPU sweep
    python analyses/collect.py 'sample_traces/*.json.gz' 'sample_traces/h100/*.json.gz'
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

from tracekit.errors import BadInput  # noqa: E402
from tracekit.fileio import atomic_write_bytes, atomic_write_text  # noqa: E402
from tracekit.sweep import COLUMNS, read_results, row_from_capture, row_schema  # noqa: E402
from tracekit.trace.capture_meta import read_capture_meta  # noqa: E402

KEY = ["gpu", "model", "ctx", "mode", "attention"]
RESULTS = ROOT / "analyses" / "results"


def rows_from(inputs: list[str]) -> pl.DataFrame:
    frames = []
    for i, spec in enumerate(inputs):
        p = Path(spec)
        if p.is_dir() and (p / "parts").is_dir():
            df = read_results(p)
        else:
            files = sorted(glob.glob(spec)) if glob.has_magic(spec) else [spec]
            rows = []
            for f in files:
                if (_meta(f) or {}).get("profiler") == "nsys":
                    print(f"skipped {f}: made under Nsight Systems (its timings carry nsys's "
                          "tracing)", file=sys.stderr)
                    continue
                try:
                    rows.append(row_from_capture(f, label=_label(f)))
                except BadInput as exc:
                    print(f"skipped {exc}", file=sys.stderr)
            df = pl.DataFrame(rows, schema=row_schema()) if rows else None
        if df is not None and df.height:
            frames.append(df.with_columns(pl.lit(i).alias("_input")))
    if not frames:
        raise SystemExit("Error: no rows: pass sweep folders (with parts/) or tracekit captures")
    df = pl.concat(frames, how="diagonal_relaxed")
    df = (df.sort(["sessions", "_input"]).unique(subset=KEY, keep="last")
          .sort(KEY).select(COLUMNS))
    return df


def _meta(f: str) -> dict | None:
    try:
        return read_capture_meta(f)
    except (BadInput, ValueError):
        return None


def _label(f: str) -> str:
    p = Path(f).resolve()
    return str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else Path(f).name


def csv_copy(df: pl.DataFrame) -> str:
    """The table as CSV; list columns as JSON arrays (CSV has no lists)."""
    lists = [c for c, t in df.schema.items() if isinstance(t, pl.List)]
    flat = df.with_columns(
        pl.Series(c, [json.dumps(v) for v in df[c].to_list()], dtype=pl.Utf8) for c in lists)
    return flat.write_csv(float_precision=6)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("inputs", nargs="+", help="sweep folders, capture files or quoted globs")
    ap.add_argument("--out", type=Path, default=RESULTS, help="folder for study.parquet/.csv")
    args = ap.parse_args()
    df = rows_from(args.inputs)
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / ".study.parquet.tmp"
    df.write_parquet(tmp)
    atomic_write_bytes(args.out / "study.parquet", tmp.read_bytes())
    tmp.unlink()
    atomic_write_text(args.out / "study.csv", csv_copy(df))
    print(f"{df.height} cells -> {args.out / 'study.parquet'} (+ .csv)")
    print(df.select(KEY + ["sessions", "median_ms", "r_floor_all_weights"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
