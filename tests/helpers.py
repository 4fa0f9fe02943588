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


def ns(v) -> int:
    """A trace's µs timestamp or duration (a decimal string, ``Decimal`` or number with up to three
    decimals) as integer ns, without going through a binary float."""
    whole, _, frac = str(v).partition(".")
    sign = -1 if whole.startswith("-") else 1
    return sign * (abs(int(whole)) * 1000 + int((frac + "000")[:3]))


def oracle_steps(events: list[dict], is_step) -> list[dict]:
    """Each step of a Kineto trace from its events alone (``json.load`` with ``parse_float=str``
    or ``Decimal``), written from the definitions in docs/architecture.md: a step (a host range
    ``is_step(event)`` picks) owns the GPU ops whose launch (same ``correlation``) started inside
    it; its window runs from its first op to the next step's first op; GPU busy is the union of
    every GPU op clipped to the window and idle the rest of it. A step with no later successor has
    no latency (None). Times in ns."""
    x = [e for e in events if isinstance(e, dict) and e.get("ph") == "X"]
    launch = {e["args"]["correlation"]: ns(e["ts"]) for e in x
              if e.get("cat") in ("cuda_runtime", "cuda_driver")
              and "correlation" in (e.get("args") or {})}
    ops = [(ns(e["ts"]), ns(e["ts"]) + ns(e.get("dur", 0)), launch.get(e["args"].get("correlation")))
           for e in x if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    ranges = sorted((ns(e["ts"]), ns(e["ts"]) + ns(e["dur"])) for e in x if is_step(e))
    own = [[(s, t) for s, t, at in ops if at is not None and a <= at <= b] for a, b in ranges]
    out = []
    for i, mine in enumerate(own):
        t0 = min(s for s, _ in mine) if mine else None
        nxt = own[i + 1] if i + 1 < len(own) else []
        w = min(s for s, _ in nxt) if nxt and mine else None
        timed = w is not None and w > t0
        hi = w if timed else (max(t for _, t in mine) if mine else None)
        busy = sum(b - a for a, b in merge_intervals(
            [(max(s, t0), min(t, hi)) for s, t, _ in ops if mine and min(t, hi) > max(s, t0)]))
        out.append({"start": t0, "latency": hi - t0 if timed else None,
                    "busy": busy if mine else None, "ops": len(mine)})
    return out
