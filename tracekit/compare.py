"""A/B of two decode setups: the speed-up of B over A with a confidence interval, and what moved.

Each side is one trace, several traces (a directory or a glob), or one multi-session capture. From
each side tracekit takes

* the **step timings** that decide the speed-up: the unprofiled steps a ``tracekit capture``
  timed with CUDA events, one list per session (a capture made with ``--sessions N`` holds N;
  an older capture holds one, ``timing.unprofiled_ms``). A trace without them (a plain
  torch.profiler trace) falls back to its *profiled* step latencies on both sides, and the
  result says so loudly: the profiler inflates host-bound steps 1.8–2.3×;
* the **explanation** of its profiled trace (the first trace of the side that has profiled decode
  steps), for the per-term deltas: floor, kernel excess, launch overhead by gap class, host
  launch-issue time and stalls (when the explanation has them), kernel categories, kernels and
  launches per step.

The speed-up is latency(A) ÷ latency(B) (> 1: B is faster) with a 95 % bootstrap interval
(:mod:`tracekit.bootstrap`): over sessions when both sides have at least two, over steps
otherwise (a statement about those particular sessions, and the result says so). Two sides of
different models, GPUs, contexts or dtypes still compare, with a warning.

    tracekit compare eager.json.gz graphs.json.gz
    tracekit compare 'runs/eager_*.json.gz' runs/graphs/ --json

    >>> from tracekit.compare import compare
    >>> c = compare("eager.json.gz", "graphs.json.gz")   # doctest: +SKIP
    >>> c.to_dict()["speedup"], c.to_dict()["ci95"]        # doctest: +SKIP
"""

from __future__ import annotations

import glob
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from tracekit import __version__
from tracekit.bootstrap import LEVEL, RESAMPLES, SEED, latency_ci, pooled, ratio_ci, session_medians
from tracekit.breakdown import GAP_CLASSES
from tracekit.contract import CompareDoc, CompareSide, ExplainDoc, SideIdentity, Term
from tracekit.errors import BadInput, BadUsage, TraceFormatError
from tracekit.jsonio import json_safe
from tracekit.trace.capture_meta import read_capture_meta

if TYPE_CHECKING:
    from tracekit.trace import Trace

SCHEMA: Final = "tracekit.compare/1"
BASES = ("auto", "sessions", "steps")
TRACE_SUFFIXES = (".json", ".json.gz", ".sqlite", ".sqlite.gz")


# -- one side -----------------------------------------------------------------------------------
@dataclass
class Side:
    """What one side of the A/B holds: its files, step timings per session, and an explanation."""

    label: str
    files: list[str]
    sessions: list[list[float]]  # unprofiled step times (ms), one list per session
    unprofiled: bool  # False: ``sessions`` could not be filled from unprofiled timings
    profiled_steps: list[float]  # profiled decode-step latencies (ms) of the explained trace
    explanation: ExplainDoc | None  # Explanation.to_dict() of the side's profiled trace, or None
    meta: dict | None  # capture metadata of the side's first file, or None
    notes: list[str] = field(default_factory=list)


def side_files(spec: str | Path | list) -> list[Path]:
    """A side's files: a list of paths, a file, a directory (its traces) or a glob pattern."""
    if isinstance(spec, (list, tuple)):
        return [p for s in spec for p in side_files(s)]
    text = str(spec)
    p = Path(text)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(TRACE_SUFFIXES))
        if not files:
            raise BadInput(f"{text}: the directory holds no traces (*.json, *.json.gz, *.sqlite[.gz])")
        return files
    if not p.exists() and glob.has_magic(text):
        files = sorted(Path(f) for f in glob.glob(text) if Path(f).is_file())
        if not files:
            raise BadInput(f"{text}: the pattern matches no files")
        return files
    if not p.exists():
        raise BadInput(f"{text} does not exist")
    return [p]


