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
import statistics
from typing import Any

from tracekit.errors import BadInput

#: Profiler cost per recorded host event (ns), by the GPU name of the machine it was measured on
#: (the cost is the host CPU's; each lent GPU model came with one host type). Filled only from
#: captures where both the profiled and the unprofiled step are known and that have no stall.
PROFILER_COST_NS: dict[str, tuple[float, str]] = {
    # tests/test_validation.py re-derives both from the committed traces
    "NVIDIA H100 80GB HBM3": (2064.0, "calibrated on sample_traces/h100/qwen2.5-7b_ctx2048_eager_"
                              "sdpa-flash.json.gz (29.52 ms profiled, 17.26 ms unprofiled over 5 "
                              "sessions, 5935 recorded events per step; lent H100, Xeon host)"),
    "NVIDIA H200": (6587.0, "calibrated on sample_traces/h200/qwen2.5-7b_ctx2048_eager_sdpa-flash"
                    ".json.gz (60.31 ms profiled, 21.03 ms unprofiled over 10 sessions, 5963 "
                    "recorded events per step; lent H200, Xeon host)"),
}

#: a stall-free trace reports its own per-event cost only with this many host events per step
#: (graph and compile steps record a handful; their P − U is GPU-side tracing cost)
MIN_EVENTS = 500

#: the unprofiled samples are "bimodal" when the best two-cluster split has both clusters with at
#: least this share of the samples …
BIMODAL_MIN_SHARE = 0.2
#: … and cluster means this far apart relative to the median …
BIMODAL_MIN_SEPARATION = 0.2
#: … and this many standard deviations of the wider cluster apart (a long tail is not a mode)
BIMODAL_MIN_SIGMAS = 3.0
#: the unprofiled medians before and after the profiled window disagree when they differ by more
DRIFT_TOLERANCE = 0.10
#: fresh sessions disagree when their slowest median is more than this factor of their fastest
SESSION_SPREAD = 1.25


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
    if type(ms) not in (int, float) or math.isnan(ms) or math.isinf(ms) or ms <= 0:
        raise BadInput(f"--unprofiled-ms must be a positive number of milliseconds per step "
                       f"(the median unprofiled step time), got {ms}")
    if gpu_busy_ms is not None and ms < gpu_busy_ms:
        raise BadInput(f"--unprofiled-ms {ms:g} is smaller than the step's GPU busy time "
                       f"({gpu_busy_ms:.3f} ms): no step can be shorter than its GPU work; pass the "
                       "measured unprofiled ms per decode step")


def _samples(timing: object) -> list[float]:
    xs = timing.get("unprofiled_ms") if isinstance(timing, dict) else None
    if not isinstance(xs, list):
        return []
    return [float(x) for x in xs if isinstance(x, (int, float)) and not isinstance(x, bool)
            and math.isfinite(x) and x > 0]


def _timing_median(timing: object) -> float | None:
    m = median(_samples(timing))
    if m is None and isinstance(timing, dict):
        v = timing.get("median_ms")
        m = float(v) if isinstance(v, (int, float)) and math.isfinite(v) and v > 0 else None
    return m


def from_capture(cap: dict | None) -> dict | None:
    """The unprofiled latency a capture recorded.

    With ``--sessions N`` (N ≥ 2): the median of the sessions' medians — the step users run, robust
    to the host speed that varies from process to process (59–99 ms between fresh sessions of one
    eager capture on the lent H200). Otherwise the median of the steps timed *before* the profiled
    window. ``timing_after`` (steps timed after the window, same process) is a drift check, not a
    sample: on the lent H100 and H200 the host stayed 20–100% slower after torch.profiler stopped.
    ``None`` when the capture has no unprofiled timing."""
    if not isinstance(cap, dict):
        return None
    before = cap.get("timing")
    own = _timing_median(before)
    if own is None:
        return None
    out = {"latency_ms": own, "samples": _samples(before), "before_ms": own,
           "after_ms": _timing_median(cap.get("timing_after")),
           "sessions_median_ms": None, "sessions": None, "basis": "profiled session"}
    sessions = cap.get("sessions")
    runs = sessions.get("runs") if isinstance(sessions, dict) else None
    if isinstance(runs, list):
        meds = [m for m in (_timing_median(r.get("timing")) for r in runs if isinstance(r, dict))
                if m is not None]
        if meds:
            out["sessions"] = len(meds)
            out["sessions_median_ms"] = median(meds)
            out["sessions_range_ms"] = [min(meds), max(meds)]
        if len(meds) >= 2:
            out.update(latency_ms=median(meds), basis=f"median of {len(meds)} sessions")
    return out


