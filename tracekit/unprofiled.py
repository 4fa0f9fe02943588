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

``c`` is the profiler's cost per recorded host event (see :func:`calibrate`): measured by the
capture on its own host (``calibration_source: this-capture``) or estimated from the trace itself
(``trace-estimate``) — never borrowed from another machine. The point is the trace's own
``(P − U) ÷ events``: the stall as long as profiled (one op with a handful of events inside); a
measured cost spans the interval and decides ``reliable``. A plain proportional split (everything
× U/P) would be wrong: the profiler inflates the per-op issue cost far more than one long op — on
an H100 the issue time of an eager step went from ≈13 ms unprofiled to ≈38 ms profiled, while a
cuDNN plan-build stall stayed about as long. Every what-if carries an interval from ``c``'s range
and how far the host's step moves — step to step, before and after the profiled window, process to
process (docs/host.md).

A trace with no stall needs no ``c``: its launch issue is simply the rest of ``U``, and
``(P − U) ÷ events`` is reported as that trace's own calibration.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from tracekit import whatif as wi
from tracekit.errors import BadInput
from tracekit.stats import median

#: How much longer the profiler makes a stall, as a fraction of its unprofiled length, when a trace
#: carries no measured profiler cost and the cost must be estimated from the trace ("trace-
#: estimate", see :func:`calibrate`): the point and the range the interval allows. A stall is one
#: long CPU op (cuDNN building its plan) with few recorded events inside it, so the profiler
#: lengthens it far less than the per-op issue: 0 is "the stall is as long unprofiled", the upper
#: end allows the profiler's hooks on the driver calls the op makes. Measured, not assumed: see
#: docs/host.md ("How the profiler's cost is calibrated") for the captures these come from.
STALL_INFLATION = (0.0, 0.0, 0.35)
#: the what-if interval is widened by the step-to-step spread of the unprofiled samples (half the
#: p10–p90 range over the median), at most this much each way
MAX_NOISE = 0.25
#: the "without the stalls" interval is widened by how far the host's step moves (steps, drift,
#: processes), at most this much each way
MAX_SPREAD = 0.5
#: ``reliable`` needs this-capture's calibration and a what-if interval no wider than this ratio
RELIABLE_WIDTH = 1.35

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

    ``latency_ms`` is the **profiled session's own** median of the steps timed *before* its
    profiled window: a trace is one process, and fresh sessions of one eager capture disagree by
    up to 1.6× (the host's speed and the stall's length vary from process to process), so the
    trace is decomposed against the step its own process ran. With ``--sessions N`` (N ≥ 2) the
    median of the sessions' medians is ``expected_ms``, what a user should expect on average,
    with their range. ``timing_after`` (steps timed after the window, same process) is a drift
    check, not a sample: on the H100 and H200 hosts the sample traces come from, the host
    stayed 20–100% slower after torch.profiler stopped. ``None`` when the capture has no
    unprofiled timing."""
    if not isinstance(cap, dict):
        return None
    before = cap.get("timing")
    own = _timing_median(before)
    if own is None:
        return None
    out = {"latency_ms": own, "samples": _samples(before), "before_ms": own,
           "after_ms": _timing_median(cap.get("timing_after")),
           "sessions_median_ms": None, "sessions": None, "basis": "profiled session",
           "expected_ms": own, "expected_basis": "profiled session (one process)",
           "sessions_range_ms": None, **_calibration_steps(cap.get("profiler_cost"))}
    sessions = cap.get("sessions")
    runs = sessions.get("runs") if isinstance(sessions, dict) else None
    if isinstance(runs, list):
        # each session's median, with the NUMA nodes its launching thread was seen on
        out["sessions_nodes"] = [(m, _thread_nodes(r.get("host_cpus"))) for r in runs
                                 if isinstance(r, dict)
                                 and (m := _timing_median(r.get("timing"))) is not None]
        meds = [m for m, _ in out["sessions_nodes"]]
        if meds:
            out["sessions"] = len(meds)
            out["sessions_median_ms"] = median(meds)
            out["sessions_range_ms"] = [min(meds), max(meds)]
        if len(meds) >= 2:
            out.update(expected_ms=median(meds), expected_basis=f"median of {len(meds)} sessions")
    return out


def _thread_nodes(host_cpus: object) -> list[int]:
    """The NUMA nodes a session's launching thread was seen on (``host_cpus``, written by
    ``tracekit capture``; anyone's trace may hold anything there)."""
    seen = host_cpus.get("launching_thread") if isinstance(host_cpus, dict) else None
    nodes = {at.get("numa_node") for at in (seen.values() if isinstance(seen, dict) else ())
             if isinstance(at, dict)}
    return sorted(n for n in nodes if type(n) is int)


