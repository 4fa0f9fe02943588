"""What the tests share: run a command in-process, read its one ``Error:`` line, and a plain
interval union for the oracles.

    from helpers import error_line, run
    r = run("compare", a, b)
    assert r.exit_code == 1 and "no decode steps" in error_line(r)
"""

from __future__ import annotations

import gzip
import json
import statistics
from pathlib import Path

from click.testing import CliRunner, Result

from tracekit.cli import app


def run(*args: object) -> Result:
    """``tracekit ARGS…`` in this process (paths and numbers are passed as strings)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def error_line(result: Result) -> str:
    """The single line a failed command prints, ``Error: …``, with no traceback and nothing else."""
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def write_capture(path: Path, sessions: list[list[float]], *, model="qwen2.5-7b", ctx=2048,
                  gpu="NVIDIA H100 80GB HBM3", mode="eager", legacy=False) -> Path:
    """A timing-only capture (``--profile-session none``): metadata, no events."""
    def timing(ms):
        return {"steps": len(ms), "warmup": 5, "unprofiled_ms": ms,
                "median_ms": statistics.median(ms)}
    meta = {"schema": "tracekit.capture/1", "model_name": model, "ctx": ctx, "mode": mode,
            "dtype": "bf16", "gpu": {"name": gpu}, "timing": timing(sessions[0]),
            "attention": {"requested": "sdpa", "kernels": []}}
    if not legacy:
        meta["sessions"] = {"n": len(sessions), "profiled_session": None, "runs": [
            {"session": i, "timing": timing(s), "timing_after": None, "profiled": False}
            for i, s in enumerate(sessions)]}
    with gzip.open(path, "wt") as f:
        json.dump({"tracekit": meta, "schemaVersion": 1, "traceEvents": []}, f)
    return path


def merge_intervals(intervals):
    """The union of [start, end) intervals as sorted disjoint pairs: a plain loop, for oracles."""
    out: list[list] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]
