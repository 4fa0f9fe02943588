"""Size sweep: ``tracekit explain --json`` against a stdlib parse and HTA's load, ×1 to ×33.

The scaled traces are made here, in a temp dir, from a committed sample (see ``scale.py``: each
copy is a valid continuation with fresh ids and renumbered steps). Per size, each contender runs
as its own process, alternating, ``-n`` times; the medians of wall time and peak RSS (from
``wait4``) are printed with the ratios the targets name:

* tracekit ÷ stdlib (``gzip`` + ``json.load``): ≤ 0.8 at ~30 MB, ≤ 0.35 at ≥ 300 MB;
* HTA ``TraceAnalysis`` load ÷ tracekit: ≥ 15 (``--no-hta`` skips it; it needs the ``hta`` extra);
* tracekit peak RSS ÷ JSON size: ≤ 0.5 at ≥ 300 MB, and ≤ 300 MB at 1 GB.

A fourth contender, "no read", is ``explain --json`` with the reading taken away: the same
process (interpreter, CLI, every import the reader pays) explaining the trace's tables unpickled
(made in a child beforehand). HTA ÷ that is the most HTA ÷ tracekit could be with a reader that
took no time: the ceiling the 15× target meets at small sizes.

It also times ``tracekit --help``, and ``tracekit explain --json`` of each committed Nsight export
against a plain ``sqlite3`` fetch of its kernel and runtime rows (target ≤ 2×; ``--baseline DIR``
times another checkout beside this one, in the size sweep too).

    python benchmarks/bench_sizes.py                      # x1 x3 x10, with HTA
    python benchmarks/bench_sizes.py --sizes 1 3 10 33 --no-hta -n 3
    python benchmarks/bench_sizes.py --only nsys -n 5 --baseline /tmp/tracekit-main
    python benchmarks/bench_sizes.py --only sweep --sizes 1 10 33 --no-hta --baseline /tmp/old
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

#: explain --json with no reading: the tables come from a pickle (see the module's docstring)
NO_READ = ("import pickle, sys\n"
           "import tracekit.cli as cli\n"
           "import tracekit.explain, tracekit.trace.kineto\n"
           "with open(sys.argv[1], 'rb') as f:\n"
           "    cli.print_json(tracekit.explain.explain(pickle.load(f)).to_dict())\n")


def child_env(*, tracekit: bool = False) -> dict:
    """The environment of each contender. Bytecode caching is on whatever the caller's shell
    says (PYTHONDONTWRITEBYTECODE would make every run compile tracekit from source, ~0.04 s an
    installed package never pays); ``tracekit`` puts this checkout first on the path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if tracekit:
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    return env


def run(cmd: list[str], env: dict | None = None, cwd: Path | None = None
        ) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MB, CPU seconds user + system) of one child process. CPU time is
    what to compare on a shared machine: other processes stretch wall time, not CPU time."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
    _, status, usage = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace")
    if p.returncode != 0:
        sys.exit(f"{cmd[:4]} failed ({p.returncode}): {err.strip()[-2000:]}")
    return dt, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def med(xs: list[tuple[float, ...]]) -> tuple[float, ...]:
    return tuple(statistics.median(x[i] for x in xs) for i in range(len(xs[0])))