def _calibration_steps(pc: object) -> dict:
    """The calibration workload's unprofiled median in the profiled session's process
    (``calibration_own_ms``) and in every session's (``calibration_medians_ms``): the same
    stall-free step in N processes, where the capture kept them."""
    if not isinstance(pc, dict):
        return {"calibration_own_ms": None, "calibration_medians_ms": []}
    per = pc.get("sessions")
    per = per if isinstance(per, list) else []
    meds = [float(x["unprofiled_median_ms"]) for x in per if isinstance(x, dict)
            and _positive(x.get("unprofiled_median_ms"))]
    return {"calibration_own_ms": median(_samples({"unprofiled_ms": pc.get("unprofiled_ms")})),
            "calibration_medians_ms": meds}


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


def _measured_cost(cap: dict | None) -> tuple[tuple[float, float, float], bool] | None:
    """((point, low, high) ns per event, whether its count was halved — the cost then halved
    here) from a capture's own calibration (``profiler_cost``)."""
    pc = cap.get("profiler_cost") if isinstance(cap, dict) else None
    if not isinstance(pc, dict):
        return None
    raw, iv = pc.get("ns_per_event"), pc.get("interval_ns")
    if not isinstance(raw, (int, float)) or not _positive(raw):
        return None
    point = float(raw)
    lo, hi = ((float(iv[0]), float(iv[1])) if isinstance(iv, list) and len(iv) == 2
              and all(_positive(x) or x == 0 for x in iv) else (point, point))
    halved = _halved_count(cap or {}, pc)
    k = 0.5 if halved else 1.0
    return (point * k, min(lo, point) * k, max(hi, point) * k), halved


def _stall_free_text(cap: dict) -> str:
    """Where the calibration forced flash attention in place of PyTorch's choice, its unprofiled
    steps are a measurement beside the what-if: the step with flash attention, in this process
    (and in every session's, where the capture kept them)."""
    m = _stall_free_measured(cap)
    if m is None:
        return ""
    per = m["sessions_ms"]
    each = f" (each session's: {', '.join(f'{x:.2f}' for x in per)} ms)" if len(per) >= 2 else ""
    return (f"; measured beside it: the calibration ran this step with flash attention at "
            f"{m['ms']:.2f} ms unprofiled in this process{each}")


def _stall_free_measured(cap: dict | None) -> dict | None:
    """The step the capture's calibration ran with flash attention forced, unprofiled: in the
    profiled process and in each session (``stall_free_measured``), or None where the calibration
    did not force flash (the trace's own attention, or no calibration)."""
    pc = cap.get("profiler_cost") if isinstance(cap, dict) else None
    if not isinstance(pc, dict) or "flash" not in str(pc.get("workload", "")):
        return None
    steps = _calibration_steps(pc)
    if steps["calibration_own_ms"] is None:
        return None
    return {"ms": steps["calibration_own_ms"], "sessions_ms": steps["calibration_medians_ms"],
            "attention": "flash"}


def _halved_count(cap: dict, pc: dict) -> bool:
    """A calibration whose events per step were counted at half (see
    ``tracekit/capture/calibrate.py``, ``EVENTS_BASIS``): written before the count said its
    basis, by a profiler that recorded CUDA activity (each step's range then had a GPU-side
    copy holding no event, and the median of the counts took those zeros)."""
    acts = cap.get("profiler_activities")
    return ("events_basis" not in pc and isinstance(acts, list) and "cuda" in acts)


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def _trace_estimate(*, u: float, p: float, stall_p: float, events: float
                    ) -> tuple[float, float, float] | None:
    """(point, low, high) ns per event from the trace's own profiled − unprofiled step, less what
    the profiler added to the stall: with the stall ``STALL_INFLATION`` × longer under the
    profiler, ``P − U = c × events + S_p × f/(1 + f)``. The point (f = 0) is the stall as
    profiled. None where ``P ≤ U`` (the host drifted) or no event was recorded."""
    if events <= 0 or p <= u:
        return None

    def at(f: float) -> float:
        return max(p - u - stall_p * f / (1 + f), 0.0) / events * 1e6

    point, lo_f, hi_f = STALL_INFLATION
    return at(point), at(hi_f), at(lo_f)


