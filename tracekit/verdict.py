"""The verdict: one sentence with the numbers that matter, the dominant cause first."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tracekit.api import Explanation
    from tracekit.contract import Stall, Unprofiled


def _fmt_ms(ms: float | None) -> str:
    if ms is None:
        return "— ms"
    return f"{ms:.1f} ms" if ms >= 10 else f"{ms:.2f} ms"


def _real(e: Explanation) -> Unprofiled | None:
    """The unprofiled section when it has a decomposition (the step a user runs leads the
    verdict whenever it is known; how far to trust it is said in the sentence)."""
    u = e.unprofiled
    if not u or not u.get("decomposition"):
        return None
    return u


def _range(iv: list | None) -> str:
    """" (a–b)" for an interval, "" without one."""
    if not iv or iv[0] is None or iv[1] is None:
        return ""
    return f" ({_num(iv[0])}–{_num(iv[1])})"


def _num(ms: float) -> str:
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def _calibration_clause(real: Unprofiled) -> str:
    """How the unprofiled split was calibrated, in a few words."""
    src = real.get("calibration_source")
    if src == "this-capture":
        return "unprofiled, this host's measured profiler cost"
    if src == "trace-estimate":
        return "unprofiled, profiler cost estimated from this trace, not measured on this host"
    return "unprofiled"


def _sessions_clause(real: Unprofiled) -> str:
    """"; N sessions' median X ms (a–b)" where fresh sessions were timed and their median is
    more than 10% from the profiled process's own step, else ""."""
    exp, own, rng = real.get("expected_ms"), real.get("latency_ms"), real.get("sessions_range_ms")
    if not exp or not own or not rng or "sessions" not in str(real.get("expected_basis")):
        return ""
    if abs(exp - own) <= 0.1 * own:
        return ""
    return (f"; across fresh processes expect ≈{_fmt_ms(exp)}{_range(rng)} "
            f"({real['expected_basis']})")


def _measured_clause(real: Unprofiled | None, st: Stall) -> str:
    """"; measured with flash attention forced: X ms in this process" where the capture measured
    the step with flash attention and the stall is an attention op's (what forcing flash
    removes), else ""."""
    m = real.get("stall_free_measured") if real else None
    if not isinstance(m, dict) or not m.get("ms") or "attention" not in str(st.get("op")):
        return ""
    return f"; measured with flash attention forced: {_fmt_ms(m['ms'])} in this process"


def _stall_clause(st: Stall) -> str:
    n = st["per_step"]
    what = "one stall per step" if 0.9 <= n <= 1.1 else f"{n:.1f} stalls per step"
    why = f" ({st['short_cause']})" if st.get("short_cause") else ""
    return f"{what} in {st['op']}{why}"


#: below half the step but at least this share, the GPU's idle time is named beside the GPU's
#: own time: a step half idle is not "kernel-bound" alone
IDLE_ALSO = 0.25
#: what the GPU is doing in each class of idle time, as the verdict says it
_IDLE = {"host_bound": ("Launch-bound", "the GPU waiting for the host"),
         "sync": ("Sync-bound", "the GPU idle around host synchronizations"),
         "launch_latency": ("Launch-latency-bound", "gaps between already-queued kernels"),
         "other": ("Idle-bound", "the GPU idle for reasons the trace does not show")}


def _idle_clause(e: Explanation, overhead: float, share: float, top: str) -> str:
    """"; besides, X ms (Y%) of each step is <the idle's kind>[: the stall]" where the idle time is
    at least :data:`IDLE_ALSO` of the step (and below half: then it leads the verdict)."""
    if share < IDLE_ALSO:
        return ""
    stall = ""
    if top == "host_bound" and e.host and e.host.get("stalls"):
        stall = f": {_stall_clause(e.host['stalls'][0])}"
    return f"; besides, {_fmt_ms(overhead)} ({share:.0%}) of each step is {_IDLE[top][1]}{stall}"


def _overlap(a: list | None, b: list | None) -> bool:
    return bool(a and b) and a[0] <= b[1] and b[0] <= a[1]  # type: ignore[index]