def _capture_sessions(meta: dict, file: str) -> list[list[float]] | None:
    """Per-session unprofiled step times from capture metadata, or None if it has none.

    ``sessions.runs[i].timing.unprofiled_ms`` (``--sessions N`` captures), else one session of
    ``timing.unprofiled_ms`` (captures made before sessions existed)."""
    sess = meta.get("sessions")
    if isinstance(sess, dict) and sess.get("runs"):
        if not isinstance(sess["runs"], list):
            raise BadInput(f"{file}: key tracekit.sessions.runs is not a list; re-capture with "
                           "tracekit capture --sessions N")
        out = []
        for i, run in enumerate(sess["runs"]):
            ms = _get(run, "timing", "unprofiled_ms")
            if not _numbers(ms):
                raise BadInput(f"{file}: key tracekit.sessions.runs[{i}].timing.unprofiled_ms is "
                               "missing or not a list of numbers; re-capture with tracekit capture")
            out.append([float(x) for x in ms])
        return out
    ms = _get(meta, "timing", "unprofiled_ms")
    if ms is None:
        return None
    if not _numbers(ms):
        raise BadInput(f"{file}: key tracekit.timing.unprofiled_ms is not a list of numbers")
    return [[float(x) for x in ms]]


def _numbers(xs) -> bool:
    return (isinstance(xs, list) and len(xs) > 0 and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in xs))


def _read_meta(path: Path) -> dict | None:
    """Capture metadata without parsing the events (a ``--profile-session none`` capture has none)."""
    if not path.name.endswith((".json", ".json.gz")):
        return None
    try:
        meta = read_capture_meta(path)
    except (BadInput, ValueError):  # the full read of this file says what is wrong with it
        return None
    return meta if isinstance(meta, dict) else None


def load_side(label: str, spec, **explain_kw) -> Side:
    """Read one side: every file's sessions, and the first profiled trace's explanation."""
    from tracekit.explain import explain
    from tracekit.trace import load

    files = side_files(spec)
    sessions: list[list[float]] = []
    unprofiled = True
    explanation: ExplainDoc | None = None
    meta: dict | None = None
    profiled_steps: list[float] = []
    notes: list[str] = []
    for path in files:
        name = str(path)
        if explanation is not None:  # later files only add sessions: read their metadata alone
            m = _read_meta(path)
            got = _capture_sessions(m, name) if m else None
            if got is not None:
                sessions.extend(got)
                continue
        tr: Trace | None
        cap: dict | None
        try:
            tr = load(path)
        except TraceFormatError as exc:
            m = _read_meta(path)  # a timing-only capture: metadata, no events
            if not m or _capture_sessions(m, name) is None:
                raise BadInput(f"{name}: {_strip(exc, name)}") from None
            tr, cap = None, m
        else:
            cap = tr.capture
        meta = meta or cap
        got = _capture_sessions(cap, name) if cap else None
        if got is None:
            unprofiled = False
        else:
            sessions.extend(got)
        if tr is not None and explanation is None:
            try:
                explanation = explain(tr, **explain_kw).to_dict()
            except BadInput as exc:
                if got is None:
                    raise BadInput(f"{name}: {_strip(exc, name)}") from None
                notes.append(f"{name}: not explained ({_strip(exc, name)})")
            else:
                profiled_steps = [r["latency_ms"] for r in explanation["steps"]
                                  if r["kind"] == "decode" and r["latency_ms"] is not None]
                if got is None and not profiled_steps:
                    raise BadInput(f"{name}: no decode step with a latency (a step needs a "
                                   "successor); profile at least two decode steps")
    return Side(label, [str(f) for f in files], sessions, unprofiled, profiled_steps, explanation,
                meta, notes)


def _strip(exc: Exception, name: str) -> str:
    """The exception's message without a leading copy of the file name."""
    msg = str(exc)
    return msg[len(name):].lstrip(": ") if msg.startswith(name) else msg


# -- the comparison -----------------------------------------------------------------------------
@dataclass
class Comparison:
    """Everything ``tracekit compare`` says. ``to_dict()`` is the JSON contract (tracekit.compare/1)."""

    doc: CompareDoc

    def to_dict(self) -> CompareDoc:
        return self.doc