def calibrate(cap: dict | None, *, u: float, p: float, stall_p: float, events: float) -> dict:
    """The profiler's cost per recorded host event: where it comes from (``source``), its value
    and range (``ns``), the costs the split is computed at (``point_ns``, and ``range_ns``: every
    cost the interval must hold) and whether the two agree (``consistent``).

    * ``this-capture`` — ``tracekit capture`` measured it on this host, in this process (the
      metadata's ``profiler_cost``: the same decode step with a stall-free attention kernel, timed
      with and without the profiler; see ``tracekit/capture/calibrate.py``);
    * ``trace-estimate`` — any other trace whose unprofiled step is known (:func:`_trace_estimate`);
    * ``None`` — neither (the profiled step is not longer than the unprofiled one).

    The split's point is the trace estimate's wherever there is one — the stall as long as
    profiled (a stall is one long op with a handful of recorded events inside it) — and the
    measured cost, where there is one, spans the interval and checks it. Measured on one H100
    host, the cost a process measured on its calibration window differed from the one its own
    profiled window implied by up to 2.5× (a second profiler window in a process, on another
    attention kernel's events, runs at another cost per event), while the stall as profiled put
    "without the stalls" within 10% of the stall-free step the same process ran (docs/host.md).
    Another machine's cost is never used: it was 1.6–4 µs on the H100 hosts measured here and
    5.6 µs on an H200."""
    got = _measured_cost(cap)
    measured, halved = got if got else (None, False)
    est = _trace_estimate(u=u, p=p, stall_p=stall_p, events=events)
    _, lo_f, hi_f = STALL_INFLATION
    est_text = (f"this trace's own profiled − unprofiled step over {events:.0f} events gives "
                f"{est[0] / 1e3:.2f} µs with the stall as long as profiled" if est else "")
    if measured is not None:
        consistent = est is not None and measured[1] <= est[0] <= measured[2]
        return {"source": "this-capture", "ns": measured,
                "point_ns": est[0] if est else measured[0],
                # the measurement bounds the cost: no stall lengthening beyond it is assumed
                "range_ns": [*measured, *(est[:1] if est else ())], "consistent": consistent,
                "text": (f"{measured[0] / 1e3:.2f} µs per recorded event "
                         f"({measured[1] / 1e3:.2f}–{measured[2] / 1e3:.2f}), measured by the "
                         "capture on this host: the same decode step with a stall-free attention "
                         "kernel, with and without the profiler"
                         + ("; half the cost its metadata says, which counted each step's "
                            "events at half (a fault of captures before 2026-12-08)"
                            if halved else "")
                         + (f"; {est_text} — " + ("within the measured range" if consistent else
                            "outside the measured range: the profiled window ran at another "
                            "cost per event than the calibration, so the interval spans both")
                            if est else
                            "; the profiled step is not longer than the unprofiled one, so the "
                            "split uses the measured cost")
                         + _stall_free_text(cap or {}))}
    if est is None:
        return {"source": None, "ns": None, "point_ns": None, "range_ns": [], "consistent": False,
                "text": "no per-event profiler cost: the trace's capture did not measure one and "
                        "the profiled step is not longer than the unprofiled one, so the split of "
                        "launch overhead into issue and stalls is unknown"}
    return {"source": "trace-estimate", "ns": est, "point_ns": est[0], "range_ns": list(est),
            "consistent": False,
            "text": (f"{est[0] / 1e3:.2f} µs per recorded event ({est[1] / 1e3:.2f}–"
                     f"{est[2] / 1e3:.2f}), estimated from this trace: its profiled − unprofiled "
                     f"step over {events:.0f} events, the stall lengthened {lo_f:.0%}–"
                     f"{hi_f:.0%} by the profiler; not measured on this host — capture with "
                     "tracekit capture to measure it")}


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
    """The "without the stalls" what-if on the *profiled* step: minus the stall idle, plus what
    issuing those ops normally costs (the same op's median host time when it does not stall). Its
    interval is the spread over the decode steps of the stall idle (``host.stall_ms_range``)."""
    lat, busy = summary.get("latency_ms"), summary.get("gpu_busy_ms")
    whatif.update(no_stalls_ms=None, no_stalls_speedup=None, no_stalls_interval_ms=None)
    if host is None or lat is None or not host["stalls"] or not host["stall_ms"]:
        return  # no stall in the median step: nothing to take away
    normal = _stall_normal_ms(host)

    def at(stall: float) -> float:
        return max(lat - stall + normal, busy or 0.0)

    ms = at(host["stall_ms"])
    spread = host.get("stall_ms_range") or [host["stall_ms"]] * 2
    whatif.update(no_stalls_ms=ms, no_stalls_speedup=lat / ms if ms else None,
                  no_stalls_interval_ms=[min(at(spread[1]), ms), max(at(spread[0]), ms)])


