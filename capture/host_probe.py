"""How fast this host issues CUDA launches, per CPU and per fresh process (a campaign helper:
``capture/calibration_campaign.sh`` with ``PROBE=...``). A batch-1 eager step is host-bound.

Prints one JSON line: ``launch_us`` (µs per launch of a one-element ``add_``), ``python_ms`` (a
pure-Python loop), ``cpu``, ``schedstat_ns`` (run, waited), ``steal_jiffies``; ``--sweep`` adds
``sweep``: per CPU, pinned to each in turn, two passes. ``--fast-cpus FILE`` prints a sweep's
CPUs whose every pass was within 15% of the fastest (at least four), or ``none`` if all were.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from tracekit.capture.cpus import current_cpu, format_cpulist


def _counters() -> tuple[int | None, ...]:
    """ns run and ns waited for a CPU by this thread; the host's steal jiffies."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            run, wait = f.read().split()[:2]
        with open("/proc/stat") as f:
            steal = f.readline().split()[8]
        return int(run), int(wait), int(steal)
    except (OSError, ValueError, IndexError):
        return None, None, None


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
    ap.add_argument("--fast-cpus", metavar="PROBE_JSONL")
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    if args.fast_cpus:
        with open(args.fast_cpus) as f:
            sweep = next(json.loads(x)["sweep"] for x in f if '"sweep"' in x)
        fast = fast_cpus(sweep)
        print("none" if fast is None else format_cpulist(fast))
        return

    import torch

    x = torch.zeros(1, device="cuda")

    def launch_us() -> float:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.n):
            x.add_(1)
        torch.cuda.synchronize()
        return (time.perf_counter() - t0) / args.n * 1e6

    def python_ms() -> float:
        t0 = time.perf_counter()
        sum(i * i for i in range(200_000))
        return (time.perf_counter() - t0) * 1e3

    for _ in range(3):
        launch_us()
    allowed = sorted(os.sched_getaffinity(0))
    c0, cpu0 = _counters(), current_cpu()
    us, ms = ([round(f(), 3) for _ in range(args.reps)] for f in (launch_us, python_ms))
    d = [b - a if a is not None and b is not None else None for a, b in zip(c0, _counters())]
    out: dict = {"label": args.label, "pid": os.getpid(), "allowed": allowed,
                 "cpu": [cpu0, current_cpu()], "launch_us": us, "python_ms": ms,
                 "launch_us_median": statistics.median(us),
                 "python_ms_median": statistics.median(ms),
                 "schedstat_ns": d[:2], "steal_jiffies": d[2]}
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
