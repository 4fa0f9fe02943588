"""The report's view model: every table the terminal, Markdown and HTML reports draw, built once
as rows of text (the decomposition, the per-step summary, the what-ifs, the real step, the kernel
categories, the top kernels, the stalls, the capture, the quantized step), with the phrases they
share (the context story, the GPU label, byte amounts) and the one number formatter, :func:`fmt`.
A number shown by two renderers is the same string twice.

A row that is part of the term above it, or the total, carries a role ("sub", "total") rather
than an indent, so that each renderer marks it in its own medium. Plain text only (each renderer
escapes for its own medium); formatting, never computing.
"""

from __future__ import annotations

import shlex

from tracekit.breakdown import GAP_CLASSES
from tracekit.contract import CategoryRow, CompareSide, ExplainDoc, SessionsTiming, Summary, Timing


def fmt(v, spec: str = "{:.3f}") -> str:
    return "—" if v is None else spec.format(v)


def fmt_bytes(b) -> str:
    """1.23 GB, 4.00 kB, 8 B; "—" when unknown."""
    if b is None:
        return "—"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= scale:
            return f"{b / scale:.2f} {unit}"
    return f"{b:.0f} B"


def gpu_label(doc: ExplainDoc) -> str:
    """The GPU the trace ran on, or why there is none."""
    name = (doc.get("gpu") or {}).get("name") or (doc.get("source") or {}).get("gpu")
    if name:
        return str(name)
    cap = (doc.get("source") or {}).get("capture") or {}
    if cap.get("device") == "cpu":
        return "none (CPU capture)"
    return "none (no GPU activity in the trace)"


def context_line(doc: ExplainDoc) -> str | None:
    """One sentence for the context lengths behind the numbers (None when no context is known).

    e.g. "prompt 2048 tokens; KV context 2083–2092 tokens over the 10 profiled decode steps
    (floor at 2087, the median step's)".
    """
    c = doc.get("context") or {}
    first, last = c.get("first_step"), c.get("last_step")
    if first is None and c.get("prompt_tokens") is None:
        ctx = (doc.get("model") or {}).get("ctx")
        return None if ctx is None else f"KV context {ctx} tokens at the first profiled step"
    parts = []
    if c.get("prompt_tokens") is not None:
        parts.append(f"prompt {c['prompt_tokens']} tokens")
    if first is not None:
        n = (doc.get("source") or {}).get("decode_steps")
        span = f"{first}" if first == last else f"{first}–{last}"
        over = f" over the {n} profiled decode steps" if n else " over the profiled steps"
        floor = (f" (floor at {c['floor_ctx']}, the median step's)"
                 if c.get("floor_ctx") is not None and first != last else "")
        parts.append(f"KV context {span} tokens{over}{floor}")
    return "; ".join(parts)


def _clocks(c: dict | None) -> str | None:
    if not c:
        return None
    bits = [f"SM {c['sm_mhz']:.0f}" + (f"/{c['max_sm_mhz']:.0f}" if c.get("max_sm_mhz") else "")
            + " MHz" if c.get("sm_mhz") else None,
            f"memory {c['mem_mhz']:.0f} MHz" if c.get("mem_mhz") else None,
            f"{c['temperature_c']:.0f} °C" if c.get("temperature_c") is not None else None,
            f"{c['power_w']:.0f} W" if c.get("power_w") is not None else None]
    return ", ".join(b for b in bits if b) or None


def _timing(t: Timing | None, what: str = "steps") -> str | None:
    if not t or t.get("median_ms") is None:
        return None
    n = t.get("steps", t.get("sessions"))
    return (f"{t['median_ms']:.3f} ms/step (median of {n} {what}; p10 {fmt(t.get('p10_ms'))}, "
            f"p90 {fmt(t.get('p90_ms'))})")


def _sessions_timing(t: SessionsTiming | None) -> str | None:
    """The capture's summary over sessions: the mean of the session medians first (the latency
    ``tracekit compare`` and ``sweep`` report; captures made before it was recorded show their
    median of session medians, labelled so)."""
    if not t or t.get("median_ms") is None:
        return None
    n = t.get("sessions")
    if t.get("mean_ms") is not None:
        head = (f"{t['mean_ms']:.3f} ms/step (mean of {n} session medians, as compare and sweep "
                f"report it; median {fmt(t['median_ms'])}")
    else:
        head = f"{t['median_ms']:.3f} ms/step (median of {n} session medians"
    return f"{head}; p10 {fmt(t.get('p10_ms'))}, p90 {fmt(t.get('p90_ms'))})"


