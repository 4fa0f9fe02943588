"""Run the captures a TOML recipe lists, one ``tracekit capture`` process each, past failures.

A recipe is a ``[defaults]`` table and a list of ``[[capture]]`` tables; every key but the few
below is a ``tracekit capture`` option (``profile_steps = 10`` → ``--profile-steps 10``), so the
recipe cannot drift from the CLI. Each capture runs in its own process (a fresh CUDA context and
allocator, no compile cache shared between modes), under a time limit, with its output appended
to the log. At the end: a table of what each capture measured and Markdown entries for
``sample_traces/MANIFEST.md``.

Keys that are not capture options: ``name`` (output file stem; default
``MODEL_ctxN_MODE[_nsys]``), ``timeout_s`` (per capture), ``gzip_sqlite`` (gzip -9 the Nsight
SQLite export to ``.sqlite.gz``).

    python3 capture/sweep.py capture/sample_traces.toml --out /tmp/out --budget-s 480
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tracekit.capture.write import read_capture_meta  # noqa: E402  (torch- and polars-free)

NOT_OPTIONS = {"name", "timeout_s", "gzip_sqlite"}
DEFAULT_TIMEOUT_S = 180
#: a capture is not started with less time than this left in the budget
MIN_START_S = 45


def load_recipe(path: Path) -> list[dict]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    doc = tomllib.loads(path.read_text())
    defaults = doc.get("defaults", {})
    return [{**defaults, **entry} for entry in doc.get("capture", [])]


def stem(entry: dict) -> str:
    if "name" in entry:
        return entry["name"]
    nsys = "_nsys" if entry.get("profiler") == "nsys" else ""
    return f"{entry['model']}_ctx{entry.get('ctx', 2048)}_{entry.get('mode', 'eager')}{nsys}"


def argv(entry: dict, out: Path) -> list[str]:
    args = [sys.executable, "-m", "tracekit", "capture"]
    for key, value in entry.items():
        if key in NOT_OPTIONS:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is not False:
            args += [flag, str(value)]
    return args + ["-o", str(out)]


def run_one(args: list[str], *, log: Path, timeout_s: float) -> tuple[int | None, float]:
    """Exit code (None on timeout) and seconds. A timed-out capture gets SIGTERM, which
    tracekit turns into a clean unwind (no partial trace), then SIGKILL."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p),
    }
    t0 = time.monotonic()
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(args)}\n")
        f.flush()
        proc = subprocess.Popen(
            args, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, env=env, start_new_session=True
        )
        try:
            rc: int | None = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc = None
    return rc, time.monotonic() - t0


def gzip_file(path: Path) -> Path:
    dst = path.with_name(path.name + ".gz")
    with open(path, "rb") as src, gzip.open(dst, "wb", compresslevel=9) as out:
        shutil.copyfileobj(src, out, 1 << 20)
    path.unlink()
    return dst


def kernels_per_step(path: Path, steps: int) -> float | None:
    """GPU kernels in the Kineto trace per profiled step (stdlib only: a sanity check)."""
    try:
        with gzip.open(path, "rt") as f:
            events = json.load(f)["traceEvents"]
    except (OSError, ValueError, KeyError):
        return None
    n = sum(1 for e in events if str(e.get("cat", "")).lower() == "kernel")
    return round(n / steps, 1) if steps else None


