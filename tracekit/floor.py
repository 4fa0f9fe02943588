"""The memory floor of a decode step: bytes it must move ÷ the bandwidth that moves them.

At batch 1 every weight is read once per token and each byte is used for about one multiply-add, so
a step cannot finish faster than its bytes take to stream from DRAM. Two byte conventions, reported
by name:

``exact``        what the step really reads and writes: every layer weight, one embedding row, the
                 output projection in full, the KV cache at the step's context, one token's new K/V;
``all-weights``  the study's ``(W + K) / B_peak``: all weight bytes plus the KV cache.

Weight-only quantized formats (``--dtype int8 | fp8 | int4 [--group-size] | nf4``) count the
packed linear weights with their scales and zeros, everything else at bf16
(:mod:`tracekit.specs.quant`). For Qwen-2.5-7B the table carries the study's measured L4 decode
paths (bf16, nf4, AWQ + Marlin, GPTQ + ExLlamaV2) as reference rows with the R_floor of each
against its own format's floor.

Bandwidth is the datasheet peak (the study's convention); a measured device-to-device copy bandwidth,
when a capture recorded one, gives a second, achievable floor.

    $ tracekit floor --model qwen2.5-7b --gpu H100 --ctx 2048
"""

from __future__ import annotations

from dataclasses import dataclass

from tracekit.specs import study
from tracekit.specs.gpus import GPUS, GpuSpec, get_gpu
from tracekit.specs.models import MODELS, ModelSpec

CONVENTIONS = ("exact", "all-weights")


@dataclass(frozen=True)
class Floor:
    bytes: int
    weights_bytes: int
    kv_read_bytes: int
    kv_write_bytes: int
    peak_gbps: float
    floor_ms: float
    convention: str
    ctx: int


def step_floor(model: ModelSpec, ctx: int, peak_gbps: float, *, dtype: str = "bf16",
               convention: str = "exact", batch: int = 1) -> Floor:
    """The floor of one decode step at context ``ctx``. A step that decodes ``batch`` sequences
    reads the weights once and each sequence's KV cache (every sequence taken at ``ctx``)."""
    b = model.step_bytes(ctx, dtype, convention)
    kv_read, kv_write = b["kv_read"] * batch, b["kv_write"] * batch
    total = b["total"] + (kv_read - b["kv_read"]) + (kv_write - b["kv_write"])
    return Floor(
        bytes=total, weights_bytes=b["weights"], kv_read_bytes=kv_read,
        kv_write_bytes=kv_write, peak_gbps=peak_gbps,
        floor_ms=floor_ms(total, peak_gbps), convention=convention, ctx=ctx,
    )


def floor_ms(nbytes: float, gbps: float) -> float:
    return nbytes / (gbps * 1e9) * 1e3


def floor_table(model: ModelSpec, ctx: int, *, gpus: list[GpuSpec] | None = None,
                dtype: str = "bf16") -> list[dict]:
    """The analytic floor on each GPU, both conventions — the study's analytic table."""
    rows = []
    for g in gpus or GPUS:
        exact = step_floor(model, ctx, g.peak_gbps, dtype=dtype, convention="exact")
        allw = step_floor(model, ctx, g.peak_gbps, dtype=dtype, convention="all-weights")
        rows.append({
            "gpu": g.name, "peak_gbps": g.peak_gbps,
            "bytes_exact": exact.bytes, "floor_exact_ms": exact.floor_ms,
            "bytes_all_weights": allw.bytes, "floor_all_weights_ms": allw.floor_ms,
            "max_tokens_per_s": 1e3 / exact.floor_ms,
        })
        if g.name == study.L4_QUANTIZED_GPU and _is_study_model(model):
            rows[-1]["study_reference"] = study_reference_rows(model)
    return rows


def _is_study_model(model: ModelSpec) -> bool:
    ref = MODELS[study.L4_QUANTIZED_MODEL]
    return model.name == ref.name or model == ref


def study_reference_rows(model: ModelSpec | None = None) -> list[dict]:
    """The study's measured L4 decode paths (ms/step, Qwen-2.5-7B, ctx 2048) beside the floor of
    each path's own weight format: R_floor in both conventions, the speed-up over bf16 each path
    achieved, and the speed-up its floor allows (bf16 floor ÷ its floor, exact bytes)."""
    model = model or MODELS[study.L4_QUANTIZED_MODEL]
    gpu, ctx = get_gpu(study.L4_QUANTIZED_GPU), study.L4_QUANTIZED_CTX
    base = {c: step_floor(model, ctx, gpu.peak_gbps, dtype="bf16", convention=c).floor_ms
            for c in CONVENTIONS}
    bf16_ms = next(r["ms_per_step"] for r in study.L4_QUANTIZED if r["dtype"] == "bf16")
    rows = []
    for r in study.L4_QUANTIZED:
        fl = {c: step_floor(model, ctx, gpu.peak_gbps, dtype=r["dtype"], convention=c).floor_ms
              for c in CONVENTIONS}
        rows.append({
            "path": r["path"], "dtype": r["dtype"], "gpu": gpu.name, "ctx": ctx,
            "ms_per_step": r["ms_per_step"],
            "floor_exact_ms": fl["exact"], "floor_all_weights_ms": fl["all-weights"],
            "r_floor_exact": fl["exact"] / r["ms_per_step"],
            "r_floor_all_weights": fl["all-weights"] / r["ms_per_step"],
            "speedup_vs_bf16": bf16_ms / r["ms_per_step"],
            "floor_speedup_vs_bf16": base["exact"] / fl["exact"],
            "source": study.PAPER,
        })
    return rows
