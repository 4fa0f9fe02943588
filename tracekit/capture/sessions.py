"""``--sessions N``: the same capture in N fresh processes, one output holding every session.

Why fresh processes: what a decode step costs on the host depends on the process — the CUDA
context, the caching allocator's state, which cuBLAS/cuDNN plans were built, where the OS put the
threads. Steps of one process are not independent samples of that; sessions are. An A/B that
claims "B is 1.26× faster" needs the spread *between* sessions (the study: N = 10 fresh sessions,
95% bootstrap CI), which ``tracekit compare`` computes from what this module records.

Each session is ``python -m tracekit.capture._child`` with the same options: it builds the model,
prefills, warms up and times ``steps`` unprofiled steps (reading the GPU clocks before and after).
Session ``--profile-session k`` (default 0) also runs the profiled window, then times ``steps``
more steps after it; ``none`` profiles no session. The output is one ``.json.gz``: the profiled
session's trace (or an empty ``traceEvents`` list) whose ``tracekit`` metadata is that session's,
plus ``sessions`` = {``n``, ``profiled_session``, ``runs``: [{``session``, ``timing``,
``timing_after``, ``gpu_clocks_before``, ``gpu_clocks_after``, ``host_cpus``, ``profiled``}]} and
``timing_sessions``: over the sessions' medians, their ``mean_ms`` — the latency of the setup as
``tracekit compare`` and ``tracekit sweep`` report it (:mod:`tracekit.bootstrap` says why the
mean) and the number the capture's summary prints first — and their ``median_ms``, ``p10_ms`` and
``p90_ms`` (the median is what ``tracekit explain`` decomposes as the unprofiled step).

    tracekit capture --model qwen2.5-7b --mode eager --sessions 10 -o eager.json.gz
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from tracekit.capture import calibrate
from tracekit.capture.nsys import parse_result
from tracekit.capture.options import CaptureOptions
from tracekit.capture.progress import Progress
from tracekit.capture.result import CaptureResult
from tracekit.capture.timing import percentile
from tracekit.capture.write import replace_meta, write_meta_only
from tracekit.child import child_env
from tracekit.errors import CaptureError

#: a session that prints nothing for this long is stuck (a 7B model builds and compiles in ~3 min)
SESSION_TIMEOUT_S = 1200


def run_sessions(opts: CaptureOptions, *, progress: Progress) -> CaptureResult:
    """Run ``opts.sessions`` child captures and write the one output (see the module docstring)."""
    output = opts.output_path
    output.parent.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    metas: list[dict] = []
    with tempfile.TemporaryDirectory(prefix=".tracekit-sessions-", dir=output.parent) as tmp:
        profiled_path = Path(tmp) / "profiled.json.gz"
        for i in range(opts.sessions):
            profiled = opts.profile_session == i
            child = replace(
                opts,
                sessions=1,
                session_index=i,
                profile=profiled,
                profile_session=None,
                output=profiled_path,
                command=list(opts.command or sys.argv),
            )
            label = f"session {i + 1}/{opts.sessions}" + (" (also profiled)" if profiled else "")
            with progress.phase(label, live=False):
                meta = _run_child(child)
            t = meta["timing"]
            progress.note(
                f"{label}: {t['median_ms']:.3f} ms/step unprofiled "
                f"(median of {t['steps']}; p10 {t['p10_ms']:.3f}, p90 {t['p90_ms']:.3f})"
            )
            metas.append(meta)
            runs.append({
                "session": i,
                "timing": meta["timing"],
                "timing_after": meta.get("timing_after"),
                "gpu_clocks_before": meta.get("gpu_clocks_before"),
                "gpu_clocks_after": meta.get("gpu_clocks_after"),
                "host_cpus": meta.get("host_cpus"),
                "profiled": profiled,
            })
        k = opts.profile_session
        meta = dict(metas[k if k is not None else 0])
        if k is not None:  # the profiled process's own cost, its interval spanning every session's
            meta["profiler_cost"] = calibrate.across(meta.get("profiler_cost"),
                                                     [m.get("profiler_cost") for m in metas])
        meta["sessions"] = {"n": opts.sessions, "profiled_session": k, "runs": runs}
        meta["timing_sessions"] = session_summary(runs)
        meta["command"] = list(opts.command or sys.argv)
        if k is None:
            meta["profiled"] = None
            meta["profiler_overhead_ratio"] = None
            meta["attention"] = {**meta.get("attention", {}), "ops": None, "kernels": None}
        with progress.phase(f"writing {output}"):
            if k is None:
                size = write_meta_only(meta, output)
            else:
                size = replace_meta(profiled_path, meta, output)
    return CaptureResult(path=output, meta=meta, bytes=size)


def session_summary(runs: list[dict]) -> dict:
    """Mean, median, p10 and p90 over sessions of each session's median unprofiled step."""
    medians = [r["timing"]["median_ms"] for r in runs]
    return {
        "sessions": len(medians),
        "session_medians_ms": medians,
        "mean_ms": round(statistics.fmean(medians), 6),
        "median_ms": round(percentile(medians, 50), 6),
        "p10_ms": round(percentile(medians, 10), 6),
        "p90_ms": round(percentile(medians, 90), 6),
    }


def _run_child(child: CaptureOptions) -> dict:
    argv = [sys.executable, "-m", "tracekit.capture._child", json.dumps(child.to_json_dict()),
            "--quiet"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=child_env(),
                              timeout=SESSION_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise CaptureError(
            f"session {child.session_index} printed no result in {SESSION_TIMEOUT_S} s; stopped"
        ) from None
    result = parse_result(proc.stdout)
    if result is not None:
        return result["meta"]
    err = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    last = next((ln for ln in reversed(err) if ln.startswith("Error:")), err[-1] if err else "")
    raise CaptureError(
        f"session {child.session_index} failed (exit {proc.returncode}): "
        f"{last.removeprefix('Error: ') or 'no output'}"
    )
