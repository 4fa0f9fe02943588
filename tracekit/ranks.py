"""Multi-rank decode (tensor parallel, or any set of traces one per GPU of one job).

Each rank writes its own trace, on its own clock. A decode step of a TP model is as slow as its
slowest rank: every layer ends in a collective (all-reduce) that no rank leaves before the last
one arrives. So, per step, the question is *which rank bounds it* and *how much of each rank's
step is communication*.

* **Per-rank steps** — each trace's steps, found as for one trace (:mod:`tracekit.steps`), and
  matched across ranks by their order (step *i* of every rank is the same forward pass).
* **Alignment** — the *k*-th collective kernel of every rank is the same collective (NCCL runs a
  communicator's collectives in the same order on every rank), and a collective ends at nearly
  the same moment on every rank (no rank leaves before all have sent). A rank's clock offset
  against rank 0 is the median over *k* of (end of its *k*-th collective − end of rank 0's).
* **Bounding rank** — on the aligned clock, a rank *arrives* at a collective when its kernel
  starts; the others wait in the collective until the last one arrives. A rank's **wait** in a
  step is the sum over the step's collectives of (last arrival − its arrival). The rank that
  bounds the step is the one that waited least (ties: the lowest rank): everyone else waited
  for it.
* **Communication in the decomposition** — per rank and step: ``communication_ms`` is the time
  the GPU ran only communication kernels (the union of collective kernels minus the time any
  other op ran beside them), so that

      latency = floor + kernel_excess + communication + launch_overhead

  with launch_overhead = latency − GPU busy (idle, as for one trace) and kernel_excess = busy −
  communication − floor. ``comm_wait_ms`` (the wait above) says how much of the collectives was
  waiting for another rank rather than moving data.
* **TP-aware floor** — each rank streams its shard: weights ÷ tp, and the KV cache ÷ tp when
  the KV heads split evenly over the ranks (with fewer KV heads than ranks, each rank holds a
  whole head: KV ÷ kv_heads). Embeddings and norms are counted as sharded too (a lower bound
  by those few MB; HF's TP plans replicate norms).

    tracekit ranks rank0.json.gz rank1.json.gz --json   # schema: docs/schema/tracekit.ranks-1.schema.json
    tracekit ranks 'tp2/rank*.json.gz' --model qwen2.5-7b --ctx 2048
"""

from __future__ import annotations

import gzip
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tracekit.errors import BadInput
from tracekit.trace.model import Trace

SCHEMA = "tracekit.ranks/1"
_DIST = re.compile(rb'"distributedInfo"\s*:\s*\{')
_DIST_KEY = {k: re.compile(rb'"' + k.encode() + rb'"\s*:\s*(\d+)') for k in ("rank", "world_size")}
_RANK_IN_NAME = re.compile(r"rank[-_]?(\d+)", re.IGNORECASE)


# -- one rank --------------------------------------------------------------------------------------
@dataclass
class RankSteps:
    """One rank's steps on its own clock (ns), with its collectives."""

    rank: int
    path: str
    world_size: int | None
    steps: list[dict]  # step, start_ns, end_ns, has_latency, busy_ns, comm_only_ns, collectives
    collectives: list[tuple[int, int, str]]  # (start_ns, end_ns, name) of every collective, in order
    offset_ns: int = 0  # this rank's clock minus rank 0's (set by align)
    trace: Trace | None = field(default=None, repr=False)


