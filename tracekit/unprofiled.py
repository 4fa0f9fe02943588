"""The real step: explain the latency a user runs, not the one the profiler shows.

The PyTorch profiler records every CPU op and every CUDA API call of an eager decode step; each
record costs the host a few µs. An eager step issues ~1300 kernels through ~5000 recorded events,
so the *profiled* step is 1.5–2.3× the *unprofiled* one, while the GPU work barely changes (graph
and compile steps, which record almost nothing on the host, inflate ≈1.06–1.09×). Shares and
speed-ups computed from the profiled latency are therefore wrong for the real step.

When the unprofiled latency ``U`` is known (``tracekit capture`` metadata, or ``--unprofiled-ms``):

    floor            from the model and GPU (as for the profiled step)
    kernel_excess    gpu_busy − floor, from the trace (profiling barely changes GPU work)
    launch_overhead  U − gpu_busy: the rest

and the launch overhead splits into launch issue, stalls and the other idle classes by a model,
an **estimate**, named ``per-event profiler cost``:

    H_p  = P − S_p − other_p       the host's issue time in the profiled step (P: profiled latency,
                                   S_p: idle held by stalls, other_p: sync/launch-latency idle)
    H_u  = H_p − c × events        each recorded host event (CPU op or launch call) cost c
    S_u  = U − H_u − other_p       the stall is what remains of the unprofiled step

``c`` is the profiler's cost per recorded host event, calibrated on a capture *without* stalls
where both P and U are known (there ``c = (P − U) ÷ events``; ``PROFILER_COST_NS`` names each
calibration). A plain proportional split (everything × U/P) would be wrong: the profiler inflates
the per-op issue cost far more than one long op — on an H100 the issue time of an eager step went
from ≈13 ms unprofiled to ≈38 ms profiled, a cuDNN plan-build stall only from ≈36 to ≈49 ms. The
stall is the remainder because the profiler inflates it in ways its few recorded events do not
explain (cuDNN's own driver calls), which is what limits the estimate.

A trace with no stall needs no ``c``: its launch issue is simply the rest of ``U``, and
``(P − U) ÷ events`` is reported as that trace's own calibration.
"""

from __future__ import annotations

import math

from tracekit.errors import BadInput

#: Profiler cost per recorded host event (ns), by the GPU name of the machine it was measured on
#: (the cost is the host CPU's; each lent GPU model came with one host type). Filled only from
#: captures where both the profiled and the unprofiled step are known and that have no stall.
PROFILER_COST_NS: dict[str, tuple[float, str]] = {}

#: a stall-free trace reports its own per-event cost only with this many host events per step
#: (graph and compile steps record a handful; their P − U is GPU-side tracing cost)
MIN_EVENTS = 500

#: the unprofiled samples are "bimodal" when the best two-cluster split has both clusters with at
#: least this share of the samples …
BIMODAL_MIN_SHARE = 0.2
#: … and cluster means this far apart relative to the median …
BIMODAL_MIN_SEPARATION = 0.2
#: … and this many pooled within-cluster standard deviations apart
BIMODAL_MIN_SIGMAS = 3.0
#: the unprofiled medians before and after the profiled window disagree when they differ by more
DRIFT_TOLERANCE = 0.10


def median(xs: list[float]) -> float | None:
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def check_flag(ms: float | None, gpu_busy_ms: float | None) -> None:
    """``--unprofiled-ms`` must be a positive, finite number no smaller than the GPU busy time."""
    if ms is None:
        return
    if not isinstance(ms, (int, float)) or math.isnan(ms) or math.isinf(ms) or ms <= 0:
        raise BadInput(f"--unprofiled-ms must be a positive number of milliseconds per step "
                       f"(the median unprofiled step time), got {ms}")
    if gpu_busy_ms is not None and ms < gpu_busy_ms:
        raise BadInput(f"--unprofiled-ms {ms:g} is smaller than the step's GPU busy time "
                       f"({gpu_busy_ms:.3f} ms): no step can be shorter than its GPU work; pass the "
                       "measured unprofiled ms per decode step")