def host_cpus_text(record: object) -> str | None:
    """The capture metadata's ``host_cpus`` (``tracekit capture --cpu-affinity``) as one line:
    the CPUs the process could run on and where its launching thread ran. ``record`` may come
    from anyone's trace: every field is checked."""
    if not isinstance(record, dict) or not isinstance(record.get("policy"), str):
        return None
    policy, allowed = record["policy"], record.get("allowed")
    pinned = {"none": "not pinned", "gpu": "pinned to the GPU's local CPUs"}.get(policy, "pinned")
    gpu = record.get("gpu")
    gpu = gpu if isinstance(gpu, dict) else {}
    local = ""
    if isinstance(gpu.get("local_cpus"), str):
        node = gpu.get("numa_node")
        local = f"; GPU local CPUs {gpu['local_cpus']}" + (
            f" (node {node})" if type(node) is int else "")
    where = []
    thread = record.get("launching_thread")
    for when, at in (thread.items() if isinstance(thread, dict) else ()):
        if isinstance(at, dict) and type(at.get("cpu")) is int:
            node = at.get("numa_node")
            where.append(f"{str(when).replace('_', ' ')} CPU {at['cpu']}"
                         + (f" (node {node})" if type(node) is int else ""))
    return (f"{allowed if isinstance(allowed, str) else 'unknown'} ({pinned}{local})"
            + (f"; launching thread {', '.join(where)}" if where else ""))


def capture_rows(doc: ExplainDoc) -> list[tuple[str, str]]:
    """The capture section as (label, value) rows; empty when tracekit capture did not make the
    trace. The unprofiled ground truth comes first: it is the number a user's step really takes."""
    src = doc.get("source") or {}
    cap = src.get("capture") or {}
    if not cap:
        return []
    rows: list[tuple[str, str | None]] = [
        ("unprofiled step", _timing(cap.get("timing"))),
        ("unprofiled, after the profiled window", _timing(cap.get("timing_after"))),
        ("unprofiled, over sessions", _sessions_timing(cap.get("timing_sessions"))),
    ]
    prof = cap.get("profiled") or {}
    if prof.get("wall_ms_per_step") is not None:
        # (one profiler overhead per report: the real step's, trace median ÷ unprofiled step)
        rows.append(("profiled step", f"{prof['wall_ms_per_step']:.3f} ms/step wall clock over "
                                      f"{prof.get('steps')} steps"))
    mode = cap.get("mode")
    att = cap.get("attention")
    if isinstance(att, dict):  # since --attention: what was asked for and what ran
        ops = att.get("ops")
        if not isinstance(ops, dict):
            ops = {}
        ran = ", ".join(f"{k} ×{v}" for k, v in ops.items())
        mode = f"{mode}; attention {att.get('requested')}" + (f" (ran {ran})" if ran else "")
    elif att:  # older captures: the name only
        mode = f"{mode}; attention {att}"
    rows.append(("mode", mode))
    rows.append(("context", context_line(doc)))
    devices = src.get("devices") or []
    gpu = gpu_label(doc)
    if devices and devices[0].get("sm_count"):
        d = devices[0]
        gpu += (f" ({fmt_bytes(d.get('total_memory_bytes'))}, {d.get('sm_count')} SMs, "
                f"cc {d.get('cc')})")
    rows.append(("GPU", gpu))
    before, after = _clocks(cap.get("gpu_clocks_before")), _clocks(cap.get("gpu_clocks_after"))
    if before or after:
        rows.append(("GPU clocks", f"before {before or '—'}; after {after or '—'}"))
    if (where := host_cpus_text(cap.get("host_cpus"))) is not None:
        rows.append(("host CPUs", where))
    versions = src.get("versions") or {}
    keep = [k for k in ("torch", "transformers", "cuda", "triton", "python")
            if versions.get(k) is not None]
    if keep:
        rows.append(("versions", ", ".join(f"{k} {versions[k]}" for k in keep)))
    cmd = cap.get("command")
    if cmd:
        rows.append(("command", shlex.join(map(str, cmd)) if isinstance(cmd, list) else str(cmd)))
    if cap.get("created"):
        rows.append(("created", str(cap["created"])))
    return [(k, v) for k, v in rows if v]


