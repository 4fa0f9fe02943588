"""Wall time of ``tracekit explain --json`` (the whole process) against the stdlib parse alone.

The target (issue: "tracekit explain: a fast, correct per-step breakdown"): explain, start-up,
imports, gunzip, decode, step detection, breakdown and JSON output included, takes no longer than
``gzip`` + ``json.load`` of the same file in this process. Both are measured in the same run,
alternating, and the medians compared; the ratio is what to report.

    python benchmarks/bench_explain.py                       # the largest trace in sample_traces/
    python benchmarks/bench_explain.py some_trace.json.gz -n 7
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def largest_sample() -> Path:
    traces = [p for p in (ROOT / "sample_traces").glob("*.json.gz")]
    return max(traces, key=lambda p: p.stat().st_size)


def stdlib_parse(path: Path) -> float:
    t = time.perf_counter()
    with gzip.open(path, "rb") as f:
        json.load(f)
    return time.perf_counter() - t


def explain_process(path: Path) -> float:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "tracekit", "explain", str(path), "--json"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"tracekit explain failed: {p.stderr.strip()}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace", nargs="?", type=Path)
    ap.add_argument("-n", type=int, default=5, help="repetitions of each (medians reported)")
    args = ap.parse_args()
    path = args.trace or largest_sample()
    raw_mb = len(gzip.open(path).read()) / 1e6
    base, ours = [], []
    for _ in range(args.n):
        base.append(stdlib_parse(path))
        ours.append(explain_process(path))
    child_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    b, o = statistics.median(base), statistics.median(ours)
    print(f"trace: {path.name} ({path.stat().st_size / 1e6:.1f} MB gz, {raw_mb:.1f} MB JSON)")
    print(f"cpu: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    print(f"gzip + json.load (in process):          median {b * 1e3:7.1f} ms  {sorted(round(x * 1e3) for x in base)}")
    print(f"tracekit explain --json (whole process): median {o * 1e3:7.1f} ms  {sorted(round(x * 1e3) for x in ours)}")
    print(f"peak RSS of the explain process: {child_rss_mb:.0f} MB")
    print(f"ratio explain / stdlib parse: {o / b:.2f}  (target <= 1.00)")


if __name__ == "__main__":
    main()
