"""The terminal text of ``tracekit ranks``: one table per step, one row per rank (draws only)."""

from __future__ import annotations

from tracekit.report.text import fmt

COLUMNS = [("rank", "rank"), ("latency_ms", "latency ms"), ("gpu_busy_ms", "GPU busy ms"),
           ("compute_ms", "compute ms"), ("communication_ms", "comm-only ms"),
           ("comm_wait_ms", "waited ms"), ("launch_overhead_ms", "idle ms"),
           ("kernel_excess_ms", "kernel excess ms")]


def render_ranks(doc: dict) -> str:
    lines = [f"{len(doc['ranks'])} ranks (tp {doc['tp']}), clocks aligned by their collectives: "
             + ", ".join(f"rank {r['rank']} {r['clock_offset_ms']:+.3f} ms" for r in doc["ranks"])]
    f = doc.get("floor")
    lines.append(f"TP floor: {f['floor_ms']:.3f} ms per rank ({f['bytes_per_rank'] / 1e9:.2f} GB "
                 f"of {f['model']} at ctx {f['ctx']} over {f['peak_gbps']:.0f} GB/s, "
                 f"{f['convention']} bytes)" if f else
                 "TP floor: unknown (give --model and --ctx, and --gpu if the traces do not name it)")
    cols = [c for c in COLUMNS if c[0] != "kernel_excess_ms" or f]
    for step in doc["steps"]:
        lines += ["", f"step {step['step']}: bounding rank {step['bounding_rank']} "
                  f"({step['collectives_compared']} collectives compared)"]
        table = [[h for _, h in cols]] + [
            [str(r["rank"]) if k == "rank" else fmt(r[k]) for k, _ in cols] for r in step["ranks"]]
        widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
        lines += ["  " + "  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in table]
    counts = ", ".join(f"rank {k}: {v}" for k, v in doc["summary"]["bounding_rank_counts"].items())
    lines += ["", f"steps bound by each rank: {counts}"]
    lines += [f"warning: {w}" for w in doc["warnings"]]
    return "\n".join(lines)