def sqlite_kernels(path: Path) -> int | None:
    try:
        with sqlite3.connect(path) as con:
            return con.execute("SELECT COUNT(*) FROM CUPTI_ACTIVITY_KIND_KERNEL").fetchone()[0]
    except sqlite3.Error:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("recipe", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--log", type=Path, default=None)
    ap.add_argument(
        "--budget-s", type=float, default=None, help="stop starting captures after this"
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.log or args.out / "sweep.log"
    start = time.monotonic()
    rows = []
    for entry in load_recipe(args.recipe):
        name = stem(entry)
        out = args.out / f"{name}.json.gz"
        timeout = float(entry.get("timeout_s", DEFAULT_TIMEOUT_S))
        if args.budget_s is not None:
            left = args.budget_s - (time.monotonic() - start)
            if left < MIN_START_S:
                print(f"{name}: skipped ({left:.0f} s of budget left)", flush=True)
                rows.append({"name": name, "status": "skipped (budget)"})
                continue
            timeout = min(timeout, left)
        cmd = argv(entry, out)
        print(f"{name}: running (limit {timeout:.0f} s)", flush=True)
        rc, secs = run_one(cmd, log=log, timeout_s=timeout)
        status = "ok" if rc == 0 else "timeout" if rc is None else f"failed (exit {rc})"
        row = {"name": name, "status": status, "seconds": round(secs, 1)}
        row.update(describe(out, entry))
        rows.append(row)
        print(f"{name}: {status} in {secs:.0f} s", flush=True)
    (args.out / "sweep.json").write_text(json.dumps(rows, indent=2))
    print_table(rows)
    (args.out / "MANIFEST.capture.md").write_text(manifest(rows))
    return 0


def describe(out: Path, entry: dict) -> dict:
    """What one capture wrote: the metadata, sizes and kernel counts (for the table)."""
    row: dict = {}
    if out.is_file():
        meta = read_capture_meta(out) or {}
        row.update(
            file=out.name,
            bytes=out.stat().st_size,
            meta=meta,
            kernels_per_step=kernels_per_step(out, meta.get("profiled", {}).get("steps", 0)),
        )
    db = out.with_name(out.name.removesuffix(".json.gz") + ".sqlite")
    if db.is_file():
        row["sqlite_kernels"] = sqlite_kernels(db)
        if entry.get("gzip_sqlite"):
            db = gzip_file(db)
        row.update(sqlite=db.name, sqlite_bytes=db.stat().st_size)
    return row


def print_table(rows: list[dict]) -> None:
    head = (
        "capture",
        "model",
        "ctx",
        "mode",
        "unprof ms",
        "prof ms",
        "overhead",
        "copy GB/s",
        "kern/step",
        "MB",
        "status",
    )
    lines = [head]
    for r in rows:
        m = r.get("meta") or {}
        t = m.get("timing") or {}
        lines.append(
            (
                r["name"],
                str(m.get("model_name", "")),
                str(m.get("ctx", "")),
                str(m.get("mode", "")),
                _f(t.get("median_ms")),
                _f((m.get("profiled") or {}).get("wall_ms_per_step")),
                _f(m.get("profiler_overhead_ratio"), 3),
                _f(m.get("copy_bandwidth_gbps"), 0),
                _f(r.get("kernels_per_step"), 1),
                _f((r.get("bytes") or 0) / 1e6 + (r.get("sqlite_bytes") or 0) / 1e6, 1)
                if r.get("bytes")
                else "",
                r["status"],
            )
        )
    widths = [max(len(x[i]) for x in lines) for i in range(len(head))]
    for line in lines:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)), flush=True)


def _f(v, digits: int = 2) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def manifest(rows: list[dict]) -> str:
    """Markdown entries for sample_traces/MANIFEST.md, one per capture that wrote a trace."""
    out = []
    for r in rows:
        m = r.get("meta")
        if not m:
            continue
        gpu = (m.get("gpu") or {}).get("name", "cpu")
        v = m.get("versions") or {}
        cmd = list(m.get("command") or [])
        if "-o" in cmd:  # the path on the GPU box means nothing here
            cmd[cmd.index("-o") + 1] = r["file"]
        t = m["timing"]
        out.append(
            "\n".join(
                [
                    f"### `{r['file']}`" + (f" + `{r['sqlite']}`" if r.get("sqlite") else ""),
                    "",
                    f"- GPU: {gpu}; torch {v.get('torch')}, transformers {v.get('transformers')}, "
                    f"CUDA {v.get('cuda')}, Triton {v.get('triton')}, Python {v.get('python')}",
                    f"- command: `{' '.join(cmd)}`",
                    f"- unprofiled: {t['median_ms']:.2f} ms/step (median of {t['steps']} after "
                    f"{t['warmup']} warm-up; p10 {t['p10_ms']:.2f}, p90 {t['p90_ms']:.2f})",
                    f"- profiled: {m['profiled']['wall_ms_per_step']:.2f} ms/step over "
                    f"{m['profiled']['steps']} steps (overhead {m['profiler_overhead_ratio']}×), "
                    f"context at the first profiled step {m['ctx_first_step']}",
                    f"- copy bandwidth: {m.get('copy_bandwidth_gbps')} GB/s; kernels per profiled step "
                    f"(Kineto): {r.get('kernels_per_step')}"
                    + (
                        f"; kernels in the Nsight export: {r['sqlite_kernels']}"
                        if r.get("sqlite_kernels") is not None
                        else ""
                    ),
                    f"- created {m.get('created')}, {r['bytes'] / 1e6:.1f} MB",
                    "",
                ]
            )
        )
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