def compare(a, b, *, basis: str = "auto", resamples: int = RESAMPLES, seed: int = SEED,
            **explain_kw) -> Comparison:
    """Compare side A with side B (each: a trace, a list, a directory or a glob; see the module).

    ``basis``: ``auto`` (sessions when both sides have ≥ 2, else steps), ``sessions`` (an error if
    a side lacks unprofiled timings or has fewer than two sessions) or ``steps``. Keyword
    arguments left over go to :func:`tracekit.explain.explain` for both sides (``model=``,
    ``gpu=``, ...)."""
    if basis not in BASES:
        raise BadUsage(f"unknown --basis {basis!r}; choose one of: {', '.join(BASES)}")
    if resamples < 100:
        raise BadUsage(f"--resamples must be at least 100, got {resamples}")
    sa, sb = load_side("A", a, **explain_kw), load_side("B", b, **explain_kw)
    warnings: list[str] = []
    if basis == "sessions":
        for s in (sa, sb):
            _require_sessions(s)
    use_unprofiled = sa.unprofiled and sb.unprofiled and sa.sessions and sb.sessions
    if use_unprofiled:
        xa, xb, source = sa.sessions, sb.sessions, "unprofiled"
    else:
        missing = [s for s in (sa, sb) if not (s.unprofiled and s.sessions)]
        for s in (sa, sb):
            if not s.profiled_steps:
                raise BadInput(f"{s.files[0]}: no decode step latencies to compare")
        xa, xb, source = [sa.profiled_steps], [sb.profiled_steps], "profiled"
        warnings.append(
            "PROFILED latency: " + " and ".join(f"side {s.label} ({s.files[0]})" for s in missing)
            + " has no unprofiled step timings, so the speed-up compares step times measured "
            "under the profiler, which inflates host-bound steps 1.8–2.3×; capture both sides "
            "with tracekit capture for the ground truth")
    try:
        iv = ratio_ci(xa, xb, basis=basis, resamples=resamples, seed=seed)
        la = latency_ci(xa, basis=iv.basis, resamples=resamples, seed=seed)
        lb = latency_ci(xb, basis=iv.basis, resamples=resamples, seed=seed)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    if iv.basis == "steps" and source == "unprofiled" and basis == "auto":
        warnings.append(
            f"CI over steps, not sessions: side A has {_plural(len(xa), 'session')} and side B "
            f"{_plural(len(xb), 'session')}; the interval says how well these sessions were "
            "measured, not how much a fresh session varies (capture with --sessions N, N >= 2)")
    warnings += _mismatch_warnings(sa, sb)
    for s in (sa, sb):
        warnings += [f"{s.label}: {w}" for w in (s.explanation["warnings"] if s.explanation else [])]
        warnings += [f"{s.label}: {n}" for n in s.notes]
    doc: CompareDoc = {
        "schema": SCHEMA, "tracekit_version": __version__,
        "a": _side_doc(sa, xa, la, source), "b": _side_doc(sb, xb, lb, source),
        "speedup": iv.value, "ci95": [iv.low, iv.high] if iv.low is not None and iv.high is not None else None,
        "basis": iv.basis, "n_a": len(xa) if iv.basis == "sessions" else len(pooled(xa)),
        "n_b": len(xb) if iv.basis == "sessions" else len(pooled(xb)),
        "latency_source": source, "statistic": iv.statistic,
        "bootstrap": {"method": "expanded percentile", "level": LEVEL, "resamples": resamples,
                      "seed": seed, "resampled": iv.basis},
        "terms": terms(sa.explanation, sb.explanation),
        "warnings": warnings,
        "verdict": "",  # below, from the rest
    }
    doc["verdict"] = verdict(doc)
    return Comparison(json_safe(doc))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _require_sessions(s: Side) -> None:
    if not s.unprofiled or not s.sessions:
        bad = s.files[0]
        raise BadInput(f"{bad}: --basis sessions needs unprofiled step timings (key "
                       "tracekit.timing.unprofiled_ms or tracekit.sessions.runs) and this trace "
                       "has none; capture it with tracekit capture --sessions N, or drop --basis")
    if len(s.sessions) < 2:
        raise BadInput(f"{s.files[0]}: --basis sessions needs at least 2 sessions per side and "
                       f"side {s.label} has {len(s.sessions)} (key tracekit.sessions.runs); "
                       "capture with --sessions N (N >= 2), pass more traces, or use --basis steps")


def _identity(s: Side) -> SideIdentity:
    """Model, GPU, context, mode, dtype and attention of a side: capture metadata first."""
    e, m = s.explanation, s.meta  # m: a file's own metadata, any JSON at all
    return {
        "model": _get(m, "model_name") or _get(e, "model", "name"),
        "gpu": _get(m, "gpu", "name") or _get(e, "gpu", "name"),
        "ctx": m.get("ctx") if isinstance(m, dict) and "ctx" in m else _get(e, "model", "ctx"),
        "mode": _get(m, "mode"),
        # a quantized capture: its weight format (the floor counts it), e.g. int4-tinygemm
        "dtype": _get(m, "quant", "floor_dtype") or _get(m, "dtype") or _get(e, "model", "dtype"),
        "attention": _attention(_get(m, "attention")),
    }


