"""A quick Markdown table of quantized captures, from their metadata alone (no polars, no trace
parsing: it runs on the GPU box right after ``capture/quant_campaign.sh``).

One row per trace: mode, scheme, the unprofiled ms/step (median of the capture's steps, or the
mean of its session medians), the floor of the scheme's format at the capture's context over the
datasheet peak, R_floor, the speed-up over the bf16 trace(s) of the same mode, the quantized
linear weights' stored bytes against the floor's count of them, and the GEMM-side kernels that ran
most often. The study's table (fresh sessions pooled, intervals) is ``analyses/quant_table.py``.

    python3 capture/quant_summary.py /tmp/quant > quant_summary.md
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tracekit.floor import step_floor  # noqa: E402
from tracekit.specs.gpus import match_gpu  # noqa: E402
from tracekit.specs.models import ModelSpec  # noqa: E402
from tracekit.specs.quant import capture_floor_dtype  # noqa: E402
from tracekit.trace.capture_meta import read_capture_meta  # noqa: E402


def row(path: Path) -> dict | None:
    meta = read_capture_meta(path)
    if not isinstance(meta, dict) or "timing" not in meta:
        return None
    q = meta.get("quant") or {}
    sessions = (meta.get("timing_sessions") or {}).get("mean_ms")
    ms = sessions if sessions is not None else meta["timing"]["median_ms"]
    m = dict(meta["model"])
    for k in ("params", "kv_bytes_per_token_bf16"):
        m.pop(k, None)
    spec = ModelSpec(**m)
    gpu = match_gpu(str((meta.get("gpu") or {}).get("name") or ""))
    dtype = capture_floor_dtype(meta) or meta.get("dtype") or "bf16"
    floor = step_floor(spec, meta["ctx"], gpu.peak_gbps, dtype=dtype).floor_ms if gpu else None
    kernels = ((q.get("ran") or {}).get("kernels") or {})
    top = sorted(kernels.items(), key=lambda kv: -kv[1]["count"])[:2]
    return {
        "file": path.name, "gpu": (meta.get("gpu") or {}).get("name", meta.get("device")),
        "mode": meta["mode"], "scheme": q.get("scheme", "bf16"), "dtype": dtype, "ms": ms,
        "floor_ms": floor, "r_floor": floor / ms if floor else None,
        "stored_mb": (q.get("tensor_bytes") or {}).get("total", 0) / 1e6 if q else None,
        "counted_mb": q.get("floor_linear_bytes", 0) / 1e6 if q else None,
        "kernels": "; ".join(f"{k[:60]} ×{v['count']} ({v['category']})" for k, v in top),
    }


def main(folder: str) -> int:
    rows = []
    for p in sorted(Path(folder).glob("*.json.gz")):
        try:
            r = row(p)
        except Exception as exc:  # noqa: BLE001 - one unreadable trace must not hide the others
            print(f"skipped {p.name}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        if r:
            rows.append(r)
    base: dict[str, list[float]] = {}
    for r in rows:
        if r["scheme"] == "bf16":
            base.setdefault(r["mode"], []).append(r["ms"])

    def f(v, fmt=".2f"):
        return "—" if v is None else format(v, fmt)

    print("| mode | scheme | floor format | ms/step | floor ms | R_floor | × vs bf16 | stored MB | "
          "floor counts MB | GEMM-side kernels (most frequent) | file |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|---|")
    for r in sorted(rows, key=lambda r: (r["mode"], r["scheme"] != "bf16", r["scheme"], r["file"])):
        b = base.get(r["mode"])
        speed = statistics.mean(b) / r["ms"] if b else None
        print(f"| {r['mode']} | {r['scheme']} | {r['dtype']} | {f(r['ms'])} | {f(r['floor_ms'])} | "
              f"{f(r['r_floor'], '.0%')} | {f(speed)} | {f(r['stored_mb'], '.1f')} | "
              f"{f(r['counted_mb'], '.1f')} | {r['kernels']} | {r['file']} |")
    if rows:
        print(f"\nGPU: {rows[0]['gpu']}; ms/step = the capture's unprofiled median (one session per "
              "file); floor = exact bytes of the scheme's format over the datasheet peak.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
