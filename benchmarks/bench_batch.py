"""``tracekit batch`` over N copies of a 30 MB capture against ``tracekit explain`` in a shell loop.

The traces are N hard links to one committed capture (``llama-3.1-8b_ctx4096_eager.json.gz``,
30.6 MB of JSON): distinct paths, so each is one trace to the batch, at no disk cost. Contenders:

* **loop** — ``for f in …; do python -m tracekit explain --json "$f" > /dev/null; done`` in bash:
  what a user writes without ``batch`` (a process per trace: interpreter, imports, reader);
* **batch** — ``python -m tracekit batch DIR --out OUT`` (``--jobs`` workers, default one per
  core), from an empty OUT.

Reported: traces per minute (N ÷ wall time) and peak memory. For the batch, the peak is of the
*whole process tree* (parent + workers), sampled every 20 ms with psutil: the sum of their RSS
at one moment (pages shared between the processes counted once per process: an upper bound)
and of their PSS (shared pages split: what the tree takes from the machine), and beside them
the largest single process (``wait4``'s max RSS). For the loop, one ``explain``'s peak RSS
(``wait4``; the loop's processes never overlap). Also the CPU time each spends per trace (user +
system of every process, from ``wait4``): on a machine others are using, wall time depends on
the share of the cores each contender gets, CPU time much less. Targets: batch ≥ 2× the loop's traces per
minute, at ≤ 2× one explain's peak.

    python benchmarks/bench_batch.py -n 1000            # the full run (a quiet machine)
    python benchmarks/bench_batch.py -n 20 --jobs 2     # a quick check
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_traces" / "llama-3.1-8b_ctx4096_eager.json.gz"


def env() -> dict:
    e = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), e.get("PYTHONPATH")) if p)
    return e


def make_traces(n: int, folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    src = folder / "src.json.gz.orig"
    shutil.copy(SAMPLE, src)
    out = []
    for i in range(n):
        p = folder / f"trace_{i:05d}.json.gz"
        os.link(src, p)
        out.append(p)
    return out


def one_explain(trace: Path) -> tuple[float, float]:
    """(seconds, peak RSS MB) of one ``tracekit explain --json``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "tracekit", "explain", "--json", str(trace)],
                            stdout=subprocess.DEVNULL, env=env())
    _, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"explain failed on {trace}")
    return dt, usage.ru_maxrss / 1024


def loop(traces: list[Path], listing: Path) -> tuple[float, float]:
    """(seconds, CPU seconds of the loop and every process it ran)."""
    listing.write_text("\n".join(map(str, traces)) + "\n")
    script = (f'while read -r f; do "{sys.executable}" -m tracekit explain --json "$f" '
              f'> /dev/null || exit 1; done < "{listing}"')
    t0 = time.perf_counter()
    proc = subprocess.Popen(["bash", "-c", script], env=env())
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("the explain loop failed")
    return time.perf_counter() - t0, usage.ru_utime + usage.ru_stime


def tree_mb(pid: int) -> tuple[float, float]:
    """(sum of RSS, sum of PSS) of a process and its descendants, in MB. PSS counts a page
    shared by k processes (the interpreter, numpy's libraries) as 1/k in each: the sum is what
    the tree takes from the machine; the RSS sum counts shared pages once per process."""
    import psutil

    try:
        p = psutil.Process(pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, 0.0
    rss = pss = 0
    for q in procs:
        try:
            m = q.memory_full_info()
            rss, pss = rss + m.rss, pss + m.pss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return rss / 2**20, pss / 2**20


def batch(folder: Path, out: Path, jobs: int | None) -> tuple[float, float, float, float, float]:
    """(seconds, CPU seconds, peak tree RSS MB, peak tree PSS MB, largest single process MB)."""
    cmd = [sys.executable, "-m", "tracekit", "batch", str(folder), "--out", str(out), "--quiet"]
    if jobs:
        cmd += ["--jobs", str(jobs)]
    peak = [0.0, 0.0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, env=env())
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            rss, pss = tree_mb(proc.pid)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            time.sleep(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    _, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t0
    done.set()
    th.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("batch failed")
    # the parent's own max RSS (wait4) and, through RUSAGE_CHILDREN, its largest worker's
    largest = max(usage.ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return dt, usage.ru_utime + usage.ru_stime, peak[0], peak[1], largest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=1000, help="traces (default 1000)")
    ap.add_argument("--jobs", type=int, default=None, help="batch workers (default: one per core)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        traces = make_traces(a.n, Path(tmp) / "traces")
        one_explain(traces[0])  # warm the page cache and bytecode
        single = [one_explain(traces[0]) for _ in range(3)]
        one_s = sorted(s for s, _ in single)[1]
        one_mb = sorted(m for _, m in single)[1]
        t_loop, cpu_loop = loop(traces, Path(tmp) / "list.txt")
        t_batch, cpu_batch, tree_rss, tree_pss, largest_mb = batch(Path(tmp) / "traces", Path(tmp) / "out", a.jobs)
    loop_tpm, batch_tpm = a.n / t_loop * 60, a.n / t_batch * 60
    print(f"{a.n} copies of {SAMPLE.name} (30.6 MB JSON), {os.cpu_count()} cores, "
          f"batch --jobs {a.jobs or os.cpu_count()}")
    print(f"one explain:  {one_s:6.2f} s   peak {one_mb:6.0f} MB")
    print(f"loop:         {t_loop:6.1f} s   {loop_tpm:7.1f} traces/min   peak {one_mb:6.0f} MB "
          "(one process at a time)")
    print(f"batch:        {t_batch:6.1f} s   {batch_tpm:7.1f} traces/min   peak {tree_rss:6.0f} MB "
          f"RSS summed over the process tree ({tree_pss:.0f} MB PSS; largest process "
          f"{largest_mb:.0f} MB)")
    print(f"CPU:          loop {cpu_loop / a.n * 1e3:.0f} ms/trace, batch {cpu_batch / a.n * 1e3:.0f} "
          f"ms/trace ({cpu_loop / cpu_batch:.2f}x less; on a busy machine wall time follows the "
          "CPU share each contender gets)")
    print(f"throughput:   {batch_tpm / loop_tpm:.2f}x the loop (target >= 2)")
    print(f"memory:       {tree_rss / one_mb:.2f}x one explain's peak RSS by the tree's RSS sum, "
          f"{tree_pss / one_mb:.2f}x by its PSS sum (target <= 2)")


if __name__ == "__main__":
    main()
