"""The study's quantization table on our GPUs: scheme × GPU × mode, from quantized captures.

Reads every ``tracekit capture`` (``--quant none|int8|int4|fp8|fp8-dynamic|nf4``) under
``--traces`` (default ``sample_traces/quant``; ``capture/quant_campaign.sh`` makes them) and groups
them by GPU, mode and scheme. The files of a group are fresh sessions of one cell (each file's own
sessions count one each), pooled as ``tracekit compare`` pools them (:mod:`tracekit.bootstrap`):
the latency of a cell is the mean of its session medians with ≥ 2 sessions (else the median of its
steps), and the speed-up over the bf16 cell of the same GPU and mode is ``ratio_ci`` (bf16 ÷
scheme) with its 95 % bootstrap interval (column ``basis`` says over what).

The floor counts the scheme's stored format (``quant.floor_dtype`` in the capture: scales, zeros,
padding included; :mod:`tracekit.specs.quant`) at the capture's context over the datasheet peak;
``stored_mb`` is what the quantized tensors really occupied (``nbytes``, recorded by the capture)
and ``counted_mb`` the floor's count of the same tensors — they must agree. ``realised`` is the
step saving ÷ the floor saving over bf16 (1: every byte saved became time saved; < 0: slower).
Each scheme's verdict is ``tracekit explain TRACE --baseline BF16`` of one trace of the cell
(:mod:`tracekit.quantized`).

    analyses/results/quant_table.csv   gpu, mode, scheme, floor_dtype, sessions, ms, ci, floor,
                                       r_floor, speedup (+ interval, basis), realised, bytes
    analyses/results/quant_table.md    the table, the study's L4 rows beside it, the verdicts

Re-running on the same captures reproduces both files byte for byte (fixed bootstrap seed).

    python analyses/quant_table.py                       # sample_traces/quant -> analyses/results
    python analyses/quant_table.py --traces /tmp/quant --out /tmp/table --gpu "H100 SXM5"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tracekit.bootstrap import latency_ci, ratio_ci  # noqa: E402
from tracekit.compare import _capture_sessions  # noqa: E402
from tracekit.errors import TracekitError  # noqa: E402
from tracekit.explain import explain  # noqa: E402
from tracekit.fileio import atomic_write_text  # noqa: E402
from tracekit.floor import step_floor  # noqa: E402
from tracekit.quantized import realised_savings  # noqa: E402
from tracekit.report.compare import md_escape  # noqa: E402
from tracekit.specs import study  # noqa: E402
from tracekit.specs.gpus import get_gpu, match_gpu  # noqa: E402
from tracekit.specs.models import ModelSpec  # noqa: E402
from tracekit.specs.quant import capture_floor_dtype  # noqa: E402
from tracekit.trace.capture_meta import read_capture_meta  # noqa: E402

COLUMNS = ["gpu", "model", "ctx", "mode", "scheme", "floor_dtype", "files", "sessions", "ms",
           "ci_low_ms", "ci_high_ms", "floor_ms", "r_floor", "speedup", "speedup_low",
           "speedup_high", "basis", "realised", "stored_mb", "counted_mb", "quant_kernels"]
MODES = ("cuda-graphs", "compile", "eager")


def _spec(meta: dict) -> ModelSpec:
    m = {k: v for k, v in meta["model"].items() if k not in ("params", "kv_bytes_per_token_bf16")}
    return ModelSpec(**m)


def cells(folder: Path, gpu_override: str | None) -> dict[tuple, dict]:
    """(gpu, model, ctx, mode, scheme) → the cell: its files, pooled sessions, floor, bytes."""
    out: dict[tuple, dict] = {}
    for path in sorted(folder.rglob("*.json.gz")):
        meta = read_capture_meta(path)
        if not isinstance(meta, dict) or "timing" not in meta:
            continue
        gspec = get_gpu(gpu_override) if gpu_override else match_gpu(
            str((meta.get("gpu") or {}).get("name") or ""))
        gpu = gspec.name if gspec else str(meta.get("device") or "unknown")
        q = meta.get("quant") or {}
        key = (gpu, meta["model_name"], meta["ctx"], meta["mode"], q.get("scheme", "bf16"))
        dtype = capture_floor_dtype(meta) or meta.get("dtype") or "bf16"
        c = out.setdefault(key, {"files": [], "sessions": [], "dtype": dtype, "gspec": gspec,
                                 "spec": _spec(meta), "stored": [], "counted": [], "kernels": {}})
        c["files"].append(path)
        c["sessions"] += _capture_sessions(meta, str(path)) or []
        if q:
            c["stored"].append(q["tensor_bytes"]["total"])
            c["counted"].append(q["floor_linear_bytes"])
            for name, k in ((q.get("ran") or {}).get("kernels") or {}).items():
                if k["category"] in ("quant_gemm", "dequant"):
                    c["kernels"][name] = k["category"]
    return out


def table(folder: Path, gpu_override: str | None = None) -> tuple[list[dict], list[str]]:
    groups = cells(folder, gpu_override)
    rows, verdicts = [], []
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], MODES.index(k[3])
                                             if k[3] in MODES else 9, k[4] != "bf16", k[4])):
        gpu, model, ctx, mode, scheme = key
        c = groups[key]
        lat = latency_ci(c["sessions"])
        floor = (step_floor(c["spec"], ctx, c["gspec"].peak_gbps, dtype=c["dtype"]).floor_ms
                 if c["gspec"] else None)
        base = groups.get((gpu, model, ctx, mode, "bf16"))
        row = {"gpu": gpu, "model": model, "ctx": ctx, "mode": mode, "scheme": scheme,
               "floor_dtype": c["dtype"], "files": len(c["files"]), "sessions": len(c["sessions"]),
               "ms": lat.value, "ci_low_ms": lat.low, "ci_high_ms": lat.high, "floor_ms": floor,
               "r_floor": floor / lat.value if floor else None, "speedup": None,
               "speedup_low": None, "speedup_high": None, "basis": None, "realised": None,
               "stored_mb": c["stored"][0] / 1e6 if c["stored"] else None,
               "counted_mb": c["counted"][0] / 1e6 if c["counted"] else None,
               "quant_kernels": "; ".join(f"{n[:70]} ({cat})" for n, cat in
                                          sorted(c["kernels"].items())[:3]) or None}
        if base is not None and scheme != "bf16":
            r = ratio_ci(base["sessions"], c["sessions"])
            row.update(speedup=r.value, speedup_low=r.low, speedup_high=r.high, basis=r.basis)
            bl = latency_ci(base["sessions"]).value
            bfloor = (step_floor(base["spec"], ctx, base["gspec"].peak_gbps,
                                 dtype=base["dtype"]).floor_ms if base["gspec"] else None)
            if floor is not None and bfloor is not None and bfloor > floor:
                row["realised"] = (bl - lat.value) / (bfloor - floor)
            verdicts.append(_verdict(c, base, gpu_override, (gpu, mode, scheme)))
        rows.append(row)
    return rows, verdicts


def _verdict(cell: dict, base: dict, gpu: str | None, label: tuple) -> str:
    """``explain --baseline`` of the first trace of the cell against the first bf16 trace."""
    try:
        q = explain(cell["files"][0], gpu=gpu).to_dict()
        b = explain(base["files"][0], gpu=gpu).to_dict()
        text = realised_savings(q, b)["verdict"]
    except TracekitError as exc:
        text = f"not explained: {exc}"
    return (f"**{md_escape(', '.join(label))}** ({md_escape(cell['files'][0].name)} against "
            f"{md_escape(base['files'][0].name)}): {md_escape(text)}")


def _f(v, fmt="{:.2f}") -> str:
    return "" if v is None else fmt.format(v)


def csv_text(rows: list[dict]) -> str:
    lines = [",".join(COLUMNS)]
    for r in rows:
        cells_ = []
        for k in COLUMNS:
            v = r[k]
            s = "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))
            cells_.append('"' + s.replace('"', '""') + '"' if ("," in s or '"' in s) else s)
        lines.append(",".join(cells_))
    return "\n".join(lines) + "\n"


def md_text(rows: list[dict], verdicts: list[str]) -> str:
    head = ["GPU", "mode", "scheme (floor format)", "sessions", "ms/step [95% CI]", "floor ms",
            "R_floor", "× vs bf16 [95% CI]", "realised", "stored / counted MB"]
    out = ["# Quantized decode: scheme × GPU × mode", "",
           "Made by `python analyses/quant_table.py` from the captures of "
           "`capture/quant_campaign.sh`; definitions in the script's docstring.", "",
           "| " + " | ".join(head) + " |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ms = f"{r['ms']:.2f}" + (f" [{r['ci_low_ms']:.2f}, {r['ci_high_ms']:.2f}]"
                                 if r["ci_low_ms"] is not None else "")
        sp = "—" if r["speedup"] is None else f"{r['speedup']:.2f}×" + (
            f" [{r['speedup_low']:.2f}, {r['speedup_high']:.2f}] ({r['basis']})"
            if r["speedup_low"] is not None else f" ({r['basis']})")
        by = ("—" if r["stored_mb"] is None
              else f"{r['stored_mb']:.1f} / {r['counted_mb']:.1f}")
        cols = [r["gpu"], r["mode"], f"{r['scheme']} ({r['floor_dtype']})", str(r["sessions"]), ms,
                _f(r["floor_ms"]) or "—", _f(r["r_floor"], "{:.0%}") or "—", sp,
                _f(r["realised"], "{:.0%}") or "—", by]
        out.append("| " + " | ".join(md_escape(c) for c in cols) + " |")
    out += ["", "The study's L4 rows (Qwen-2.5-7B, ctx 2048, ms/step, one run each): "
            + "; ".join(f"{md_escape(r['path'])} {r['ms_per_step']:.2f}" for r in study.L4_QUANTIZED)
            + ".", ""]
    if verdicts:
        out += ["## Verdicts (`tracekit explain TRACE --baseline BF16`)", ""]
        out += [f"- {v}" for v in verdicts]
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--traces", type=Path, default=ROOT / "sample_traces" / "quant")
    ap.add_argument("--out", type=Path, default=ROOT / "analyses" / "results")
    ap.add_argument("--gpu", help="GPU whose datasheet peak the floor uses (default: the trace's)")
    a = ap.parse_args()
    if not a.traces.is_dir():
        print(f"Error: {a.traces} is not a folder of captures (run capture/quant_campaign.sh)",
              file=sys.stderr)
        return 1
    rows, verdicts = table(a.traces, a.gpu)
    if not rows:
        print(f"Error: no tracekit captures in {a.traces}", file=sys.stderr)
        return 1
    a.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(a.out / "quant_table.csv", csv_text(rows))
    atomic_write_text(a.out / "quant_table.md", md_text(rows, verdicts))
    print(md_text(rows, verdicts), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
