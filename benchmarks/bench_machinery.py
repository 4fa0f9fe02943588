"""What each piece of the reader's performance machinery buys: ``explain --json`` with and without it.

Per size (×1 ≈ 30 MB, ×10 ≈ 300 MB, ×33 ≈ 1 GB of JSON: copies of the Llama sample made by
``scale.py`` in a temp dir), every variant runs as its own process, the variants alternating
(their order rotates each round), and the medians of wall time, CPU time and peak RSS (``wait4``)
are printed against the stdlib parse of the same file (``gzip`` + ``json.load``) and against
"all on". ``min s`` is a variant's fastest run (the one other processes disturbed least) and
``spread`` is (max - min) ÷ median of its wall times: how noisy the machine was. On a shared
machine compare CPU time (user + system) more than wall time.

A variant turns one piece off from outside the code, so the script measures the code as it ships:

* ``no C pass``: ``TRACEKIT_PURE_PYTHON=1`` (the Python column builder reads every slice);
* ``plain decode``: every event's fields decoded, whatever its phase (``tracekit.trace.decode``'s
  by-phase decoders replaced by the plain ones);
* ``no trim``: ``tracekit.memory``'s ``malloc_trim`` made a no-op (``release()`` does nothing).

What it measured, and what went because of it, is in ``docs/reading.md`` ("What the speed
machinery buys").

The JSON targets (``docs/reading.md``): tracekit ÷ stdlib ≤ 0.8 at ~30 MB and ≤ 0.35 at ~300 MB;
peak RSS ≤ 0.5 × the JSON size.

    python benchmarks/bench_machinery.py                      # x1 x10 (n=5), x33 (n=2)
    python benchmarks/bench_machinery.py --sizes 1 10 -n 3 --keep /tmp/scaled
    git archive v0 | tar -x -C /tmp/v0   # (and build or copy its _columns*.so there)
    python benchmarks/bench_machinery.py --before /tmp/v0   # adds that code as a variant
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_sizes import STDLIB, child_env, run, scaled  # noqa: E402

#: the tracekit process of every variant: ``python -m tracekit``'s entry, with the variant's
#: patches (argv[1], Python statements) run before the CLI is imported
WRAPPER = ("import sys\n"
           "sys.path.remove('')\n"  # not the working directory's tracekit: PYTHONPATH's
           "patch = sys.argv[1]\n"
           "sys.argv = ['tracekit', *sys.argv[2:]]\n"
           "exec(patch)\n"
           "import tracekit.cli as cli\n"
           "cli.entry()\n")

#: name -> (environment, patch); the first is the baseline
VARIANTS: dict[str, tuple[dict, str]] = {
    "all on": ({}, ""),
    "no C pass": ({"TRACEKIT_PURE_PYTHON": "1"}, ""),
    "plain decode": ({}, "import tracekit.trace.decode as D; "
                         "D._EVENTS_BY_PHASE, D._FILE_BY_PHASE = D._EVENTS_PLAIN, D._FILE_PLAIN"),
    "no trim": ({}, "import tracekit.memory as m; m._trim = lambda: None"),
}


def variant_cmd(name: str, trace: Path) -> tuple[list[str], dict]:
    extra, patch = VARIANTS[name]
    env = {**child_env(tracekit=True), **extra}
    return [sys.executable, "-c", WRAPPER, patch, "explain", str(trace), "--json"], env


def measure(trace: Path, n: int, names: list[str]) -> dict[str, list[tuple[float, float, float]]]:
    """name -> [(wall s, peak RSS MB, CPU s)] over ``n`` rounds, variants alternating."""
    cmds = {name: variant_cmd(name, trace) for name in names}
    std = ([sys.executable, "-c", STDLIB, str(trace)], child_env())
    order = [*names, "stdlib"]
    out: dict[str, list] = {k: [] for k in order}
    for i in range(n):
        for name in order[i % len(order):] + order[:i % len(order)]:  # rotate each round
            cmd, env = std if name == "stdlib" else cmds[name]
            out[name].append(run(cmd, env))
    return out


def table(mb: float, res: dict[str, list]) -> None:
    med = {k: tuple(statistics.median(r[i] for r in v) for i in range(3)) for k, v in res.items()}
    base, std = med["all on"], med["stdlib"]
    for name, (wall, rss, cpu) in med.items():
        walls = [r[0] for r in res[name]]
        spread = (max(walls) - min(walls)) / wall
        print(f"{mb:7.0f} {name:14} {len(walls):2} {wall:7.2f} {min(walls):7.2f} {spread:6.0%} "
              f"{cpu:7.2f} "
              f"{rss:7.0f} {wall / std[0]:7.2f} {rss / std[1]:7.2f} {rss / mb:8.2f} "
              f"{wall / base[0]:7.2f} {rss / base[1]:7.2f} {cpu / base[2]:7.2f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 33])
    ap.add_argument("-n", type=int, default=5, help="rounds per size below x33")
    ap.add_argument("--n33", type=int, default=2, help="rounds at x33 (each ~1 min)")
    ap.add_argument("--only", nargs="+", choices=list(VARIANTS), help="variants to run")
    ap.add_argument("--keep", type=Path, help="make the scaled traces here and reuse them")
    ap.add_argument("--before", type=Path, help="a checkout of older code (with its compiled "
                    "pass built) to run as one more variant, 'before'")
    args = ap.parse_args()
    if args.before:  # that checkout's code first on the path, its own machinery as it was
        VARIANTS["before"] = ({"PYTHONPATH": str(args.before.resolve())}, "")
    names = ["all on", *[v for v in (args.only or VARIANTS) if v != "all on"]]
    if args.before and "before" not in names:
        names.append("before")
    print(f"cpu: {os.cpu_count()} cores, python {sys.version.split()[0]}, load average "
          f"{os.getloadavg()[0]:.2f} at start; medians; ratios of wall, RSS, CPU")
    print(f"{'JSON MB':>7} {'variant':14} {'n':>2} {'wall s':>7} {'min s':>7} {'spread':>6} {'cpu s':>7} "
          f"{'RSS MB':>7} {'÷std':>7} {'RSS÷std':>7} {'RSS÷JSON':>8} {'÷on':>7} {'RSS÷on':>7} "
          f"{'cpu÷on':>7}")
    with tempfile.TemporaryDirectory(prefix="tracekit-mach-") as tmp:
        where = args.keep or Path(tmp)
        where.mkdir(parents=True, exist_ok=True)
        for k in args.sizes:
            trace = where / f"x{k}.json.gz"
            size_file = where / f"x{k}.size"
            if not (trace.exists() and size_file.exists()):
                size_file.write_text(str(scaled(k, trace)))
            mb = int(size_file.read_text()) / 1e6
            if k == args.sizes[0]:  # warm-up: bytecode caches, the file in the page cache
                measure(trace, 1, names)
            table(mb, measure(trace, args.n33 if k >= 33 else args.n, names))
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