def baseline_env(env: dict, baseline: Path) -> dict:
    """``env`` with another checkout's tracekit first on the path (run it with that checkout as
    the working directory: ``python -m`` puts the working directory first)."""
    return dict(env, PYTHONPATH=str(baseline) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def sweep(sizes: list[int], n: int, hta: bool, baseline: Path | None = None) -> None:
    env, plain = child_env(tracekit=True), child_env()
    print(f"cpu: {os.cpu_count()} cores, python {sys.version.split()[0]}, n={n} (medians), "
          f"load average {os.getloadavg()[0]:.2f} at start")
    print("wall s and CPU s (user + system) per contender; ratios of both; RSS = peak RSS")
    print(f"{'JSON MB':>8} {'tk s':>6} {'tk cpu':>6} {'std s':>6} {'std cpu':>7} {'tk/std':>6} "
          f"{'cpu/cpu':>7} {'HTA s':>6} {'HTA/tk':>6} {'tk RSS':>6} {'RSS/JSON':>8} "
          f"{'std RSS':>7} {'HTA RSS':>7} {'noread s':>8} {'HTA/nr':>6}")
    with tempfile.TemporaryDirectory(prefix="tracekit-bench-") as tmp:
        for k in sizes:
            d = Path(tmp) / f"x{k}"
            d.mkdir()
            trace = d / "rank0.json.gz"
            size = scaled(k, trace)
            tk_cmd = [sys.executable, "-m", "tracekit", "explain", str(trace), "--json"]
            std_cmd = [sys.executable, "-c", STDLIB, str(trace)]
            tables = Path(tmp) / f"x{k}.pickle"
            run([sys.executable, "-c", "import pickle, sys; from tracekit.trace import load; "
                 "pickle.dump(load(sys.argv[1]), open(sys.argv[2], 'wb'), protocol=5)",
                 str(trace), str(tables)], env)
            nr_cmd = [sys.executable, "-c", NO_READ, str(tables)]
            if k == sizes[0]:  # warm-up: bytecode caches written, files in the page cache
                run(tk_cmd, env)
                run(std_cmd, plain)
                run(nr_cmd, env)
                if baseline is not None:
                    run(tk_cmd, baseline_env(env, baseline), baseline)
            tk, std, ht, nr, base = [], [], [], [], []
            for _ in range(n):
                if baseline is not None:
                    base.append(run(tk_cmd, baseline_env(env, baseline), baseline))
                tk.append(run(tk_cmd, env))
                std.append(run(std_cmd, plain))
                nr.append(run(nr_cmd, env))
                if hta:
                    ht.append(run([sys.executable, "-c", HTA, str(d)], plain))
            (tk_s, tk_rss, tk_cpu), (std_s, std_rss, std_cpu) = med(tk), med(std)
            hta_s, hta_rss, _ = med(ht) if ht else (float("nan"),) * 3
            nr_s = med(nr)[0]
            mb = size / 1e6
            print(f"{mb:8.1f} {tk_s:6.2f} {tk_cpu:6.2f} {std_s:6.2f} {std_cpu:7.2f} "
                  f"{tk_s / std_s:6.2f} {tk_cpu / std_cpu:7.2f} {hta_s:6.2f} {hta_s / tk_s:6.1f} "
                  f"{tk_rss:6.0f} {tk_rss / mb:8.2f} {std_rss:7.0f} {hta_rss:7.0f} "
                  f"{nr_s:8.3f} {hta_s / nr_s:6.1f}", flush=True)
            if base:
                b_s, b_rss, b_cpu = med(base)
                print(f"{'':>8} {b_s:6.2f} {b_cpu:6.2f} {'':>6} {'':>7} {b_s / std_s:6.2f} "
                      f"{b_cpu / std_cpu:7.2f} {'':>6} {'':>6} {b_rss:6.0f} {b_rss / mb:8.2f}"
                      f"   baseline ({baseline.name})", flush=True)
            trace.unlink()
            tables.unlink()
    print(f"load average {os.getloadavg()[0]:.2f} at end; this process's own peak RSS "
          f"{own_peak_mb():.0f} MB (a floor under each child's: see scaled())")


def scaled(k: int, out: Path) -> int:
    """Write the ×k trace in a child process; returns its JSON size.

    Not in this process: on Linux a child's peak RSS (``wait4``) starts from its parent's RSS at
    the fork, so a parent that had held a scaled trace would put that floor under every number
    this script prints (an earlier version's RSS figures at ×1 were this floor, not tracekit's)."""
    code = ("import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
            "from scale import write_scaled; "
            "print(write_scaled(Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])))")
    out_ = subprocess.run([sys.executable, "-c", code, str(Path(__file__).resolve().parent),
                           str(SAMPLE), str(k), str(out)], check=True, capture_output=True,
                          text=True, env=child_env()).stdout
    return int(out_.strip().splitlines()[-1])


def own_peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def startup(n: int) -> None:
    env = child_env(tracekit=True)
    run([sys.executable, "-m", "tracekit", "--help"], env)  # warm-up: bytecode caches
    runs, bare = [], []
    for _ in range(max(n, 5)):  # alternating with a bare interpreter: the machine's own pace
        runs.append(run([sys.executable, "-m", "tracekit", "--help"], env))
        bare.append(run([sys.executable, "-c", "pass"], env))
    (w, _, c), (bw, _, bc) = med(runs), med(bare)
    print(f"tracekit --help: median {w:.3f} s wall, {c:.3f} s CPU (target <= 0.15 s); "
          f"python -c pass: {bw:.3f} s wall, {bc:.3f} s CPU")


#: a plain fetch of the rows ``explain`` needs from an Nsight export: every kernel (name, times,
#: device, stream, correlation) and every runtime API call (name, times, thread, correlation),
#: names joined from StringIds — what any reader of the export must at least do
PLAIN_FETCH = (
    "import sqlite3, sys\n"
    "def fetch(db):\n"
    "    con = sqlite3.connect('file:' + db + '?mode=ro', uri=True)\n"
    "    con.execute('SELECT s.value, k.start, k.end, k.deviceId, k.streamId, k.correlationId '\n"
    "                'FROM CUPTI_ACTIVITY_KIND_KERNEL k JOIN StringIds s '\n"
    "                'ON s.id = k.demangledName').fetchall()\n"
    "    con.execute('SELECT s.value, r.start, r.end, r.globalTid, r.correlationId '\n"
    "                'FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds s '\n"
    "                'ON s.id = r.nameId').fetchall()\n"
    "    con.close()\n"
    "if __name__ == '__main__':\n"
    "    fetch(sys.argv[1])\n"
)
#: the reader alone, in one warm process: CPU seconds of load_nsys and of the plain fetch,
#: alternating (medians), with the imports already paid
READER_ONLY = (
    PLAIN_FETCH.split("if __name__")[0]
    + "import statistics, time\n"
    "from tracekit.trace.nsys import load_nsys\n"
    "db, n = sys.argv[1], int(sys.argv[2])\n"
    "load_nsys(db), fetch(db)\n"
    "ours, plain = [], []\n"
    "for _ in range(n):\n"
    "    t = time.process_time(); load_nsys(db); ours.append(time.process_time() - t)\n"
    "    t = time.process_time(); fetch(db); plain.append(time.process_time() - t)\n"
    "print(statistics.median(ours), statistics.median(plain))\n"
)


def nsys(n: int, baseline: Path | None) -> None:
    """``tracekit explain --json`` of each committed Nsight export against a plain ``sqlite3``
    fetch of its kernel and runtime rows, each its own process (interpreter start and imports
    count on both sides, as a user waits for them). Both read the same gunzipped ``.sqlite``:
    neither side pays for gunzip. ``baseline``: another checkout's tracekit, timed in the same
    alternation (before/after from one run)."""
    import gzip

    exports = sorted((ROOT / "sample_traces").rglob("*.sqlite.gz"))
    env, plain_env = child_env(tracekit=True), child_env()
    # `python -m` puts the working directory first on the path: each tree runs from its root
    trees = [("tracekit", env, ROOT)]
    if baseline is not None:
        trees.append((f"baseline ({baseline.name})", baseline_env(env, baseline), baseline))
    print(f"Nsight exports: explain --json vs a plain sqlite3 fetch of the kernel and runtime "
          f"rows (separate processes, gunzipped beforehand; n={max(n, 3)} medians; target <= 2)")
    print(f"{'export':<40} {'MB':>5} {'contender':<28} {'wall s':>6} {'cpu s':>6} {'/plain wall':>11} "
          f"{'/plain cpu':>10}")
    with tempfile.TemporaryDirectory(prefix="tracekit-bench-") as tmp:
        for gz in exports:
            db = Path(tmp) / gz.name.removesuffix(".gz")
            db.write_bytes(gzip.decompress(gz.read_bytes()))
            cmds = [(name, [sys.executable, "-m", "tracekit", "explain", str(db), "--json"], e,
                     cwd) for name, e, cwd in trees]
            cmds.append(("plain sqlite3 fetch", [sys.executable, "-c", PLAIN_FETCH, str(db)],
                         plain_env, None))
            for c in list(cmds):  # warm-up: bytecode caches, the page cache
                if c[0].startswith("baseline"):  # an older tree may not read every export
                    r = subprocess.run(c[1], capture_output=True, text=True, env=c[2], cwd=c[3])
                    if r.returncode != 0:
                        print(f"{gz.name[:40]:<40} {'':>5} {c[0][:28]:<28} failed: "
                              f"{r.stderr.strip()[-160:]}")
                        cmds.remove(c)
                    continue
                run(c[1], c[2], c[3])
            times: dict[str, list] = {c[0]: [] for c in cmds}
            for _ in range(max(n, 3)):  # alternating: the machine's pace hits all alike
                for name, cmd, e, cwd in cmds:
                    times[name].append(run(cmd, e, cwd))
            pw, _, pc = med(times["plain sqlite3 fetch"])
            rel = gz.relative_to(ROOT / "sample_traces")
            for name in times:
                w, _, c = med(times[name])
                print(f"{str(rel)[:40]:<40} {db.stat().st_size / 1e6:5.1f} {name[:28]:<28} "
                      f"{w:6.3f} {c:6.3f} {w / pw:11.2f} {c / pc:10.2f}", flush=True)
            for name, e, cwd in trees:  # the reader alone (no interpreter start, no imports)
                out = subprocess.run([sys.executable, "-c", READER_ONLY, str(db),
                                      str(max(n, 3))], capture_output=True, text=True, env=e,
                                     cwd=cwd, check=True).stdout.split()
                ours, plain = float(out[0]), float(out[1])
                print(f"{'':<40} {'':>5} {('reader only: ' + name)[:28]:<28} {'':>6} "
                      f"{ours:6.3f} {'':>11} {ours / plain:10.2f}  (plain fetch {plain:.3f} "
                      "cpu s, same process)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 3, 10])
    ap.add_argument("-n", type=int, default=3, help="runs of each contender per size")
    ap.add_argument("--no-hta", action="store_true", help="skip HTA's load")
    ap.add_argument("--only", choices=["sweep", "startup", "nsys"], help="run one part")
    ap.add_argument("--baseline", type=Path, help="another checkout of tracekit to time beside "
                    "this one (the size sweep and the Nsight part)")
    args = ap.parse_args()
    if args.only in (None, "startup"):
        startup(args.n)
    if args.only in (None, "sweep"):
        sweep(args.sizes, args.n, not args.no_hta, args.baseline)
    if args.only in (None, "nsys"):
        nsys(args.n, args.baseline)


if __name__ == "__main__":
    main()
