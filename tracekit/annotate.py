"""Write tracekit's findings back into the trace, as tracks Perfetto and chrome://tracing show.

People read traces in ui.perfetto.dev and chrome://tracing. ``tracekit annotate`` returns the trace
they already have open with three extra tracks in a process named "tracekit":

    tracekit ▸ decode steps   ▕ step 0 (decode) ▏ step 1 (decode) ▏ …   breakdown in args
    tracekit ▸ GPU idle gaps  ▕▌ ▌▌ ▌ host_bound: aten::_cudnn_attention_forward ▌ ▌▌▕  one per gap
    tracekit ▸ GPU busy %     counter, one value per step

Every added event is plain Trace Event Format: complete events (``ph: "X"``) with ``ts``/``dur``
in µs on the trace's own clock, a counter (``ph: "C"``), and ``M`` metadata events naming the
process and its tracks. They carry the category ``tracekit``, which Kineto readers (tracekit
itself, HTA) do not take for GPU work, so the annotated trace gives the same numbers as the input.

The original bytes are kept: the new events are spliced in after the last original event, never
re-serialized (a float round trip can move a nanosecond timestamp). Host op names come from the
trace and are untrusted: in the slice names tracekit writes (what the viewer shows on the track)
every control or bidi character becomes a visible escape (:func:`tracekit.report.safe.clean_text`);
``args.host_op`` keeps the name as data, as ``--json`` does. Only Kineto (torch.profiler)
JSON can be annotated; an Nsight Systems export is a database, not an event list.

    $ tracekit annotate trace.json.gz -o trace.tracekit.json.gz
"""

from __future__ import annotations

from pathlib import Path

import msgspec
from isal import igzip

from tracekit.errors import BadInput, BadUsage, NoStepsError
from tracekit.fileio import atomic_write_bytes
from tracekit.report.safe import clean_text

CATEGORY = "tracekit"
#: the top-level key that marks an annotated trace (and what annotated it)
MARK = "tracekit_annotations"
TRACKS = {"steps": (1, "decode steps"), "gaps": (2, "GPU idle gaps"), "busy": (3, "GPU busy %")}
#: Chrome's reserved colour names per gap class (Perfetto colours by name)
GAP_CNAME = {"host_bound": "terrible", "launch_latency": "yellow", "sync": "rail_load",
             "other": "grey"}

_SQLITE_MAGIC = b"SQLite format 3\x00"


def _us(ns: int) -> msgspec.Raw:
    """Integer ns as an exact µs JSON number with a nanosecond fraction (no float on the way)."""
    sign = "-" if ns < 0 else ""
    q, r = divmod(abs(int(ns)), 1000)
    return msgspec.Raw(f"{sign}{q}.{r:03d}".encode() if r else f"{sign}{q}".encode())


def check_paths(trace: str | Path, output: str | Path, *, force: bool = False) -> None:
    """Refuse an output that is the input trace."""
    src, out = Path(trace), Path(output)
    if not src.is_file():
        raise BadInput(f"{src} does not exist" if not src.exists() else f"{src} is not a file")
    if out.resolve() == src.resolve() or (out.exists() and out.samefile(src)):
        raise BadUsage(f"the output {out} is the input trace; write the annotated trace to a new "
                       "file (-o OTHER.json.gz)")
    # an existing output is replaced, as every output option does (tracekit/fileio.py); ``force``
    # is kept for callers written when annotate asked for it


def _top_level(data: bytes, path: Path) -> dict[str, msgspec.Raw]:
    try:
        top = msgspec.json.decode(data, type=dict[str, msgspec.Raw])
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise BadInput(f"{path} is not a JSON object; only Kineto (torch.profiler) JSON traces "
                       "can be annotated") from None
    if "traceEvents" not in top:
        raise BadInput(f"{path} is not a torch.profiler trace: it has no 'traceEvents' list")
    if MARK in top:
        raise BadInput(f"{path} is already annotated by tracekit; annotate the original trace")
    return top