def rank_of(path: str | Path, order: int) -> tuple[int, int | None]:
    """(rank, world size) from the trace's ``distributedInfo`` (read from its first 1 MB), else
    from a ``rank-N``/``rankN`` in the file name, else its position among the files given."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(2)
        opener = gzip.open if head == b"\x1f\x8b" else open
        with opener(p, "rb") as f:
            head = f.read(1 << 20)
        m = _DIST.search(head)
        if m:  # its first keys (torch writes backend, rank, world_size, then the groups)
            window = head[m.end():m.end() + 4096]
            r, w = (_DIST_KEY[k].search(window) for k in ("rank", "world_size"))
            if r:
                return int(r.group(1)), int(w.group(1)) if w and int(w.group(1)) > 0 else None
    except (OSError, EOFError, ValueError):
        pass  # the reader says what is wrong with the file, when it reads it
    named = _RANK_IN_NAME.search(p.name)
    return (int(named.group(1)) if named else order), None


def is_collective(name: str) -> bool:
    from tracekit.specs.kernels import KernelCategory, categorize

    return categorize(name) is KernelCategory.COMMUNICATION


def union_ns(iv: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for s, e in sorted(iv):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _length(iv: list[tuple[int, int]]) -> int:
    return sum(e - s for s, e in iv)


def _clip(iv, lo: int, hi: int) -> list[tuple[int, int]]:
    return [(max(s, lo), min(e, hi)) for s, e in iv if min(e, hi) > max(s, lo)]


def read_rank(path: str | Path, order: int, *, step_marker: str | None = None) -> RankSteps:
    """One rank's decode steps: window, GPU busy, communication-only time, collectives."""
    from tracekit.steps import detect_steps
    from tracekit.trace import load

    rank, world = rank_of(path, order)
    tr = load(path)
    st = detect_steps(tr, step_marker=step_marker)
    ops = st.ops_t
    has_step = ops.valid("step")
    names = ops["name"].tolist()
    kinds = ops["kind"].tolist()
    start, end, step = ops["start_ns"], ops["end_ns"], ops["step"]
    decode = [s for s, k in zip(st.table_t["step"].tolist(), st.table_t["kind"].tolist())
              if k == "decode"]
    by_step: dict[int, list[int]] = {s: [] for s in decode}
    for i in np.nonzero(has_step)[0].tolist():
        s = int(step[i])
        if s in by_step:
            by_step[s].append(i)
    firsts = {s: min(int(start[i]) for i in idx) for s, idx in by_step.items() if idx}
    ordered = [s for s in decode if s in firsts]
    rows = []
    for n, s in enumerate(ordered):
        idx = by_step[s]
        t0 = firsts[s]
        nxt = firsts[ordered[n + 1]] if n + 1 < len(ordered) else None
        t1 = nxt if nxt is not None else max(int(end[i]) for i in idx)
        comm = [(int(start[i]), int(end[i])) for i in idx
                if kinds[i] == "kernel" and is_collective(names[i])]
        other = [(int(start[i]), int(end[i])) for i in idx
                 if not (kinds[i] == "kernel" and is_collective(names[i]))]
        busy = _length(union_ns(_clip(comm + other, t0, t1)))
        compute = _length(union_ns(_clip(other, t0, t1)))
        rows.append({"step": s, "start_ns": t0, "end_ns": t1, "has_latency": nxt is not None,
                     "busy_ns": busy, "comm_only_ns": busy - compute,
                     "collectives": sorted(comm)})
    colls = sorted((int(start[i]), int(end[i]), names[i]) for i in range(ops.height)
                   if kinds[i] == "kernel" and is_collective(names[i]))
    return RankSteps(rank, str(path), world, rows, colls, trace=tr)


# -- several ranks ---------------------------------------------------------------------------------
def align(ranks: list[RankSteps]) -> list[str]:
    """Set each rank's ``offset_ns`` against the first (lowest) rank; returns warnings."""
    warnings = []
    ref = ranks[0]
    for r in ranks[1:]:
        n = min(len(ref.collectives), len(r.collectives))
        if len(ref.collectives) != len(r.collectives):
            warnings.append(f"rank {r.rank} has {len(r.collectives)} collectives and rank "
                            f"{ref.rank} {len(ref.collectives)}: the first {n} are matched")
        if n == 0:
            warnings.append(f"rank {r.rank}: no collective kernels to align its clock by; its "
                            "timestamps are taken as they are")
            continue
        r.offset_ns = int(statistics.median(r.collectives[k][1] - ref.collectives[k][1]
                                            for k in range(n)))
    return warnings


def explain_ranks(paths: list[str | Path], *, model=None, ctx: int | None = None,
                  tp: int | None = None, gpu: str | None = None, bandwidth_gbps: float | None = None,
                  dtype: str | None = None, convention: str = "exact",
                  step_marker: str | None = None) -> dict:
    """The multi-rank explanation (a JSON-ready dict, schema ``tracekit.ranks/1``)."""
    if len(paths) < 2:
        raise BadInput(f"multi-rank analysis needs a trace per rank (two or more); got {len(paths)}")
    ranks = [read_rank(p, i, step_marker=step_marker) for i, p in enumerate(paths)]
    seen: dict[int, str] = {}
    for r in ranks:
        if r.rank in seen:
            raise BadInput(f"{r.path} and {seen[r.rank]} are both rank {r.rank}; give one trace "
                           "per rank")
        seen[r.rank] = r.path
    ranks.sort(key=lambda r: r.rank)
    warnings = align(ranks)
    n_steps = min(len(r.steps) for r in ranks)
    if n_steps == 0:
        raise BadInput("no decode step with GPU work on every rank: nothing to line up")
    if len({len(r.steps) for r in ranks}) > 1:
        warnings.append("the ranks have different step counts ("
                        + ", ".join(f"rank {r.rank}: {len(r.steps)}" for r in ranks)
                        + f"); the first {n_steps} are compared")
    tp = tp or len(ranks)
    floor = tp_floor(ranks[0], model=model, ctx=ctx, tp=tp, gpu=gpu, bandwidth_gbps=bandwidth_gbps,
                     dtype=dtype, convention=convention)
    origin = ranks[0].steps[0]["start_ns"]  # times in the steps: ms since rank 0's first step
    steps = [_step(i, ranks, floor, origin) for i in range(n_steps)]
    return {
        "schema": SCHEMA,
        "ranks": [{"rank": r.rank, "file": r.path, "world_size": r.world_size,
                   "clock_offset_ms": r.offset_ns / 1e6, "steps": len(r.steps),
                   "collectives": len(r.collectives)} for r in ranks],
        "tp": tp, "floor": floor, "steps": steps, "summary": _summary(steps, ranks),
        "warnings": warnings,
    }


