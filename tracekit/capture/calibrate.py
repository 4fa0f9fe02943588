"""The profiler's cost per recorded host event, measured on this host, in the capture's process.

An eager decode step records ~5000 host events (CPU ops and CUDA runtime calls); each costs the
host a few µs under torch.profiler, and how many depends on the host's CPU: 1.6–4 µs on the H100
hosts measured, 5.6 µs on an H200. ``tracekit explain`` needs that cost to turn a profiled step that
stalls (a cuDNN plan build, say) into the unprofiled step without the stall, so the capture
measures it here instead of borrowing another machine's number:

    c = (profiled ms per step − unprofiled ms per step) ÷ host events recorded per step

of one **stall-free** workload: the capture's own decode step, with SDPA forced to the flash
kernel where the capture lets PyTorch choose (the choice that stalls on Hopper is cuDNN's, whose
per-call plan build is exactly what must not be in the calibration). Same model, same ops in the
same order, same profiler settings — only the attention kernel differs.

Order in the capture (see ``run.py``): the unprofiled calibration steps run before the profiler
has ever started in the process (a process stays slower after torch.profiler stops, so steps
timed after a profiled window are not a clean baseline), the profiled ones after the capture's own
profiled window. The events are counted the way ``tracekit explain`` counts them (CPU ops +
runtime calls on the step's thread), by reading the calibration's own trace back.

The interval ``[low, high]`` is the cost the per-step spread allows: the profiled quartiles
against the unprofiled quartiles (high: slow profiled steps over fast unprofiled ones). That is
one process's spread; on a noisy host the cost differs more between processes than within one
(the first GPU run, one H100 host: 4.5 and 8.2 µs for the same model and context in two
processes, each interval under ±20%). So with ``--sessions N`` every session calibrates — the
unprofiled sessions after their timed steps, no profiler having run before — and
``sessions.py`` widens the profiled session's interval to span every session's (:func:`across`),
keeping each session's unprofiled median of the calibration workload: where that workload is the
step without its stall (flash forced in place of cuDNN's plan build), those medians are the
stall-free step measured in N processes — the process-to-process spread ``tracekit explain``
widens the "without the stalls" interval by. (That first run counted its events at half: the
costs above are twice the true ones; see :data:`EVENTS_BASIS`.)

    tracekit capture --model qwen2.5-7b --mode eager     # metadata "profiler_cost"
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tracekit.stats import median

#: decode steps timed without and with the profiler (after 2 warm-up steps with the workload)
STEPS = 10
CALIBRATION_NAME = "tracekit.calibration#{i}"
#: ``profiler_cost.events_basis``: how the events per step were counted. Its absence marks a
#: capture whose count also took the ranges' GPU-side copies (zero events each): half the count,
#: twice the cost, wherever the profiler recorded CUDA activity
EVENTS_BASIS = "the calibration steps' CPU ranges"


def wanted(opts: Any) -> bool:
    """Whether this capture process calibrates: eager, and profiled or one of several sessions."""
    return opts.mode == "eager" and (opts.profile or opts.session_index is not None)


def across(own: dict | None, sessions: list[dict | None]) -> dict | None:
    """The profiled session's calibration (``own``, one of ``sessions``) with its interval
    widened to span every session's interval (``sessions``: each session's ``profiler_cost``, in
    order); the sessions' own points and intervals are kept under ``"sessions"``."""
    if not own or own.get("ns_per_event") is None:
        return own
    ok = [s for s in sessions if s and s.get("ns_per_event") is not None]
    if len(ok) < 2:
        return own
    return {**own, "interval_ns": [min(s["interval_ns"][0] for s in ok),
                                   max(s["interval_ns"][1] for s in ok)],
            "interval_basis": f"every session's interval ({len(ok)} processes)",
            "sessions": [None if not s or s.get("ns_per_event") is None else
                         {"ns_per_event": s["ns_per_event"], "interval_ns": s["interval_ns"],
                          "unprofiled_median_ms": median(s.get("unprofiled_ms") or [])}
                         for s in sessions]}


def workload(attention: str, device: str) -> tuple[str, Callable[[], Any]]:
    """(what the calibration runs, a factory of the context manager that forces it: each use
    needs a fresh one)."""
    from tracekit.capture.modes import attention_backend

    if device == "cuda" and attention in ("sdpa", "sdpa-cudnn"):
        # PyTorch's own choice may be cuDNN attention (a plan build per call on Hopper)
        return "decode steps, SDPA flash attention", lambda: attention_backend("sdpa-flash")
    return "decode steps, as captured", lambda: attention_backend(attention)


