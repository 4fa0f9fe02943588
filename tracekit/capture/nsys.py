"""``--profiler nsys``: the same capture, run again under Nsight Systems.

tracekit starts ``nsys profile --trace=cuda,nvtx --cuda-graph-trace=node`` around a child Python
process that runs the capture (same options), then ``nsys export --type sqlite``. Next to the
output ``X.json.gz`` it writes ``X.nsys-rep`` and ``X.sqlite``; the SQLite file also gets a table
``TRACEKIT_CAPTURE`` holding the capture metadata, so ``tracekit explain X.sqlite`` needs no flags
either. Steps show in the report as the NVTX ranges ``tracekit.step#i``.

CUPTI serves one tracing client at a time, and Nsight Systems is that client here, so by default
the child's torch.profiler records CPU activity only (its ``X.json.gz`` still carries the
annotations and host ops of the same run). ``--nsys-kineto cuda`` asks for CUDA activity as well,
to compare both tools on one run where the CUDA/CUPTI versions allow it.

Nsight Systems is found by ``--nsys PATH``, else on ``PATH``, else in the usual install folders.

    tracekit capture --model qwen2.5-7b --profiler nsys -o qwen_nsys.json.gz
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from tracekit.capture.options import CaptureOptions
from tracekit.capture.progress import Progress
from tracekit.capture.result import CaptureResult
from tracekit.child import child_env
from tracekit.errors import CaptureError
from tracekit.trace.capture_meta import META_TABLE

#: where Nsight Systems is usually installed when it is not on PATH (newest first after sorting)
NSYS_GLOBS = (
    "/opt/nvidia/nsight-systems/*/bin/nsys",
    "/usr/local/cuda/bin/nsys",
    "/usr/local/cuda-*/bin/nsys",
    "/opt/nvidia/nsight-compute/*/host/target-linux-x64/nsys",
)
PROFILE_ARGS = (
    "--trace=cuda,nvtx",
    "--cuda-graph-trace=node",
    "--sample=none",
    "--cpuctxsw=none",
    "--force-overwrite=true",
)
#: the child prints its result on one stdout line starting with this
RESULT_MARK = "TRACEKIT_RESULT "


def find_nsys(explicit: str | None) -> Path:
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_dir():
            path = path / "nsys"
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise CaptureError(f"--nsys {explicit!r} is not an executable nsys")
        return path
    found = shutil.which("nsys")
    if found:
        return Path(found)
    for pattern in NSYS_GLOBS:
        for hit in sorted(glob.glob(pattern), reverse=True):
            if os.access(hit, os.X_OK):
                return Path(hit)
    raise CaptureError(
        "Nsight Systems (nsys) not found on PATH or in /opt/nvidia; install it or pass --nsys PATH"
    )


def report_paths(output: Path) -> tuple[Path, Path, Path]:
    """``X.json.gz`` -> (``X``, ``X.nsys-rep``, ``X.sqlite``)."""
    base = output.with_name(output.name.removesuffix(".gz").removesuffix(".json"))
    return base, base.with_name(base.name + ".nsys-rep"), base.with_name(base.name + ".sqlite")


def capture_under_nsys(opts: CaptureOptions, *, progress: Progress) -> CaptureResult:
    nsys = find_nsys(opts.nsys)
    output = opts.output_path
    output.parent.mkdir(parents=True, exist_ok=True)
    base, rep, db = report_paths(output)
    for stale in (rep, db):
        stale.unlink(missing_ok=True)  # never mistake an old report for this run's
    child = replace(opts, under_nsys=True, nsys=None, command=list(opts.command or sys.argv))
    # name the report in full: with a bare "-o qwen2.5-7b_…" nsys could take ".5-7b_…" for a suffix
    argv = [
        str(nsys),
        "profile",
        *PROFILE_ARGS,
        "-o",
        str(rep),
        sys.executable,
        "-m",
        "tracekit.capture._child",
        json.dumps(child.to_json_dict()),
    ]
    if type(progress) is Progress:  # --quiet: the child is quiet too
        argv.append("--quiet")
    with progress.phase(f"running the capture under {nsys.name} profile", live=False):
        proc = _run(argv, env=child_env())
    for line in proc.stdout.strip().splitlines():
        if not line.startswith(RESULT_MARK):
            progress.note(f"nsys: {line}")
    result = parse_result(proc.stdout)
    if not rep.is_file():
        for stream in base.parent.glob(base.name + "*.qdstrm"):
            _remove(stream)  # an unfinished event stream: large and of no use
        raise CaptureError(
            f"nsys profile did not produce {rep.name} (exit {proc.returncode}); "
            f"its last output: {_tail(proc.stdout)}"
        )
    with progress.phase(f"exporting {db.name}"):
        exp = _run(
            [
                str(nsys),
                "export",
                "--type",
                "sqlite",
                "--force-overwrite=true",
                "-o",
                str(db),
                str(rep),
            ],
            env=None,
        )
    if not db.is_file():
        raise CaptureError(
            f"nsys export did not produce {db.name} (exit {exp.returncode}): {_tail(exp.stdout)}"
        )
    if proc.returncode != 0 or result is None:
        raise CaptureError(
            f"the capture under nsys failed (exit {proc.returncode}); the Nsight report was "
            f"kept: {rep}, {db}. Its last output: {_tail(proc.stdout)}"
        )
    meta = {
        **result["meta"],
        "nsys": {"report": rep.name, "sqlite": db.name, "args": list(PROFILE_ARGS)},
    }
    embed_meta(db, meta)
    return CaptureResult(
        path=output,
        meta=meta,
        bytes=output.stat().st_size,
        files={"nsys report": rep, "nsys sqlite": db},
    )


def _run(argv: list[str], *, env: dict | None) -> subprocess.CompletedProcess:
    # stdout is read for the result line; stderr (the child's progress) goes to the terminal
    try:
        return subprocess.run(argv, stdout=subprocess.PIPE, text=True, env=env, check=False)
    except OSError as exc:
        raise CaptureError(f"cannot run {argv[0]}: {exc}") from None


def parse_result(stdout: str) -> dict | None:
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    return None


def _tail(text: str, lines: int = 8) -> str:
    kept = [ln for ln in text.strip().splitlines() if not ln.startswith(RESULT_MARK)]
    return " | ".join(kept[-lines:]) or "(none)"


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def embed_meta(db: Path, meta: dict) -> None:
    """Store the capture metadata in the SQLite export (read back by ``tracekit.trace.nsys``)."""
    with sqlite3.connect(db) as con:
        con.execute(f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value TEXT)")
        con.execute(
            f"INSERT OR REPLACE INTO {META_TABLE} VALUES ('meta', ?)",
            (json.dumps(meta, allow_nan=False),),
        )
    con.close()