def _step(i: int, ranks: list[RankSteps], floor: dict | None, origin: int) -> dict:
    """Step ``i`` on every rank: arrivals at its collectives, waits, the bounding rank."""
    per = [r.steps[i] for r in ranks]
    n_coll = min(len(s["collectives"]) for s in per)
    waits = [0] * len(ranks)
    for k in range(n_coll):
        arrive = [s["collectives"][k][0] - r.offset_ns for s, r in zip(per, ranks)]
        last = max(arrive)
        for j, a in enumerate(arrive):
            waits[j] += last - a
    bound = min(range(len(ranks)), key=lambda j: (waits[j], ranks[j].rank))
    floor_ms = floor["floor_ms"] if floor else None
    rows = []
    for j, (s, r) in enumerate(zip(per, ranks)):
        lat = (s["end_ns"] - s["start_ns"]) / 1e6 if s["has_latency"] else None
        busy, comm = s["busy_ns"] / 1e6, s["comm_only_ns"] / 1e6
        rows.append({
            "rank": r.rank, "start_ms": (s["start_ns"] - r.offset_ns - origin) / 1e6,
            "latency_ms": lat, "span_ms": (s["end_ns"] - s["start_ns"]) / 1e6,
            "gpu_busy_ms": busy, "communication_ms": comm, "comm_wait_ms": waits[j] / 1e6,
            "collectives": len(s["collectives"]),
            "floor_ms": floor_ms,
            "kernel_excess_ms": busy - comm - floor_ms if floor_ms is not None else None,
            "compute_ms": busy - comm,
            "launch_overhead_ms": lat - busy if lat is not None else None,
        })
    return {"step": i, "bounding_rank": ranks[bound].rank, "collectives_compared": n_coll,
            "latency_ms": rows[bound]["latency_ms"], "ranks": rows}


def _summary(steps: list[dict], ranks: list[RankSteps]) -> dict:
    def med(key: str, rank: int) -> float | None:
        v = [x[key] for s in steps for x in s["ranks"] if x["rank"] == rank and x[key] is not None]
        return statistics.median(v) if v else None

    counts: dict[int, int] = {}
    for s in steps:
        counts[s["bounding_rank"]] = counts.get(s["bounding_rank"], 0) + 1
    return {
        "steps": len(steps),
        "bounding_rank_counts": {str(k): v for k, v in sorted(counts.items())},
        "per_rank": [{"rank": r.rank, **{k: med(k, r.rank) for k in (
            "latency_ms", "gpu_busy_ms", "communication_ms", "comm_wait_ms", "compute_ms",
            "kernel_excess_ms", "launch_overhead_ms")}} for r in ranks],
    }


def tp_floor(rank0: RankSteps, *, model=None, ctx=None, tp: int, gpu=None, bandwidth_gbps=None,
             dtype=None, convention: str = "exact") -> dict | None:
    """Bytes one rank streams per step (its shard of the weights and of the KV cache) ÷ peak
    bandwidth; None when the model or the GPU is not known."""
    from tracekit.explain import _resolve_gpu, _resolve_model

    tr = rank0.trace
    if tr is None:
        return None
    spec, ctx0, dtype, _ = _resolve_model(tr, model, ctx, dtype)
    _, peak, _ = _resolve_gpu(tr, gpu, bandwidth_gbps)
    if spec is None or peak is None or ctx0 is None:
        return None
    b = spec.step_bytes(ctx0, dtype or "bf16", convention)
    kv_share = tp if spec.kv_heads % tp == 0 else spec.kv_heads if spec.kv_heads < tp else 1
    nbytes = b["weights"] / tp + (b["kv_read"] + b["kv_write"]) / kv_share
    return {"bytes_per_rank": int(nbytes), "floor_ms": nbytes / (peak * 1e9) * 1e3, "tp": tp,
            "peak_gbps": peak, "convention": convention, "ctx": ctx0, "model": spec.name,
            "kv_shards": kv_share}


__all__ = ["RankSteps", "align", "explain_ranks", "read_rank", "rank_of", "tp_floor"]