def _host_spread(cap: dict | None, u: float, noise: float) -> tuple[float, float]:
    """How far this host's step moves, as fractions of it (down, up), each at most
    ``MAX_SPREAD``: the step-to-step noise; the drift from the steps timed before the profiled
    window to those after it; the fresh sessions' medians against the profiled session's; and
    each session's stall-free calibration step against the profiled session's (the same step in
    N processes). A host-bound step moves with the host: on one H100 VM the stall-free step of
    one model and context took 19 ms in one process and 29 ms in the next."""
    down = up = noise
    if cap:
        b, a = cap.get("before_ms"), cap.get("after_ms")
        if b and a:
            down = up = max(up, abs(a / b - 1))
        rng = cap.get("sessions_range_ms")
        if rng and u > 0:
            down, up = max(down, 1 - rng[0] / u), max(up, rng[1] / u - 1)
        cal = cap.get("calibration_medians_ms") or []
        own = cap.get("calibration_own_ms")
        if own and len(cal) >= 2:
            down, up = max(down, 1 - min(cal) / own), max(up, max(cal) / own - 1)
    return min(max(down, 0.0), MAX_SPREAD), min(max(up, 0.0), MAX_SPREAD)


def _noise(samples: list[float]) -> float:
    """Half the p10–p90 range of the unprofiled samples over their median (≤ ``MAX_NOISE``)."""
    if len(samples) < 5:
        return 0.0
    xs = sorted(samples)
    q = statistics.quantiles(xs, n=10)
    med = statistics.median(xs)
    return min((q[-1] - q[0]) / 2 / med, MAX_NOISE) if med > 0 else 0.0