def category_bytes(c: CategoryRow) -> str | None:
    """The bytes a kernel category moved per step where the trace records them for all its ops,
    "8 B on 2 of 233 ops" where only some ops carry a count, None where none do."""
    b, ops, with_b = c.get("bytes_per_step"), c.get("ops_per_step"), c.get("ops_with_bytes_per_step")
    if not b:
        return None
    if with_b is not None and ops and with_b < ops:
        return f"{fmt_bytes(b)} on {with_b:.0f} of {ops:.0f} ops"
    per_op = f" ({fmt_bytes(b / ops)}/op)" if ops and ops > 1 else ""
    return f"{fmt_bytes(b)}{per_op}"


def quantization_rows(q: dict) -> list[list[str]]:
    """``explain --baseline``'s table, as text: (what, baseline, quantized, change) rows for the
    step, the floor, each kernel category and the linear path's bandwidth."""
    def delta(a, b):
        return fmt(b - a) if a is not None and b is not None else "—"

    rows = [["step ms", fmt(q.get("baseline_step_ms")), fmt(q.get("step_ms")),
             delta(q.get("baseline_step_ms"), q.get("step_ms"))],
            ["floor ms", fmt(q.get("baseline_floor_ms")), fmt(q.get("floor_ms")),
             delta(q.get("baseline_floor_ms"), q.get("floor_ms"))]]
    rows += [[f"{c['category']} ms", fmt(c.get("baseline_ms_per_step")), fmt(c.get("ms_per_step")),
              fmt(c.get("delta_ms"))] for c in q.get("categories") or []]
    lin, base = q.get("linear") or {}, q.get("baseline_linear") or {}
    ratio = q.get("bandwidth_ratio")
    rows.append(["linear path GB/s", fmt(base.get("achieved_gbps"), "{:.0f}"),
                 fmt(lin.get("achieved_gbps"), "{:.0f}"), "—" if ratio is None else f"{ratio:.0%}"])
    return rows



# -- the tables every renderer draws: rows of text, built once ------------------------------------
#: how each renderer names a gap class (the classes themselves: tracekit.breakdown.GAP_CLASSES)
GAP_LABELS = {"host_bound": "host-bound", "launch_latency": "launch latency", "sync": "sync",
              "other": "other"}

#: a row's role in a table: "" a term, "sub" a part of the term above it, "total" the sum
Row = tuple[str, list[str]]


def share(v, total) -> str:
    """``v`` as a share of ``total`` ("12.3%"); "—" when either is unknown or the total is 0."""
    return "—" if v is None or not total else f"{v / total:.1%}"


def step_summary_rows(doc: ExplainDoc) -> list[list[str]]:
    """The per-decode-step table: (metric, median, min–max) rows. The range is "—" where the
    summary has none, empty for the metrics that carry no range."""
    s = doc.get("summary") or {}
    rng = s.get("range") or {}

    def row(label, key, spec="{:.3f}", with_range=True):
        r = rng.get(key) if with_range else None
        span = f"{spec.format(r[0])}–{spec.format(r[1])}" if r else "—" if with_range else ""
        return [label, fmt(s.get(key), spec), span]

    return [row("latency ms", "latency_ms"), row("GPU busy ms", "gpu_busy_ms"),
            row("idle ms", "idle_ms"), row("kernels", "kernels", "{:.0f}"),
            row("launches", "launches", "{:.0f}"),
            row("graph launches", "graph_launches", "{:.0f}", False),
            row("host ms in launch calls", "launch_host_ms", with_range=False),
            *_token_rows(s, row)]


def _token_rows(s: Summary, row) -> list[list[str]]:
    """tokens/s: per sequence, and in all when a step decodes a batch of several."""
    batch = s.get("batch") or 1
    if batch == 1:
        return [row("tokens/s", "tokens_per_s", "{:.1f}", False)]
    return [row(f"tokens/s per sequence (batch {batch})", "tokens_per_s", "{:.1f}", False),
            row(f"tokens/s in all ({batch} sequences)", "tokens_per_s_total", "{:.1f}", False)]


def throughput_note(doc: ExplainDoc) -> str:
    """How the throughput figure is made, with the batch it is for."""
    s = doc.get("summary") or {}
    batch = s.get("batch") or 1
    if batch == 1:
        return "batch 1, 1 ÷ median latency"
    return f"per sequence of a batch of {batch} ({batch}× that in all), 1 ÷ median latency"