def bimodal(samples: list[float]) -> tuple[float, float] | None:
    """The two cluster means when the samples split into two well-separated clusters, else None."""
    xs = sorted(samples)
    n = len(xs)
    k_min = max(3, math.ceil(BIMODAL_MIN_SHARE * n))
    if n < 2 * k_min:
        return None

    def split_at(k: int) -> tuple[float, float, float, float, float]:
        # (within-cluster sum of squares, the two means, the two standard deviations)
        lo, hi = xs[:k], xs[k:]
        mlo, mhi = sum(lo) / k, sum(hi) / (n - k)
        ss_lo, ss_hi = sum((x - mlo) ** 2 for x in lo), sum((x - mhi) ** 2 for x in hi)
        return ss_lo + ss_hi, mlo, mhi, math.sqrt(ss_lo / k), math.sqrt(ss_hi / (n - k))

    # the best split: the least sum of squares (the first such k on a tie)
    _, mlo, mhi, sd_lo, sd_hi = min((split_at(k) for k in range(k_min, n - k_min + 1)),
                                    key=lambda s: s[0])
    med = statistics.median(xs)
    # two modes, not one mode with a long tail: each cluster tight relative to the separation
    if mhi - mlo >= BIMODAL_MIN_SEPARATION * med and mhi - mlo >= BIMODAL_MIN_SIGMAS * max(sd_lo, sd_hi):
        return mlo, mhi
    return None


def calibration(gpu_name: str | None) -> tuple[float, str] | None:
    """The per-event profiler cost measured on this GPU's machine; ``None`` for any other (the
    cost is the host CPU's: it was 2.2 µs on the lent H100's host and 5.1 µs on the H200's, so
    borrowing another machine's would be a guess)."""
    return PROFILER_COST_NS.get(gpu_name or "")


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


# -- the explanation's sections ---------------------------------------------------------------
def _stall_normal_ms(host: dict) -> float:
    """What issuing the stalling ops costs when they do not stall (ms per step)."""
    return sum(s["per_step"] * (s["normal_us"] or 0.0) / 1e3 for s in host["stalls"])


def no_stalls(whatif: dict, summary: dict, host: dict | None) -> None:
    """The "without the stalls" what-if on the profiled step: minus the stall idle, plus what
    issuing those ops normally costs (the same op's median host time when it does not stall)."""
    lat, busy = summary.get("latency_ms"), summary.get("gpu_busy_ms")
    whatif.update(no_stalls_ms=None, no_stalls_speedup=None)
    if host is None or lat is None or not host["stalls"] or not host["stall_ms"]:
        return  # no stall in the median step: nothing to take away
    ms = max(lat - host["stall_ms"] + _stall_normal_ms(host), busy or 0.0)
    whatif.update(no_stalls_ms=ms, no_stalls_speedup=lat / ms if ms else None)