def section(capture: dict | None, gpu_name: str | None, flag_ms: float | None, summary: dict,
            decomp: dict, host: dict | None, whatif: dict, warnings: list[str]) -> dict | None:
    """The JSON ``unprofiled`` section (see the module docstring), or None when unknown:
    ``capture`` is the trace's capture metadata, ``gpu_name`` the GPU it names, ``flag_ms``
    ``--unprofiled-ms``."""
    p, busy = summary.get("latency_ms"), summary.get("gpu_busy_ms")
    cap = from_capture(capture)
    if flag_ms is not None:
        u, source = float(flag_ms), "flag"
    elif cap is not None:
        u, source = cap["latency_ms"], "capture"
    else:
        return None
    graphs = whatif.get("cuda_graphs_ms")
    out: dict[str, Any] = {
        "latency_ms": u, "source": source,
        "basis": cap["basis"] if source == "capture" and cap else "--unprofiled-ms",
        "expected_ms": cap["expected_ms"] if source == "capture" and cap else u,
        "expected_basis": (cap["expected_basis"] if source == "capture" and cap
                           else "--unprofiled-ms"),
        "sessions_range_ms": cap["sessions_range_ms"] if source == "capture" and cap else None,
        "profiler_overhead": p / u if p else None,
        "profiled_latency_ms": p, "samples": None, "decomposition": None,
        "whatif": {"cuda_graphs_ms": graphs,
                   "cuda_graphs_interval_ms": whatif.get("cuda_graphs_interval_ms"),
                   "cuda_graphs_speedup": None,
                   "no_stalls_ms": None, "no_stalls_interval_ms": None, "no_stalls_speedup": None},
        "stall_free_measured": (_stall_free_measured(capture) if source == "capture" else None),
        "model": None, "calibration": None, "calibration_source": None,
        "profiler_cost_us": None, "profiler_cost_interval_us": None,
        "estimate": True, "reliable": True, "host": None}
    samples_ok = True
    noise = 0.0
    if cap is not None and source == "capture":
        out["samples"] = {k: cap[k] for k in ("basis", "before_ms", "after_ms", "sessions",
                                              "sessions_median_ms")}
        out["samples"]["n"] = len(cap["samples"])
        samples_ok = _sample_warnings(cap, warnings)
        noise = _noise(cap["samples"])
    if p is not None and p < u:
        samples_ok = False
        warnings.append(
            f"the profiled step ({p:.1f} ms) is faster than the unprofiled one ({u:.1f} ms; "
            f"profiler overhead {p / u:.2f}x < 1): the host's speed drifted between timing and "
            "profiling, so the unprofiled numbers are unreliable — re-capture on a quiet host "
            "with several fresh sessions (tracekit capture --sessions N) or pass "
            "--unprofiled-ms from a stable run")
    out["reliable"] = samples_ok
    if busy is None or p is None:
        return out
    classes = decomp.get("launch_overhead_by_class_ms") or {}
    other = sum(v or 0.0 for c, v in classes.items() if c != "host_bound")
    dec = {"floor_ms": decomp.get("floor_ms"), "kernel_excess_ms": decomp.get("kernel_excess_ms"),
           "launch_overhead_ms": u - busy, "launch_issue_ms": None, "stall_ms": None,
           "other_idle_ms": other}
    out["decomposition"] = dec
    if host is None:
        if not wi.replays_graphs(summary):  # stalls possible, not told apart from launch issue
            out["reliable"] = False
        _graphs_speedup(out, u, whatif.get("cuda_graphs_program"))
        return out
    stall_p, events = host["stall_ms"], host["events_per_step"] or 0
    if stall_p <= 0:
        sp = split(u=u, p=p, busy=busy, other=other, stall_p=0.0, events=events, cost_ns=None)
        out["model"] = "no stall: launch issue is the rest of the unprofiled step"
        out["calibration"] = "none needed: no stall"
        if sp["cost_us_per_event"] is not None:
            out["profiler_cost_us"] = sp["cost_us_per_event"]
            out["calibration_source"] = "this-capture"
    else:
        cal = calibrate(capture if source == "capture" else None, u=u, p=p, stall_p=stall_p,
                        events=events)
        out["calibration"], out["calibration_source"] = cal["text"], cal["source"]
        if cal["ns"] is None:
            out["reliable"] = False
            sp = split(u=u, p=p, busy=busy, other=other, stall_p=stall_p, events=events,
                       cost_ns=None)
        else:
            point, lo, hi = cal["ns"]
            out["profiler_cost_us"] = point / 1e3
            out["profiler_cost_interval_us"] = [lo / 1e3, hi / 1e3]
            c = cal["point_ns"]
            sp = split(u=u, p=p, busy=busy, other=other, stall_p=stall_p, events=events,
                       cost_ns=c)
            out["model"] = ("per-event profiler cost: the profiled host issue time less "
                            f"{c / 1e3:.2f} µs per recorded event; stalls are the rest"
                            + (" (this trace's own profiled − unprofiled step per event: the "
                               "stall as long as profiled; the measured cost spans the interval)"
                               if cal["source"] == "this-capture" and c != point else ""))
            ms = _no_stalls_ms(u, p, busy, other, host, sp)
            # the split at every cost the calibration allows: the stall and the issue it leaves,
            # and the what-if, widened by how much this host's step moves (steps, processes)
            at = [split(u=u, p=p, busy=busy, other=other, stall_p=stall_p, events=events,
                        cost_ns=x) for x in cal["range_ns"]]
            ends = [_no_stalls_ms(u, p, busy, other, host, a) for a in at]
            down, up = _host_spread(cap if source == "capture" else None, u, noise)
            interval = [max(min(*ends, ms) * (1 - down), busy), max(*ends, ms) * (1 + up)]
            out["whatif"].update(no_stalls_ms=ms, no_stalls_interval_ms=interval,
                                 no_stalls_speedup=u / ms)
            dec["stall_interval_ms"] = [min(a["stall_ms"] for a in at), max(a["stall_ms"] for a in at)]
            dec["launch_issue_interval_ms"] = [min(a["launch_issue_ms"] for a in at),
                                               max(a["launch_issue_ms"] for a in at)]
            out["reliable"] = (samples_ok and cal["source"] == "this-capture"
                               and cal["consistent"]
                               and interval[1] <= RELIABLE_WIDTH * interval[0])
    dec.update(launch_issue_ms=sp["launch_issue_ms"], stall_ms=sp["stall_ms"])
    out["host"] = {"launch_issue_ms": sp["launch_issue_ms"], "stall_ms": sp["stall_ms"],
                   "host_issue_ms": sp["host_issue_ms"],
                   "cost_us_per_event": sp["cost_us_per_event"]}
    _graphs_speedup(out, u, whatif.get("cuda_graphs_program"))
    return out