def with_interval(v, interval, spec: str = "{:.3f}") -> str:
    """A what-if's point with its interval: "8.456 (8.428–8.722)"; the point alone where the
    interval is unknown or a single value."""
    if v is None or not interval or interval[0] is None or interval[1] is None:
        return fmt(v, spec)
    lo, hi = spec.format(interval[0]), spec.format(interval[1])
    return fmt(v, spec) if lo == hi else f"{fmt(v, spec)} ({lo}–{hi})"


def whatif_rows(doc: dict) -> list[list[str]]:
    """The what-if table: (scenario, ms/step with its interval, speed-up, model and calibration)
    rows. The CUDA-Graphs row's model starts with the program it predicts (these kernels
    replayed, or the graph trace's program). Where the unprofiled step is known, the speed-ups
    are against it and "without the stalls" is the unprofiled step's (one number per what-if:
    the profiled step's own stays in the JSON, ``whatif.no_stalls_ms``)."""
    w = doc.get("whatif") or {}
    u = doc.get("unprofiled") or {}
    uw = u.get("whatif") or {} if u.get("decomposition") else {}
    real = u.get("latency_ms") if uw else None
    floor_model = str(w.get("at_floor_model") or "—")
    if w.get("at_floor_interval_basis"):
        floor_model += f"; interval: {w['at_floor_interval_basis']}"
    graphs_ms = uw.get("cuda_graphs_ms") or w.get("cuda_graphs_ms")
    graphs_iv = uw.get("cuda_graphs_interval_ms") if uw.get("cuda_graphs_ms") else w.get("cuda_graphs_interval_ms")
    graphs_x = uw.get("cuda_graphs_speedup") or w.get("cuda_graphs_speedup")
    floor_x = (real / w["at_floor_ms"] if real and w.get("at_floor_ms") else w.get("at_floor_speedup"))
    rows = [["CUDA Graphs", with_interval(graphs_ms, graphs_iv), fmt(graphs_x, "{:.2f}×"),
             str(w.get("cuda_graphs_model") or "—")],
            ["at the memory floor", with_interval(w.get("at_floor_ms"), w.get("at_floor_interval_ms")),
             fmt(floor_x, "{:.2f}×"), floor_model]]
    if uw.get("no_stalls_ms") is not None:
        src = CALIBRATION_SOURCES.get(u.get("calibration_source") or "", "")
        rows.append(["without the stalls",
                     with_interval(uw["no_stalls_ms"], uw.get("no_stalls_interval_ms")),
                     fmt(uw.get("no_stalls_speedup"), "{:.2f}×"),
                     "the unprofiled step minus its stalls, plus the same ops' usual host time"
                     + (f"; profiler cost {src}" if src else "")
                     + stall_free_measured_text(u.get("stall_free_measured"))])
    elif w.get("no_stalls_ms") is not None and not uw:
        rows.append(["without the stalls",
                     with_interval(w.get("no_stalls_ms"), w.get("no_stalls_interval_ms")),
                     fmt(w.get("no_stalls_speedup"), "{:.2f}×"),
                     "the profiled step minus the stalls' idle, plus the same ops' usual host time"])
    return rows


def stall_free_measured_text(m: object) -> str:
    """"; measured with flash attention forced: …": the step the capture measured without the
    stall (``unprofiled.stall_free_measured``), labelled, to follow the what-if's model; or ""."""
    if not isinstance(m, dict) or not isinstance(m.get("ms"), (int, float)):
        return ""
    per = [x for x in m.get("sessions_ms") or [] if isinstance(x, (int, float))]
    rng = (f"; {len(per)} sessions {fmt_interval([min(per), max(per)])} ms" if len(per) >= 2
           else "")
    return (f"; measured with flash attention forced: {fmt(m['ms'])} ms unprofiled in this "
            f"process{rng}")


def whatif_basis(doc: dict) -> str:
    """Which step the what-if speed-ups are against, for the table's caption."""
    u = doc.get("unprofiled") or {}
    if u.get("decomposition"):
        return f"speed-ups against the unprofiled step ({fmt(u.get('latency_ms'))} ms)"
    return "speed-ups against the profiled step (no unprofiled timing known)"


def fmt_interval(iv) -> str:
    """"a–b" for an interval of ms, "" without one."""
    if not iv or len(iv) != 2 or iv[0] is None or iv[1] is None:
        return ""
    return f"{fmt(iv[0])}–{fmt(iv[1])}"


