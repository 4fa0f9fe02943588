"""Does a quantized decode step realise its byte savings? Two explanations, one answer.

Weight-only quantization cuts the bytes a batch-1 step must read, so it lowers the memory floor
(int4: ~3× fewer bytes for a 7B model at ctx 2048, the bf16 output projection and KV cache
staying). The step gets faster only if the kernels that read those bytes run near the bandwidth
the bf16 GEMV reached. Given the explanation of a quantized step and of the bf16 step of the same
model (same GPU, context, mode), this says

* ``floor_saving_ms`` (bf16 floor − quantized floor) and ``step_saving_ms`` (bf16 step − quantized
  step; the unprofiled steps when both captures timed them); ``realised`` = step saving ÷ floor
  saving: 1 when every byte saved became time saved, 0 when none did, negative when the step got
  slower;
* the **linear path** (``gemm`` + ``quant_gemm`` + ``dequant`` kernels: every linear layer and the
  output projection) on each side: its time per step and the bandwidth it achieves *on its own
  format's bytes* (bf16 weights for the baseline, the scheme's stored bytes — scales and zeros
  included — for the quantized step). ``bandwidth_ratio`` < 1 is the dequantizing kernel running
  slower per byte than the bf16 GEMV;
* every kernel category's time on both sides and the change: a dequantization built from plain
  ops (torchao's NF4 in eager) shows as elementwise/copy time the bf16 step did not have.

    $ tracekit explain int4.json.gz --baseline bf16.json.gz
"""

from __future__ import annotations

from typing import Any

from tracekit.contract import CategoryRow, ExplainDoc
from tracekit.errors import BadInput

#: the kernel categories that run the linear layers (see :mod:`tracekit.specs.kernels`)
LINEAR_CATEGORIES = ("gemm", "quant_gemm", "dequant")
SCHEMA = "tracekit.quantization/1"


def step_ms(doc: ExplainDoc) -> tuple[float | None, str]:
    """The step time a comparison uses: the unprofiled step when the capture timed it."""
    real = doc.get("unprofiled")
    if real and isinstance(real.get("latency_ms"), (int, float)):
        return float(real["latency_ms"]), "unprofiled"
    return (doc.get("summary") or {}).get("latency_ms"), "profiled"


def _categories(doc: ExplainDoc) -> dict[str, CategoryRow]:
    return {r["category"]: r for r in doc.get("kernels_by_category") or []}


def _category_ms(cats: dict[str, CategoryRow], category: str) -> float | None:
    r = cats.get(category)
    return r.get("ms_per_step") if r else None


def linear_path(doc: ExplainDoc) -> dict[str, Any]:
    """Time per step of the linear kernels and the bandwidth they achieve on the model's linear
    bytes in this step's format (the ``model_bytes_per_step`` of the linear categories: every
    quantized linear with its scales and zeros, and the bf16 output projection)."""
    cats = _categories(doc)
    ms = sum(cats[c]["ms_per_step"] or 0.0 for c in LINEAR_CATEGORIES if c in cats)
    known = [cats[c].get("model_bytes_per_step") for c in LINEAR_CATEGORIES if c in cats]
    nbytes = sum(b for b in known if b) or None
    gbps = nbytes / (ms * 1e-3) / 1e9 if nbytes and ms else None
    return {"ms_per_step": ms if cats else None, "bytes_per_step": nbytes, "achieved_gbps": gbps,
            "by_category_ms": {c: cats[c]["ms_per_step"] for c in LINEAR_CATEGORIES if c in cats}}