def _host_verdict(e: Explanation, lat: float, floor_part: str, graphs: str) -> str | None:
    """Host-bound steps: a stall or the steady per-launch issue cost, whichever dominates — by
    their intervals on the unprofiled step where it is known; both are named where they overlap."""
    h = e.host
    if not h:
        return None
    real = _real(e)
    dec: Mapping[str, Any] = (real.get("decomposition") or {}) if real else {}
    basis: float | None = lat
    stall, issue = h["stall_ms"], h["launch_issue_ms"]
    what: Mapping[str, Any] = e.whatif
    stall_iv = issue_iv = None
    tag = ""
    if real and dec.get("stall_ms") is not None and h["stalls"]:
        basis, stall, issue, what = real["latency_ms"], dec["stall_ms"], dec["launch_issue_ms"], real["whatif"]
        stall_iv, issue_iv = dec.get("stall_interval_ms"), dec.get("launch_issue_interval_ms")
        tag = (f" ({_calibration_clause(real)}; the profiled trace shows "
               f"{_fmt_ms(h['stall_ms'])} of {_fmt_ms(lat)}{_sessions_clause(real)})")
    elif real:
        tag = f" (profiled; the unprofiled step is {_fmt_ms(real['latency_ms'])})"
    per = f" ({h['us_per_launch']:.0f} µs of host time per launch)" if h.get("us_per_launch") else ""
    if h["stalls"] and stall is not None and issue is not None:
        st = h["stalls"][0]
        fix = f": {st['short_advice']}" if st.get("short_advice") else ""
        without = ""
        if what.get("no_stalls_ms"):
            without = (f"; without it ≈{_fmt_ms(what['no_stalls_ms'])}"
                       f"{_range(what.get('no_stalls_interval_ms'))} "
                       f"(≈{what['no_stalls_speedup']:.1f}×{_measured_clause(real, st)})")
        if _overlap(stall_iv, issue_iv):
            return (f"Host-stalled and launch-bound (their estimates overlap): "
                    f"{_fmt_ms(stall)}{_range(stall_iv)} of each {_fmt_ms(basis)} step{tag} is "
                    f"{_stall_clause(st)}{fix}, and {_fmt_ms(issue)}{_range(issue_iv)} is the host "
                    f"issuing ops{per}{without}.")
        if stall >= issue:
            return (f"Host-stalled: {_fmt_ms(stall)}{_range(stall_iv)} of each {_fmt_ms(basis)} "
                    f"step{tag} is {_stall_clause(st)}{fix}{without}.")
    also = ""
    if h["stalls"] and h["stalls"][0]["share"] and h["stalls"][0]["share"] >= 0.1:
        st = h["stalls"][0]
        size = f" ({_fmt_ms(stall)}{_range(stall_iv)} per step)" if stall is not None else ""
        also = f"; besides, {_stall_clause(st)}{size}"
    if real:
        share = (dec.get("launch_overhead_ms") or 0) / (real["latency_ms"] or 1.0)
        return (f"Launch-bound: {share:.0%} of each {_fmt_ms(real['latency_ms'])} step "
                f"(unprofiled{_sessions_clause(real)}) is the GPU waiting for the host to issue ops{per}; {floor_part}"
                f"{graphs}{also}.")
    share = (e.decomposition.get("launch_overhead_ms") or 0) / lat
    return (f"Launch-bound: {share:.0%} of each {_fmt_ms(lat)} step is the GPU waiting for the "
            f"host to issue ops{per}; {floor_part}{graphs}{also}.")


def verdict(e: Explanation) -> str:
    """One sentence with the numbers that matter: the dominant cause first."""
    s, d, w = e.summary, e.decomposition, e.whatif
    lat, busy = s.get("latency_ms"), s.get("gpu_busy_ms")
    if not lat:
        return "No step latency: the trace has fewer than two decode steps with GPU work."
    if busy is None:
        return (f"Host-side only: each step takes {_fmt_ms(lat)} on the CPU; the trace has no GPU "
                "activity to explain.")
    overhead = d["launch_overhead_ms"] or 0.0
    share = overhead / lat
    floor = d.get("floor_ms")
    floor_part = (f"the weights+KV floor is {_fmt_ms(floor)} (R_floor {d['r_floor']:.0%})"
                  if floor else "no memory floor (" + (e.floor.get("missing") or "") + ")")
    real = _real(e)
    graphs = ""
    g = real["whatif"] if real and real["whatif"].get("cuda_graphs_ms") else w
    if g.get("cuda_graphs_ms"):
        program = (" (the graph trace's program)" if w.get("graph_program") else "")
        graphs = (f"; CUDA Graphs would bring the step to ≈{_fmt_ms(g['cuda_graphs_ms'])}"
                  f"{_range(g.get('cuda_graphs_interval_ms'))}{program} "
                  f"(≈{g['cuda_graphs_speedup']:.1f}×)")
    elif w.get("note") == "the trace already replays CUDA graphs":
        graphs = "; it already replays CUDA graphs"
    classes: Mapping[str, Any] = d.get("launch_overhead_by_class_ms") or {}
    # (an explanation with launch overhead always has its classes: "other" never applies)
    top = max(classes, key=lambda c: classes[c] or 0) if classes else "other"
    if share >= 0.5:
        if top == "host_bound":
            hv = _host_verdict(e, lat, floor_part, graphs)
            if hv:
                return hv
        what = _IDLE[top]
        return f"{what[0]}: {share:.0%} of each {_fmt_ms(lat)} step is {what[1]}; {floor_part}{graphs}."
    idle = _idle_clause(e, overhead, share, top)
    r_floor = d.get("r_floor") or 0.0
    if floor and r_floor >= 0.7:
        return (f"Near the memory floor: each {_fmt_ms(lat)} step is within "
                f"{1 / r_floor:.2f}× of the {_fmt_ms(floor)} weights+KV floor "
                f"(R_floor {d['r_floor']:.0%}); only fewer bytes (quantization, smaller KV) will help{graphs}.")
    if floor:
        # with a quarter of the step idle or more, the kernels are not all there is to speed up
        focus = "" if idle else "; the kernels, not launches, are what to speed up"
        return (f"Kernel-bound: the GPU is busy {_fmt_ms(busy)} of each {_fmt_ms(lat)} step, "
                f"{busy / floor:.1f}× the {_fmt_ms(floor)} weights+KV floor (R_floor {d['r_floor']:.0%})"
                f"{focus}{graphs}{idle}.")
    return (f"GPU-busy: the GPU is busy {_fmt_ms(busy)} of each {_fmt_ms(lat)} step "
            f"({1 - share:.0%}); {floor_part}{graphs}{idle}.")