def _no_stalls_ms(u: float, p: float, busy: float, other: float, host: dict, sp: dict) -> float:
    """The unprofiled step without its stalls: the split's issue time and other idle, plus the
    stalling ops' usual host time scaled from profiled to unprofiled like the rest of the issue."""
    issue_p = p - host["stall_ms"] - other
    scale = sp["host_issue_ms"] / issue_p if sp["host_issue_ms"] and issue_p > 0 else 1.0
    return max(u - (sp["stall_ms"] or 0.0) + _stall_normal_ms(host) * scale, busy)


def _graphs_speedup(out: dict, u: float, program: str | None) -> None:
    """The same-kernels CUDA-Graphs what-if removes every host gap, stalls included: it is never
    slower than the unprofiled step without the stalls (capped there where both are known, as
    :func:`tracekit.whatif.cap_by_no_stalls` caps it against the profiled step). The graph trace's
    program is another program and is left as predicted. The speed-up is
    :func:`tracekit.whatif.against` the unprofiled step."""
    w = out["whatif"]
    if not w.get("cuda_graphs_ms"):
        return
    ns = w.get("no_stalls_ms")
    if program == wi.SAME_KERNELS and ns is not None and w["cuda_graphs_ms"] > ns:
        w["cuda_graphs_ms"] = ns
        w["cuda_graphs_interval_ms"] = w.get("no_stalls_interval_ms")
    w["cuda_graphs_speedup"] = wi.against(w, u)["speedup"]


def _nodes_text(cap: dict) -> str:
    """"; each session's median with the NUMA node its launching thread ran on: …" where the
    capture recorded the nodes (``host_cpus``) and they were not all one node, else ""."""
    pairs = cap.get("sessions_nodes") or []
    if not pairs or len({tuple(n) for _, n in pairs}) < 2 or not any(n for _, n in pairs):
        return ""
    return ("; each session's median with the NUMA node its launching thread ran on: "
            + ", ".join(f"{m:.1f} ms ({'node ' + '/'.join(map(str, n)) if n else 'node unknown'})"
                        for m, n in pairs))


def _sample_warnings(cap: dict, warnings: list[str]) -> bool:
    """Warn about unprofiled samples no single number summarizes; True when none applies."""
    modes = bimodal(cap["samples"])
    spread = cap.get("sessions_range_ms")
    if spread and spread[0] > 0 and spread[1] / spread[0] > SESSION_SPREAD:
        warnings.append(
            f"the {cap['sessions']} fresh sessions disagree: their unprofiled medians range from "
            f"{spread[0]:.1f} to {spread[1]:.1f} ms (the host's speed varies between processes); "
            f"the trace is decomposed against its own session ({cap['latency_ms']:.1f} ms) and "
            f"their median, {cap['sessions_median_ms']:.1f} ms, is what to expect — treat "
            "single-session numbers from this machine with care" + _nodes_text(cap))
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
            + "tracekit decomposes the trace against the steps timed before the window"
            + (f" and reports the median of the {cap['sessions']} sessions as what to expect"
               if (cap.get("sessions") or 0) >= 2 else
               " — capture several fresh sessions (tracekit capture --sessions N) before "
               "trusting one"))
    # with several sessions the latency is their median, which one noisy session cannot move
    return not modes or (cap.get("sessions") or 0) >= 3