def realised_savings(quantized: ExplainDoc, baseline: ExplainDoc) -> dict[str, Any]:
    """The ``quantization`` section: see the module docstring. Both arguments are explain
    documents (``Explanation.to_dict()``); unknown values are None."""
    dq, db = (quantized.get("model") or {}).get("dtype"), (baseline.get("model") or {}).get("dtype")
    if dq == db:
        raise BadInput(f"--baseline has the same weight format as the trace ({dq}); give the "
                       "bf16 capture of the same model as the baseline")
    fq = (quantized.get("floor") or {}).get("floor_ms")
    fb = (baseline.get("floor") or {}).get("floor_ms")
    (lq, src_q), (lb, src_b) = step_ms(quantized), step_ms(baseline)
    basis = src_q if src_q == src_b else "profiled"
    if basis == "profiled":
        lq, lb = (quantized.get("summary") or {}).get("latency_ms"), (baseline.get("summary") or {}).get("latency_ms")
    floor_saving = fb - fq if fb is not None and fq is not None else None
    step_saving = lb - lq if lb is not None and lq is not None else None
    lin_q, lin_b = linear_path(quantized), linear_path(baseline)
    ratio = (lin_q["achieved_gbps"] / lin_b["achieved_gbps"]
             if lin_q["achieved_gbps"] and lin_b["achieved_gbps"] else None)
    cq, cb = _categories(quantized), _categories(baseline)
    cats = [{"category": c,
             "ms_per_step": _category_ms(cq, c),
             "baseline_ms_per_step": _category_ms(cb, c),
             "delta_ms": (_category_ms(cq, c) or 0.0) - (_category_ms(cb, c) or 0.0)}
            for c in sorted(set(cq) | set(cb))]
    out = {
        "schema": SCHEMA, "dtype": dq, "baseline_dtype": db, "basis": basis,
        "floor_ms": fq, "baseline_floor_ms": fb, "floor_saving_ms": floor_saving,
        "floor_speedup": fb / fq if fb and fq else None,
        "step_ms": lq, "baseline_step_ms": lb, "step_saving_ms": step_saving,
        "speedup": lb / lq if lb and lq else None,
        "realised": step_saving / floor_saving if step_saving is not None and floor_saving
        else None,
        "r_floor": fq / lq if fq and lq else None,
        "baseline_r_floor": fb / lb if fb and lb else None,
        "linear": lin_q, "baseline_linear": lin_b, "bandwidth_ratio": ratio,
        "categories": cats, "verdict": "",
    }
    out["verdict"] = realised_verdict(out)
    return out


def realised_verdict(q: dict) -> str:
    """One sentence: the floor's cut, the step's, and where the difference went."""
    if q["floor_ms"] is None or q["step_ms"] is None or q["baseline_step_ms"] is None:
        return "the floor or a step time is unknown: name --model and --gpu to compare them"
    moved = ("the step went" if q["step_saving_ms"] > 0 else "yet the step went")
    s = (f"{q['dtype']} weights cut the floor from {q['baseline_floor_ms']:.2f} to "
         f"{q['floor_ms']:.2f} ms ({q['floor_speedup']:.2f}× fewer bytes), {moved} from "
         f"{q['baseline_step_ms']:.2f} to {q['step_ms']:.2f} ms ({q['speedup']:.2f}×, "
         f"{q['basis']})")
    if q["realised"] is not None:
        s += (f": {max(q['realised'], 0):.0%} of the byte saving realised" if q["realised"] >= 0
              else ": none of the byte saving realised, the step is slower")
    if q["bandwidth_ratio"] is not None:
        s += (f"; the linear kernels read the scheme's bytes at {q['linear']['achieved_gbps']:.0f} "
              f"GB/s, {q['bandwidth_ratio']:.0%} of the {q['baseline_linear']['achieved_gbps']:.0f}"
              f" GB/s the {q['baseline_dtype']} GEMMs reached")
    # a category outside the linear path that grew by more than 5 % of the bf16 step: e.g. a
    # dequantize built from plain elementwise/copy kernels
    grew = [c for c in q["categories"] if c["category"] not in LINEAR_CATEGORIES
            and c["delta_ms"] > max(0.05 * q["baseline_step_ms"], 0.05)]
    if grew:
        top = max(grew, key=lambda c: c["delta_ms"])
        s += f"; {top['category']} kernels gained {top['delta_ms']:.2f} ms/step"
    return s + "."