def section(capture: dict | None, gpu_name: str | None, flag_ms: float | None, summary: dict,
            decomp: dict, host: dict | None, whatif: dict, warnings: list[str]) -> dict | None:
    """The JSON ``unprofiled`` section (see the module docstring), or None when unknown:
    ``capture`` is the trace's capture metadata, ``gpu_name`` the GPU it names (which
    per-event profiler cost applies), ``flag_ms`` ``--unprofiled-ms``."""
    p, busy = summary.get("latency_ms"), summary.get("gpu_busy_ms")
    cap = from_capture(capture)
    if flag_ms is not None:
        u, source = float(flag_ms), "flag"
    elif cap is not None:
        u, source = cap["latency_ms"], "capture"
    else:
        return None
    out: dict[str, Any] = {
        "latency_ms": u, "source": source, "profiler_overhead": p / u if p else None,
        "profiled_latency_ms": p, "samples": None, "decomposition": None,
        "whatif": {"cuda_graphs_ms": whatif.get("cuda_graphs_ms"), "cuda_graphs_speedup": None,
                   "no_stalls_ms": None, "no_stalls_speedup": None},
        "model": None, "calibration": None, "estimate": True, "reliable": True, "host": None}
    if cap is not None and source == "capture":
        out["samples"] = {k: cap[k] for k in ("basis", "before_ms", "after_ms", "sessions",
                                              "sessions_median_ms")}
        out["samples"]["n"] = len(cap["samples"])
        out["reliable"] = _sample_warnings(cap, warnings)
    if p is not None and p < u:
        out["reliable"] = False
        warnings.append(
            f"the profiled step ({p:.1f} ms) is faster than the unprofiled one ({u:.1f} ms; "
            f"profiler overhead {p / u:.2f}x < 1): the host's speed drifted between timing and "
            "profiling, so the unprofiled numbers are unreliable — re-capture on a quiet host "
            "with several fresh sessions (tracekit capture --sessions N) or pass "
            "--unprofiled-ms from a stable run")
    if busy is None or p is None:
        return out
    classes = decomp.get("launch_overhead_by_class_ms") or {}
    other = sum(v or 0.0 for c, v in classes.items() if c != "host_bound")
    dec = {"floor_ms": decomp.get("floor_ms"), "kernel_excess_ms": decomp.get("kernel_excess_ms"),
           "launch_overhead_ms": u - busy, "launch_issue_ms": None, "stall_ms": None,
           "other_idle_ms": other}
    out["decomposition"] = dec
    if whatif.get("cuda_graphs_ms"):
        out["whatif"]["cuda_graphs_speedup"] = u / whatif["cuda_graphs_ms"]
    if host is None:
        return out
    cal = calibration(gpu_name)
    sp = split(u=u, p=p, busy=busy, other=other, stall_p=host["stall_ms"],
                      events=host["events_per_step"] or 0, cost_ns=cal[0] if cal else None)
    dec.update(launch_issue_ms=sp["launch_issue_ms"], stall_ms=sp["stall_ms"])
    out["calibration"] = (cal[1] if cal and host["stall_ms"] > 0 else
                          "none needed: no stall" if host["stall_ms"] <= 0 else
                          "no per-event profiler cost measured for this machine: the split of "
                          "launch overhead into issue and stalls is unknown")
    if host["stall_ms"] <= 0:
        out["model"] = "no stall: launch issue is the rest of the unprofiled step"
    elif sp["cost_us_per_event"] is not None:
        out["model"] = ("per-event profiler cost: the profiled host issue time less "
                        f"{sp['cost_us_per_event']:.2f} µs per recorded event; stalls are the rest")
    out["host"] = {"launch_issue_ms": sp["launch_issue_ms"], "stall_ms": sp["stall_ms"],
                   "host_issue_ms": sp["host_issue_ms"],
                   "cost_us_per_event": sp["cost_us_per_event"]}
    if sp["stall_ms"] and host["stalls"] and host["stall_ms"]:
        scale = (sp["host_issue_ms"] / (p - host["stall_ms"] - other)
                 if sp["host_issue_ms"] and p - host["stall_ms"] - other > 0 else 1.0)
        ms = max(u - sp["stall_ms"] + _stall_normal_ms(host) * scale, busy)
        out["whatif"].update(no_stalls_ms=ms, no_stalls_speedup=u / ms)
    return out


def _sample_warnings(cap: dict, warnings: list[str]) -> bool:
    """Warn about unprofiled samples no single number summarizes; True when none applies."""
    modes = bimodal(cap["samples"])
    spread = cap.get("sessions_range_ms")
    if spread and spread[0] > 0 and spread[1] / spread[0] > SESSION_SPREAD:
        warnings.append(
            f"the {cap['sessions']} fresh sessions disagree: their unprofiled medians range from "
            f"{spread[0]:.1f} to {spread[1]:.1f} ms (the host's speed varies between processes); "
            f"tracekit uses their median, {cap['sessions_median_ms']:.1f} ms — treat single-session "
            "numbers from this machine with care")
    if modes:
        warnings.append(
            f"the unprofiled samples are bimodal (clusters near {modes[0]:.1f} and {modes[1]:.1f} "
            f"ms; median {cap['latency_ms']:.1f} ms): the host changed speed while timing, so no "
            "single number is the real step — re-capture on a quiet host, with more sessions, "
            "or pass --unprofiled-ms with the value you trust")
    b, a = cap.get("before_ms"), cap.get("after_ms")
    if b and a and abs(a - b) > DRIFT_TOLERANCE * min(a, b):
        warnings.append(
            f"the unprofiled step was {b:.1f} ms before the profiled window and {a:.1f} ms after "
            "it: the host's speed changed during the capture (it often stays slower after "
            "torch.profiler stops in the same process); "
            + (f"tracekit uses the median of the {cap['sessions']} sessions' steps timed before "
               "their windows" if (cap.get("sessions") or 0) >= 2 else
               "tracekit uses the steps timed before the window — capture several fresh "
               "sessions (tracekit capture --sessions N) before trusting one"))
    # with several sessions the latency is their median, which one noisy session cannot move
    return not modes or (cap.get("sessions") or 0) >= 3