def fmt_ms_interval(ms, iv) -> str:
    """"x ms (a–b)": a point with its interval where it has one."""
    r = fmt_interval(iv)
    return f"{fmt(ms)} ms ({r})" if r and fmt(iv[0]) != fmt(iv[1]) else f"{fmt(ms)} ms"


def unprofiled_rows(doc: dict) -> list[Row]:
    """The real step's table: (role, [term, profiled ms, unprofiled ms]) rows, the profiled
    decomposition beside the unprofiled one; empty without an unprofiled step. The estimated
    terms carry their interval."""
    u = doc.get("unprofiled")
    if not u:
        return []
    dec, prof, host = u.get("decomposition") or {}, doc.get("decomposition") or {}, doc.get("host") or {}
    classes = prof.get("launch_overhead_by_class_ms") or {}
    other_p = sum(v or 0 for c, v in classes.items() if c != "host_bound") if classes else None

    def est(key: str) -> str:
        r = fmt_interval(dec.get(key.removesuffix("_ms") + "_interval_ms"))
        return f"{fmt(dec.get(key))} ({r})" if r else fmt(dec.get(key))

    rows = [("", "memory floor", fmt(prof.get("floor_ms")), fmt(dec.get("floor_ms"))),
            ("", "kernel excess", fmt(prof.get("kernel_excess_ms")), fmt(dec.get("kernel_excess_ms"))),
            ("", "launch overhead", fmt(prof.get("launch_overhead_ms")), fmt(dec.get("launch_overhead_ms"))),
            ("sub", "launch issue (estimate)", fmt(host.get("launch_issue_ms")), est("launch_issue_ms")),
            ("sub", "stalls (estimate)", fmt(host.get("stall_ms")), est("stall_ms")),
            ("sub", "other idle", fmt(other_p), fmt(dec.get("other_idle_ms"))),
            ("total", "latency", fmt(u.get("profiled_latency_ms")), fmt(u.get("latency_ms")))]
    return [(role, [label, a, b]) for role, label, a, b in rows]


#: what ``unprofiled.calibration_source`` means, in a report
CALIBRATION_SOURCES = {
    "this-capture": "measured on this host by the capture",
    "trace-estimate": "estimated from this trace (not measured on this host)",
    "borrowed": "borrowed from another machine",
}


def unprofiled_lead(doc: dict) -> str:
    """The real step's one-line lead: which unprofiled number, from where, against which
    profiled one, and the sessions' expectation where fresh sessions were timed."""
    u = doc.get("unprofiled") or {}
    basis = u.get("basis") or u.get("source")
    lead = (f"unprofiled {fmt(u.get('latency_ms'))} ms/step ({basis}) vs profiled "
            f"{fmt(u.get('profiled_latency_ms'))} ms/step (the trace's median step): profiler "
            f"overhead {fmt(u.get('profiler_overhead'), '{:.2f}×')}")
    rng = fmt_interval(u.get("sessions_range_ms"))
    if rng and "sessions" in str(u.get("expected_basis")):
        lead += (f"; expect {fmt(u.get('expected_ms'))} ms/step on average "
                 f"({u['expected_basis']}, range {rng})")
    return lead


def unprofiled_whatif_text(doc: dict) -> str:
    """The what-ifs against the unprofiled step, each with its interval, and the calibration."""
    u = doc.get("unprofiled") or {}
    w = u.get("whatif") or {}
    bits = []
    if w.get("cuda_graphs_speedup"):
        bits.append(f"CUDA Graphs ≈{fmt_ms_interval(w.get('cuda_graphs_ms'), w.get('cuda_graphs_interval_ms'))}"
                    f" ({w['cuda_graphs_speedup']:.2f}×)")
    if w.get("no_stalls_speedup"):
        bits.append(f"without the stalls ≈{fmt_ms_interval(w.get('no_stalls_ms'), w.get('no_stalls_interval_ms'))}"
                    f" ({w['no_stalls_speedup']:.2f}×)")
    out = ("what-ifs against the unprofiled step: " + "; ".join(bits)) if bits else ""
    src = CALIBRATION_SOURCES.get(u.get("calibration_source") or "")
    if src and u.get("profiler_cost_us") is not None:
        iv = u.get("profiler_cost_interval_us")
        rng = f" ({iv[0]:.2f}–{iv[1]:.2f})" if iv else ""
        out += ("; " if out else "") + (f"profiler cost {u['profiler_cost_us']:.2f} µs per "
                                        f"recorded event{rng}, {src}")
    dec = u.get("decomposition")
    if u.get("reliable") is False and dec:
        out += ("; " if out else "") + (
            "the split is an estimate with a wide interval, not a measurement"
            if dec.get("stall_ms") is not None else
            "launch issue and stalls are not told apart (the trace has no CPU ops)")
    return out