def _side_doc(s: Side, x: list[list[float]], lat, source: str) -> CompareSide:
    e = s.explanation
    steps = pooled(x)
    q10, q90 = _quantile(steps, 0.1), _quantile(steps, 0.9)
    return {
        "label": s.label, "files": s.files, **_identity(s),
        "sessions": len(x), "steps": len(steps),
        "latency_source": source,
        "latency_ms": lat.value,
        "latency_ci95_ms": [lat.low, lat.high] if lat.low is not None else None,
        "session_medians_ms": session_medians(x).tolist(),
        "p10_ms": q10, "p90_ms": q90,
        "tokens_per_s": 1e3 / lat.value if lat.value else None,
        "verdict": e["verdict"] if e else None,
        "summary": e["summary"] if e else None,
        "decomposition": e["decomposition"] if e else None,
        "floor": e["floor"] if e else None, "unprofiled": e["unprofiled"] if e else None,
        "host": e["host"] if e else None,
        "explained_file": e["source"]["file"] if e else None,
    }


def _attention(a) -> str | None:
    if isinstance(a, dict):
        return a.get("requested")
    return a


def _quantile(x, q: float) -> float | None:
    import numpy as np

    return float(np.quantile(x, q)) if len(x) else None


def _mismatch_warnings(sa: Side, sb: Side) -> list[str]:
    a, b = _identity(sa), _identity(sb)
    out = []
    checked: tuple[tuple[Literal["model", "gpu", "ctx", "dtype"], str], ...] = (
        ("model", "models"), ("gpu", "GPUs"), ("ctx", "contexts"), ("dtype", "dtypes"))
    for key, what in checked:
        if key == "dtype" and (_get(sa.meta, "quant") or _get(sb.meta, "quant")):
            continue  # a quantized capture against bf16: the difference is the point
        if a[key] is not None and b[key] is not None and a[key] != b[key]:
            out.append(f"different {what}: A is {a[key]}, B is {b[key]}; the speed-up mixes that "
                       "difference with the one you meant to measure")
    for s in (sa, sb):
        if len(s.files) > 1:
            out += _within_side(s)
    return out


def _within_side(s: Side) -> list[str]:
    from tracekit.trace import load

    seen: dict[str, set[str]] = {}
    for f in s.files:
        m = _read_meta(Path(f))
        if m is None:
            try:
                m = load(f).capture
            except TraceFormatError:
                m = None
        m = m or {}
        for key in ("model_name", "ctx", "mode"):
            seen.setdefault(key, set()).add(str(m.get(key)))
        seen.setdefault("attention", set()).add(str(_attention(m.get("attention"))))
    names = {"model_name": "models", "ctx": "contexts", "mode": "modes", "attention": "attentions"}
    return [f"side {s.label} mixes {names[key]}: {', '.join(sorted(v))}"
            for key, v in seen.items() if len(v) > 1]