def time_unprofiled(step: Callable[[], None], *, device: str, backend: Callable[[], Any],
                    n: int = STEPS) -> list[float]:
    """Phase 1, before any profiler has run: ms per calibration step without the profiler."""
    from tracekit.capture.timing import time_steps, warm_up

    with backend():
        try:
            warm_up(step, 2, device=device)
            return time_steps(step, n, device=device)
        except RuntimeError:  # the forced kernel does not run here: no calibration
            return []


def profiled(step: Callable[[], None], unprofiled_ms: list[float], *, device: str,
             kinds: list[str], backend: Callable[[], Any], what: str,
             n: int = STEPS) -> dict | None:
    """Phase 2, after the capture's profiled window: the same steps under the profiler, then
    the cost per event (the module docstring). ``None`` without unprofiled samples."""
    if len(unprofiled_ms) < 3:
        return None
    from torch.profiler import profile, record_function

    from tracekit.capture.profile import activities
    from tracekit.capture.timing import sync

    with backend():
        sync(device)
        with profile(activities=activities(kinds), record_shapes=False, with_stack=False) as prof:
            marks = [time.perf_counter_ns()]
            for i in range(n):
                with record_function(CALIBRATION_NAME.format(i=i)):
                    step()
                if i == n - 1:
                    sync(device)  # the last step ends when its GPU work does
                marks.append(time.perf_counter_ns())
            walls = [(b - a) / 1e6 for a, b in zip(marks, marks[1:])]
    with tempfile.TemporaryDirectory(prefix="tracekit-calibration-") as tmp:
        path = Path(tmp) / "calibration.json"
        prof.export_chrome_trace(str(path))
        events = events_per_step(path)
    return cost(unprofiled_ms, walls, events, what=what)


def measure(step: Callable[[], None], unprofiled_ms: list[float], **kw: Any) -> dict | None:
    """:func:`profiled`, but a calibration that fails never fails the capture: the metadata
    then says why (``{"error": …}``) and ``tracekit explain`` estimates the cost from the trace."""
    try:
        return profiled(step, unprofiled_ms, **kw)
    except Exception as exc:  # noqa: BLE001 - any failure here only loses the calibration
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return {"error": f"{type(exc).__name__}: {why}", "ns_per_event": None}


def events_per_step(path: Path, *, prefix: str = "tracekit.calibration#") -> list[int]:
    """Host events (CPU ops + runtime calls) recorded on each calibration step's thread, counted
    as ``tracekit explain`` counts a step's events: one count per CPU range named ``prefix…``.

    With CUDA activity Kineto also records each ``record_function`` range on the GPU timeline
    (``gpu_user_annotation``, a stream's "thread"); those hold no host event and are skipped —
    counted, they put a zero beside every step and halved the median (captures before
    :data:`EVENTS_BASIS` was written; :func:`tracekit.unprofiled` corrects them)."""
    from tracekit.trace import load

    tr = load(path)
    ann = tr.table("annotations")
    names = ann["name"].tolist()
    on_gpu = ann["on_gpu"].tolist()
    out = []
    for k, name in enumerate(names):
        if not str(name).startswith(prefix) or on_gpu[k]:
            continue
        lo, hi, tid = int(ann["start_ns"][k]), int(ann["end_ns"][k]), int(ann["tid"][k])
        n = 0
        for t in ("cpu_ops", "launches"):
            rows = tr.table(t)
            s, th = rows["start_ns"], rows["tid"]
            n += int(np.count_nonzero((s >= lo) & (s < hi) & (th == tid)))
        out.append(n)
    return out


def cost(unprofiled_ms: list[float], profiled_ms: list[float], events: list[int], *,
         what: str) -> dict | None:
    """The per-event cost and its interval from the two samples of step times (ms) and the
    events recorded per profiled step."""
    if not events or not profiled_ms or len(unprofiled_ms) < 3:
        return None
    e = float(statistics.median(events))
    if e <= 0:
        return None
    u_q = np.percentile(unprofiled_ms, [25, 50, 75])
    p_q = np.percentile(profiled_ms, [25, 50, 75])
    ns = [(float(p) - float(u)) / e * 1e6 for p, u in
          ((p_q[1], u_q[1]), (p_q[0], u_q[2]), (p_q[2], u_q[0]))]
    return {
        "ns_per_event": round(max(ns[0], 0.0), 1),
        "interval_ns": [round(max(ns[1], 0.0), 1), round(max(ns[2], 0.0), 1)],
        "events_per_step": e,
        "events_basis": EVENTS_BASIS,
        "unprofiled_ms": [round(x, 6) for x in unprofiled_ms],
        "profiled_ms": [round(x, 6) for x in profiled_ms],
        "workload": what,
        "method": "same process: (profiled − unprofiled ms per step) ÷ events per step",
    }