def decomposition_terms(doc: ExplainDoc | CompareSide) -> list[tuple[str, str, float | None]]:
    """(key, label, ms) of the decomposition in the order they add up to the latency: memory
    floor and kernel excess (GPU busy where there is no floor), then the idle of each gap class the
    document has. The key is the term's colour key; ms may be None or 0 (a waterfall drops those).
    Takes an explain document or one side of a compare document."""
    dec, s = doc.get("decomposition"), doc.get("summary")
    terms: list[tuple[str, str, float | None]]
    if dec and dec.get("floor_ms") is not None:
        terms = [("floor", "memory floor", dec["floor_ms"]),
                 ("kernel_excess", "kernel excess", dec.get("kernel_excess_ms"))]
    else:
        terms = [("gpu_busy", "GPU busy", s.get("gpu_busy_ms") if s else None)]
    by_class = dec.get("launch_overhead_by_class_ms") if dec else None
    if not by_class:
        return terms
    return terms + [(c, f"idle: {GAP_LABELS[c]}", by_class[c]) for c in GAP_CLASSES if c in by_class]


def decomposition_rows(doc: ExplainDoc) -> list[Row]:
    """The decomposition table: (role, [term, ms, share of latency]) rows — the terms of
    :func:`decomposition_terms` with the launch overhead (the gap classes' sum) above its classes,
    then the latency; empty without a latency."""
    dec = doc.get("decomposition") or {}
    lat = dec.get("latency_ms")
    if lat is None:
        return []
    rows: list[Row] = []
    for key, label, v in decomposition_terms(doc):
        rows.append(("sub" if key in GAP_CLASSES else "", [label, fmt(v), share(v, lat)]))
        if key in ("kernel_excess", "gpu_busy"):
            over = dec.get("launch_overhead_ms")
            rows.append(("", ["launch overhead (GPU idle)", fmt(over), share(over, lat)]))
    rows.append(("total", ["latency", fmt(lat), "100%" if lat else "—"]))
    return rows


def category_rows(doc: ExplainDoc) -> list[list[str]]:
    """The kernel-category table: (category, ms/step, share, ops/step, bytes/step, achieved
    GB/s) rows, largest first as the document orders them. bytes/step is "—" where the trace
    records none (see :func:`has_bytes`)."""
    return [[str(c.get("category")), fmt(c.get("ms_per_step")), fmt(c.get("share"), "{:.1%}"),
             fmt(c.get("ops_per_step"), "{:.0f}"), category_bytes(c) or "—",
             fmt(c.get("achieved_gbps"), "{:.0f}")] for c in doc.get("kernels_by_category") or []]


def has_bytes(rows: list[list[str]]) -> bool:
    """Whether any :func:`category_rows` row has recorded bytes (a byte column is worth drawing)."""
    return any(r[4] != "—" for r in rows)


def top_kernel_rows(doc: ExplainDoc, n: int | None = None) -> list[list[str]]:
    """The top-kernels table: (name, kind, category, ms/step, calls/step, median µs) rows, the
    first ``n``."""
    return [[str(k.get("name")), fmt(k.get("kind"), "{}"), fmt(k.get("category"), "{}"),
             fmt(k.get("ms_per_step")),
             fmt(k.get("calls_per_step"), "{:.0f}"), fmt(k.get("median_us"), "{:.2f}")]
            for k in (doc.get("top_kernels") or [])[:n]]


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 21st."""
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def stall_rows(doc: ExplainDoc, n: int | None = None) -> list[list[str]]:
    """The host-stall table's numbers: (op, ms/step, per step, share, call in step) rows for the
    first ``n`` stalls; each renderer adds the cause and advice in the length it has room for."""
    out = []
    host = doc.get("host")
    for st in ((host.get("stalls") if host else None) or [])[:n]:
        occ = st.get("occurrence")
        where = f"{ordinal(occ)} of {st['of_per_step']}" if occ else "—"
        out.append([str(st["op"]), fmt(st["ms_per_step"]), fmt(st["per_step"], "{:.1f}"),
                    fmt(st.get("share"), "{:.0%}"), where])
    return out