# -- the per-term deltas ------------------------------------------------------------------------
def _get(d: Any, *path: str) -> Any:
    for k in path:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _term_specs(ea: ExplainDoc | None,
                eb: ExplainDoc | None) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """(key, label, group, path into the explanation) for every term both sides may have."""
    specs: list[tuple[str, str, str, tuple[str, ...]]] = [
        ("latency_ms", "latency (profiled)", "decomposition", ("decomposition", "latency_ms")),
        ("floor_ms", "memory floor", "decomposition", ("decomposition", "floor_ms")),
        ("kernel_excess_ms", "kernel excess", "decomposition", ("decomposition", "kernel_excess_ms")),
        ("launch_overhead_ms", "launch overhead", "decomposition",
         ("decomposition", "launch_overhead_ms")),
    ]
    specs += [(f"launch_overhead_{c}_ms", f"  {c.replace('_', ' ')}", "launch_overhead",
               ("decomposition", "launch_overhead_by_class_ms", c)) for c in GAP_CLASSES]
    specs += [
        ("host_launch_issue_ms", "host: launch issue", "host", ("host", "launch_issue_ms")),
        ("host_stall_ms", "host: stalls", "host", ("host", "stall_ms")),
        ("host_us_per_launch", "host: µs per launch", "host", ("host", "us_per_launch")),
        # the explained trace's own process (its decomposition's basis); the headline's latency
        # is the statistic over every session
        ("unprofiled_latency_ms", "unprofiled latency (the profiled session)", "unprofiled",
         ("unprofiled", "latency_ms")),
        ("unprofiled_launch_overhead_ms", "unprofiled launch overhead", "unprofiled",
         ("unprofiled", "decomposition", "launch_overhead_ms")),
        ("unprofiled_launch_issue_ms", "unprofiled: launch issue", "unprofiled",
         ("unprofiled", "decomposition", "launch_issue_ms")),
        ("unprofiled_stall_ms", "unprofiled: stalls", "unprofiled",
         ("unprofiled", "decomposition", "stall_ms")),
        ("unprofiled_no_stalls_ms", "unprofiled: without the stalls (what-if)", "unprofiled",
         ("unprofiled", "whatif", "no_stalls_ms")),
        ("unprofiled_cuda_graphs_ms", "unprofiled: CUDA Graphs (what-if)", "unprofiled",
         ("unprofiled", "whatif", "cuda_graphs_ms")),
        ("gpu_busy_ms", "GPU busy", "gpu", ("summary", "gpu_busy_ms")),
        ("r_floor", "R_floor (profiled)", "gpu", ("decomposition", "r_floor")),
        ("kernels", "kernels per step", "counts", ("summary", "kernels")),
        ("launches", "launches per step", "counts", ("summary", "launches")),
        ("graph_launches", "graph launches per step", "counts", ("summary", "graph_launches")),
    ]
    cats: list[str] = []
    for e in (ea, eb):
        for r in (e["kernels_by_category"] if e else []):
            if r["category"] not in cats:
                cats.append(r["category"])
    specs += [(f"category_{c}_ms", f"kernels: {c}", "categories", ("_cat", c)) for c in cats]
    return specs


def _value(e: ExplainDoc | None, path: tuple[str, ...]):
    if e is None:
        return None
    if path[0] == "_cat":
        rows = [r for r in e.get("kernels_by_category") or [] if r["category"] == path[1]]
        return rows[0]["ms_per_step"] if rows else 0.0
    return _get(e, *path)


def terms(ea: ExplainDoc | None, eb: ExplainDoc | None) -> dict[str, Term]:
    """``{key: {label, group, a, b, delta (b − a), ratio (b ÷ a)}}``; terms neither side has are
    left out (a key present on one side only is kept, with null on the other)."""
    out: dict[str, Term] = {}
    for key, label, group, path in _term_specs(ea, eb):
        va, vb = _value(ea, path), _value(eb, path)
        if va is None and vb is None:
            continue
        out[key] = {
            "label": label.strip(), "group": group, "a": va, "b": vb,
            "delta": vb - va if va is not None and vb is not None else None,
            "ratio": vb / va if va and vb is not None else None,
        }
    return out


# -- the sentence -------------------------------------------------------------------------------
def verdict(doc: CompareDoc) -> str:
    """One sentence: which side is faster, by how much, how sure, and on what basis."""
    s, ci = doc["speedup"], doc["ci95"]
    if s is None:
        return "No speed-up: a side has no step latency."
    faster, k = ("B", s) if s >= 1 else ("A", 1 / s)
    band = ""
    if ci:
        lo, hi = (ci[0], ci[1]) if s >= 1 else (1 / ci[1], 1 / ci[0])
        band = f" (95% CI {lo:.3f}–{hi:.3f}×, over {doc['basis']})"
        if ci[0] <= 1 <= ci[1]:
            band += "; the interval includes 1×: no significant difference"
    la, lb = doc["a"]["latency_ms"], doc["b"]["latency_ms"]
    src = "unprofiled" if doc["latency_source"] == "unprofiled" else "PROFILED"
    moved = _biggest_move(doc["terms"])
    return (f"{faster} is {k:.3f}× faster{band}: {la:.3f} → {lb:.3f} ms per step ({src})"
            + (f"; the largest change is {moved}" if moved else "") + ".")


def _biggest_move(t: dict[str, Term]) -> str | None:
    cand = [(v, d) for k, v in t.items() if v["group"] in ("decomposition", "launch_overhead", "host")
            and k != "latency_ms" and (d := v["delta"]) is not None]
    if not cand:
        return None
    v, d = max(cand, key=lambda vd: abs(vd[1]))
    return f"{v['label']} ({d:+.3f} ms)"


