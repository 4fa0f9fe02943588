"""Size sweep: ``tracekit explain --json`` against a stdlib parse and HTA's load, ×1 to ×33.

The scaled traces are made here, in a temp dir, from a committed sample (see ``scale.py``: each
copy is a valid continuation with fresh ids and renumbered steps). Per size, each contender runs
as its own process, alternating, ``-n`` times; the medians of wall time and peak RSS (from
``wait4``) are printed with the ratios the targets name:

* tracekit ÷ stdlib (``gzip`` + ``json.load``): ≤ 0.8 at ~30 MB, ≤ 0.35 at ≥ 300 MB;
* HTA ``TraceAnalysis`` load ÷ tracekit: ≥ 15 (``--no-hta`` skips it; it needs the ``hta`` extra);
* tracekit peak RSS ÷ JSON size: ≤ 0.5 at ≥ 300 MB, and ≤ 300 MB at 1 GB.

It also times ``tracekit --help`` and the Nsight SQLite reader against a plain ``sqlite3`` fetch
of the kernel and runtime rows (target ≤ 2×).

    python benchmarks/bench_sizes.py                      # x1 x3 x10, with HTA
    python benchmarks/bench_sizes.py --sizes 1 3 10 33 --no-hta -n 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_traces" / "llama-3.1-8b_ctx4096_eager.json.gz"
NSYS = ROOT / "sample_traces" / "qwen2.5-7b_ctx2048_eager_nsys.sqlite.gz"
sys.path.insert(0, str(Path(__file__).resolve().parent))

STDLIB = "import gzip, json, sys; json.load(gzip.open(sys.argv[1]))"
HTA = ("import sys, logging; logging.disable(logging.CRITICAL)\n"
       "from hta.trace_analysis import TraceAnalysis\n"
       "TraceAnalysis(trace_dir=sys.argv[1])\n")


def run(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one child process."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace")
    if p.returncode != 0:
        sys.exit(f"{cmd[:4]} failed ({p.returncode}): {err.strip()[-2000:]}")
    return dt, usage.ru_maxrss / 1024


def med(xs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(x[0] for x in xs), statistics.median(x[1] for x in xs)


def sweep(sizes: list[int], n: int, hta: bool) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    from scale import write_scaled

    print(f"cpu: {os.cpu_count()} cores, python {sys.version.split()[0]}, n={n} (medians)")
    print(f"{'JSON MB':>8} {'tracekit s':>10} {'stdlib s':>9} {'tk/std':>7} {'HTA s':>7} "
          f"{'HTA/tk':>7} {'tk RSS MB':>9} {'RSS/JSON':>8} {'std RSS':>8} {'HTA RSS':>8}")
    with tempfile.TemporaryDirectory(prefix="tracekit-bench-") as tmp:
        for k in sizes:
            d = Path(tmp) / f"x{k}"
            d.mkdir()
            trace = d / "rank0.json.gz"
            size = write_scaled(SAMPLE, k, trace)
            tk, std, ht = [], [], []
            for _ in range(n):
                tk.append(run([sys.executable, "-m", "tracekit", "explain", str(trace), "--json"],
                              env))
                std.append(run([sys.executable, "-c", STDLIB, str(trace)]))
                if hta:
                    ht.append(run([sys.executable, "-c", HTA, str(d)]))
            (tk_s, tk_rss), (std_s, std_rss) = med(tk), med(std)
            hta_s, hta_rss = med(ht) if ht else (float("nan"), float("nan"))
            mb = size / 1e6
            print(f"{mb:8.1f} {tk_s:10.2f} {std_s:9.2f} {tk_s / std_s:7.2f} {hta_s:7.2f} "
                  f"{hta_s / tk_s:7.1f} {tk_rss:9.0f} {tk_rss / mb:8.2f} {std_rss:8.0f} "
                  f"{hta_rss:8.0f}", flush=True)
            trace.unlink()


def startup(n: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    runs = [run([sys.executable, "-m", "tracekit", "--help"], env)[0] for _ in range(max(n, 5))]
    print(f"tracekit --help: median {statistics.median(runs):.3f} s (target <= 0.15 s)")


def nsys(n: int) -> None:
    import gzip
    import sqlite3

    sys.path.insert(0, str(ROOT))
    from tracekit.trace.nsys import load_nsys

    with tempfile.TemporaryDirectory(prefix="tracekit-bench-") as tmp:
        db = Path(tmp) / "r.sqlite"
        db.write_bytes(gzip.decompress(NSYS.read_bytes()))

        def plain() -> None:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            con.execute("SELECT s.value, k.start, k.end, k.deviceId, k.streamId, k.correlationId "
                        "FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN StringIds s "
                        "ON s.id = k.demangledName").fetchall()
            con.execute("SELECT s.value, r.start, r.end, r.globalTid, r.correlationId "
                        "FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds s "
                        "ON s.id = r.nameId").fetchall()
            con.close()

        ours, base = [], []
        for _ in range(max(n, 3)):
            t = time.perf_counter()
            plain()
            base.append(time.perf_counter() - t)
            t = time.perf_counter()
            load_nsys(db)
            ours.append(time.perf_counter() - t)
        b, o = statistics.median(base), statistics.median(ours)
        print(f"Nsight export {db.stat().st_size / 1e6:.1f} MB: load_nsys {o:.3f} s, plain sqlite3 "
              f"fetch {b:.3f} s, ratio {o / b:.2f} (target <= 2)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 3, 10])
    ap.add_argument("-n", type=int, default=3, help="runs of each contender per size")
    ap.add_argument("--no-hta", action="store_true", help="skip HTA's load")
    ap.add_argument("--only", choices=["sweep", "startup", "nsys"], help="run one part")
    args = ap.parse_args()
    if args.only in (None, "startup"):
        startup(args.n)
    if args.only in (None, "nsys"):
        nsys(args.n)
    if args.only in (None, "sweep"):
        sweep(args.sizes, args.n, not args.no_hta)


if __name__ == "__main__":
    main()