def events(explanation) -> list[dict]:
    """The Trace Event Format events that carry an explanation: metadata, steps, gaps, counters."""
    from tracekit.breakdown import gap_rows, step_starts

    pid = _free_pid(set((explanation.trace.meta or {}).get("pids") or ()))
    out: list[dict] = [
        {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "cat": CATEGORY,
         "args": {"name": "tracekit"}},
        {"ph": "M", "name": "process_sort_index", "pid": pid, "tid": 0, "cat": CATEGORY,
         "args": {"sort_index": -1}},
    ]
    for tid, name in TRACKS.values():
        out.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "cat": CATEGORY,
                    "args": {"name": name}})
        out.append({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": tid,
                    "cat": CATEGORY, "args": {"sort_index": tid}})
    steps = explanation._steps
    if steps is None or not explanation.trace.has_gpu:
        return out
    starts = step_starts(steps)
    for r in explanation.step_rows:
        t0 = starts.get(r["step"])
        if t0 is None:
            continue
        dur_ms = r["latency_ms"] if r["latency_ms"] is not None else r["span_ms"]
        args = {k: r.get(k) for k in ("kind", "latency_ms", "gpu_busy_ms", "idle_ms",
                                      "idle_by_class_ms", "kernels", "launches",
                                      "graph_launches", "ctx", "floor_ms", "kernel_excess_ms",
                                      "r_floor")}
        out.append({"ph": "X", "cat": CATEGORY, "name": f"step {r['step']} ({r['kind']})",
                    "pid": pid, "tid": TRACKS["steps"][0], "ts": _us(t0),
                    "dur": _us(round(dur_ms * 1e6)), "args": args})
        if r.get("gpu_busy_ms") is not None and dur_ms:
            out.append({"ph": "C", "cat": CATEGORY, "name": "GPU busy %", "pid": pid,
                        "tid": TRACKS["busy"][0], "ts": _us(t0),
                        "args": {"busy %": round(100 * r["gpu_busy_ms"] / dur_ms, 2)}})
    stalls = _stall_starts(explanation)
    h = getattr(explanation, "_host", None)
    for g in gap_rows(explanation.trace, steps, h.gap_ops() if h is not None else None):
        cls, op = g["class"], g["host_op"]
        stall = (g["step"], g["start_ns"]) in stalls
        shown = clean_text(op) if op else op  # a slice name is shown: no raw control/bidi
        name = f"stall: {shown}" if stall else (f"{cls}: {shown}" if op else cls)
        out.append({"ph": "X", "cat": CATEGORY, "name": name, "pid": pid,
                    "tid": TRACKS["gaps"][0], "ts": _us(g["start_ns"]),
                    "dur": _us(round(g["duration_us"] * 1e3)), "cname": GAP_CNAME.get(cls, "grey"),
                    "args": {"class": cls, "stall": stall, "step": g["step"],
                             "duration_us": g["duration_us"], "ended_by": g["ended_by"],
                             "host_op": op}})
    return out


def _stall_starts(explanation) -> set[tuple[int, int]]:
    h = getattr(explanation, "_host", None)
    if h is None:
        return set()
    g = h.gaps_t.take(h.gaps_t["stall"])
    return set(zip(g["step"].tolist(), g["start_ns"].tolist()))


def _free_pid(pids: set[int]) -> int:
    """A process id no event of the trace uses (tracekit's tracks must not join a real process)."""
    return max(pids | {0}) + 1


def annotate(trace: str | Path, output: str | Path, *, force: bool = False, **options) -> Path:
    """Write ``trace`` with tracekit's findings added to ``output`` (gzip if it ends in ``.gz``).

    ``options`` are :func:`tracekit.explain`'s (``step_marker``, ``model``, ``ctx``, ...).
    """
    from tracekit.explain import explain
    from tracekit.trace import read_bytes
    from tracekit.trace.source import open_source

    src, out = Path(trace), Path(output)
    check_paths(src, out, force=force)
    with open_source(src) as f:
        magic = f.peek(16)
    if magic == _SQLITE_MAGIC:
        raise BadInput(f"{src} is an Nsight Systems export; only Kineto (torch.profiler) JSON "
                       "traces can be annotated (open the .nsys-rep in Nsight Systems instead)")
    data = read_bytes(src)
    top = _top_level(data, src)
    pids = _event_pids(top["traceEvents"])
    try:
        e = explain(src, **options)
    except NoStepsError as exc:  # say which file: the error line is all the user sees
        msg = str(exc)
        raise NoStepsError(msg if msg.startswith(str(src)) else f"{src}: {msg}") from None
    assert e.trace is not None  # explain() keeps the trace it read
    e.trace.meta["pids"] = sorted(pids)
    added = events(e)
    body = bytes(top["traceEvents"]).rstrip()
    if not body.endswith(b"]"):
        raise BadInput(f"{src}: 'traceEvents' is not a list")
    head = body[:-1].rstrip()
    sep = b"" if head.endswith(b"[") else b","
    new = msgspec.json.encode(added)[1:-1]
    top["traceEvents"] = msgspec.Raw(head + (sep + new if added else b"") + b"]")
    top[MARK] = msgspec.Raw(msgspec.json.encode({
        "tracekit_version": e.to_dict()["tracekit_version"], "category": CATEGORY,
        "events": len(added), "tracks": [name for _, name in TRACKS.values()],
        "source": str(src.name)}))
    doc = msgspec.json.encode(top)
    if out.name.endswith(".gz"):
        doc = igzip.compress(doc, compresslevel=2, mtime=0)
    return atomic_write_bytes(out, doc)


def _event_pids(raw: msgspec.Raw) -> set[int]:
    class _Pid(msgspec.Struct):
        pid: int | str | None = None

    try:
        evs = msgspec.json.decode(bytes(raw), type=list[_Pid])
    except (msgspec.DecodeError, msgspec.ValidationError):
        return set()
    return {e.pid for e in evs if isinstance(e.pid, int)}
