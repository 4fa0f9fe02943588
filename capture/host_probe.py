"""How fast this host's CPUs issue CUDA launches, per CPU and per process — a campaign helper.

A batch-1 eager decode step is host-bound (a few thousand launches a step), so how fast one
thread issues launches sets the step. On a noisy host the stall-free step differs between fresh
processes by up to 2×; this probe asks whether launch speed does too, and whether it depends on
the CPU the thread runs on. It does not import tracekit and writes one JSON line:

* ``launch_us``  — µs per launch of a one-element ``add_`` (host-bound: the GPU finishes each
  in about a µs), ``--reps`` timings of ``--n`` launches on the CPU(s) the process was given;
* ``python_ms``  — ms of a fixed pure-Python loop, the same reps (CPU speed without CUDA);
* ``sweep``      — with ``--sweep``, the same per CPU (the thread pinned to each in turn, two
  passes) — which CPUs are slow, and whether that holds from one pass to the next;
* ``cpu``, ``allowed``, ``schedstat`` (ns run, ns waited for a CPU over the timings), ``steal``
  (the host's steal jiffies over the timings, /proc/stat).

    python3 capture/host_probe.py --sweep          # one process, every CPU
    for i in 1 2 3; do python3 capture/host_probe.py; done   # fresh processes
    python3 capture/host_probe.py --fast-cpus probe.jsonl     # "none", or the fast CPUs' list

``--fast-cpus`` reads a sweep back and prints the CPUs whose every pass was within 15% of the
fastest CPU (at least four: the fastest four otherwise), as a Linux CPU list for
``tracekit capture --cpu-affinity``, or ``none`` where every CPU is that fast.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def _steal() -> int | None:
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8])
    except (OSError, ValueError, IndexError):
        return None


def _schedstat() -> tuple[int, int] | None:
    try:
        with open("/proc/thread-self/schedstat") as f:
            run, wait, _ = (int(x) for x in f.read().split())
        return run, wait
    except (OSError, ValueError):
        return None


def _cpu() -> int | None:
    try:
        with open("/proc/thread-self/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def fast_cpus(sweep: dict[str, list[float]], tol: float = 1.15, least: int = 4) -> list[int] | None:
    """The CPUs whose slowest pass is within ``tol`` of the fastest CPU's median (at least
    ``least`` of them), or None where that is every CPU."""
    worst = {int(c): max(v) for c, v in sweep.items() if v}
    best = min(statistics.median(v) for v in sweep.values() if v)
    fast = sorted(c for c, w in worst.items() if w <= best * tol)
    if len(fast) == len(worst):
        return None
    if len(fast) < least:
        fast = sorted(sorted(worst, key=worst.__getitem__)[:least])
    return fast


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast-cpus", metavar="PROBE_JSONL", help="print the fast CPUs of a sweep")
    ap.add_argument("--n", type=int, default=3000, help="launches per timing")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--sweep", action="store_true", help="also time each CPU in turn")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    if args.fast_cpus:
        with open(args.fast_cpus) as f:
            sweep = next(json.loads(x)["sweep"] for x in f if '"sweep"' in x)
        fast = fast_cpus(sweep)
        print("none" if fast is None else ",".join(map(str, fast)))
        return

    import torch

    x = torch.zeros(1, device="cuda")
    sync = torch.cuda.synchronize

    def launch_us() -> float:
        sync()
        t0 = time.perf_counter()
        for _ in range(args.n):
            x.add_(1)
        sync()
        return (time.perf_counter() - t0) / args.n * 1e6

    def python_ms() -> float:
        t0 = time.perf_counter()
        s = 0
        for i in range(200_000):
            s += i * i
        return (time.perf_counter() - t0) * 1e3

    for _ in range(3):
        launch_us()
    allowed = sorted(os.sched_getaffinity(0))
    st0, s0 = _schedstat(), _steal()
    cpu0 = _cpu()
    launches = [launch_us() for _ in range(args.reps)]
    pys = [python_ms() for _ in range(args.reps)]
    st1, s1 = _schedstat(), _steal()
    out: dict = {
        "label": args.label, "pid": os.getpid(), "allowed": allowed, "cpu": [cpu0, _cpu()],
        "launch_us": [round(v, 3) for v in launches],
        "launch_us_median": round(statistics.median(launches), 3),
        "python_ms": [round(v, 2) for v in pys],
        "python_ms_median": round(statistics.median(pys), 2),
        "schedstat_ns": [st1[0] - st0[0], st1[1] - st0[1]] if st0 and st1 else None,
        "steal_jiffies": s1 - s0 if s0 is not None and s1 is not None else None,
    }
    if args.sweep:
        sweep: dict[int, list[float]] = {c: [] for c in allowed}
        for _ in range(2):
            for c in allowed:
                os.sched_setaffinity(0, {c})
                launch_us()
                sweep[c].append(round(statistics.median(launch_us() for _ in range(3)), 3))
        os.sched_setaffinity(0, allowed)
        out["sweep"] = {str(c): v for c, v in sweep.items()}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
