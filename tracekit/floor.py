"""The memory floor of a decode step: bytes it must move ÷ the bandwidth that moves them.

At batch 1 every weight is read once per token and each byte is used for about one multiply-add, so
a step cannot finish faster than its bytes take to stream from DRAM. Two byte conventions, reported
by name:

``exact``        what the step really reads and writes: every layer weight, one embedding row, the
                 output projection in full, the KV cache at the step's context, one token's new K/V;
``all-weights``  the study's ``(W + K) / B_peak``: all weight bytes plus the KV cache.

Bandwidth is the datasheet peak (the study's convention); a measured device-to-device copy bandwidth,
when a capture recorded one, gives a second, achievable floor.

    $ tracekit floor --model qwen2.5-7b --gpu H100 --ctx 2048
"""

from __future__ import annotations

from dataclasses import dataclass

from tracekit.specs.gpus import GPUS, GpuSpec
from tracekit.specs.models import ModelSpec

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
               convention: str = "exact") -> Floor:
    """The floor of one decode step at context ``ctx``."""
    b = model.step_bytes(ctx, dtype, convention)
    return Floor(
        bytes=b["total"], weights_bytes=b["weights"], kv_read_bytes=b["kv_read"],
        kv_write_bytes=b["kv_write"], peak_gbps=peak_gbps,
        floor_ms=floor_ms(b["total"], peak_gbps), convention=convention, ctx=ctx,
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
    return rows