def _samples(timing: dict | None) -> list[float]:
    xs = (timing or {}).get("unprofiled_ms") or []
    return [float(x) for x in xs if isinstance(x, (int, float)) and math.isfinite(x) and x > 0]


def from_capture(cap: dict | None) -> dict | None:
    """The unprofiled latency a capture recorded: the median of the profiled session's unprofiled
    samples, before and after the profiled window pooled. ``None`` when the capture has none."""
    if not cap:
        return None
    before, after = cap.get("timing") or {}, cap.get("timing_after") or {}
    samples = _samples(before) + _samples(after)
    lat = median(samples)
    if lat is None:
        lat = before.get("median_ms") if isinstance(before.get("median_ms"), (int, float)) else None
    if lat is None or not lat > 0:
        return None
    out = {"latency_ms": float(lat), "samples": samples,
           "before_ms": median(_samples(before)) or before.get("median_ms"),
           "after_ms": median(_samples(after)) or after.get("median_ms") if after else None,
           "sessions_median_ms": None, "sessions": None}
    sessions = cap.get("sessions") or {}
    runs = sessions.get("runs") if isinstance(sessions, dict) else None
    if runs:
        meds = [median(_samples(r.get("timing")) + _samples(r.get("timing_after"))) for r in runs
                if isinstance(r, dict)]
        meds = [m for m in meds if m is not None]
        out["sessions"] = len(meds)
        out["sessions_median_ms"] = median(meds)
    return out


def bimodal(samples: list[float]) -> tuple[float, float] | None:
    """The two cluster means when the samples split into two well-separated clusters, else None."""
    xs = sorted(samples)
    n = len(xs)
    k_min = max(3, math.ceil(BIMODAL_MIN_SHARE * n))
    if n < 2 * k_min:
        return None
    best = None
    for k in range(k_min, n - k_min + 1):
        lo, hi = xs[:k], xs[k:]
        mlo, mhi = sum(lo) / k, sum(hi) / (n - k)
        ss = sum((x - mlo) ** 2 for x in lo) + sum((x - mhi) ** 2 for x in hi)
        if best is None or ss < best[0]:
            best = (ss, mlo, mhi)
    ss, mlo, mhi = best
    sd = math.sqrt(ss / max(n - 2, 1))
    med = median(xs)
    if mhi - mlo >= BIMODAL_MIN_SEPARATION * med and mhi - mlo >= BIMODAL_MIN_SIGMAS * sd:
        return mlo, mhi
    return None


def calibration(gpu_name: str | None) -> tuple[float, str] | None:
    """The per-event profiler cost measured on this GPU's machine, else on another (said so)."""
    if not PROFILER_COST_NS:
        return None
    if gpu_name in PROFILER_COST_NS:
        return PROFILER_COST_NS[gpu_name]
    name, (ns, src) = sorted(PROFILER_COST_NS.items())[0]
    return ns, f"{src}; measured on another machine ({name}): your host may differ"


def split(*, u: float, p: float, busy: float, other: float, stall_p: float, events: float,
          cost_ns: float | None) -> dict:
    """Split the unprofiled launch overhead ``u − busy`` (all ms) into launch issue, stalls and
    other idle (see the module docstring). Stall-free traces need no ``cost_ns``."""
    overhead = u - busy
    out = {"launch_issue_ms": None, "stall_ms": None, "other_idle_ms": other,
           "host_issue_ms": None, "cost_us_per_event": None}
    h_p = p - stall_p - other
    if stall_p <= 0:
        out.update(stall_ms=0.0, launch_issue_ms=max(overhead - other, 0.0),
                   host_issue_ms=u - other,
                   cost_us_per_event=(p - u) / events * 1e3 if events >= MIN_EVENTS else None)
        return out
    if cost_ns is None:
        return out
    h_u = max(h_p - cost_ns * events / 1e6, busy)
    stall_u = min(max(u - h_u - other, 0.0), max(overhead - other, 0.0))
    out.update(stall_ms=stall_u, launch_issue_ms=max(overhead - other - stall_u, 0.0),
               host_issue_ms=h_u, cost_us_per_event=cost_ns / 1e3)
    return out
