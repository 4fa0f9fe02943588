"""Ground truth without the profiler: per-step times with CUDA events, and the copy bandwidth.

Each decode step is bracketed by two CUDA events recorded on the current stream; the host never
waits inside the loop (one synchronize after the last step), so the timing does not change the
overlap of host and device it measures. On the CPU, ``perf_counter_ns`` brackets each step.
The study's statistic is the median of 30 steps after 5 warm-up steps; p10 and p90 show spread.

The copy probe moves one large buffer device-to-device and counts bytes read *plus* bytes
written, the usual convention for "achievable bandwidth" (an H100 SXM gives ≈3.0 TB/s of its
3.35 TB/s datasheet peak).

    tracekit capture --model qwen2.5-7b --steps 30 --warmup 5
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

#: the copy probe's buffer: big enough to defeat the L2 cache (50-60 MB on H100/H200)
COPY_BYTES = 1 << 30
COPY_REPEATS = 10


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def warm_up(step: Callable[[], None], n: int, *, device: str) -> None:
    for _ in range(n):
        step()
    sync(device)


def time_steps(step: Callable[[], None], n: int, *, device: str) -> list[float]:
    """Milliseconds per call of ``step``, ``n`` calls, device time between CUDA events."""
    if device != "cuda":
        out = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            step()
            out.append((time.perf_counter_ns() - t0) / 1e6)
        return out
    import torch

    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
    for start, end in zip(starts, ends, strict=True):
        start.record()
        step()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) for start, end in zip(starts, ends, strict=True)]


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), ``q`` in [0, 100]."""
    xs = sorted(values)
    if not xs:
        return math.nan
    pos = (len(xs) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summarize(ms: list[float], *, warmup: int) -> dict:
    median = percentile(ms, 50)
    return {
        "steps": len(ms),
        "warmup": warmup,
        "unprofiled_ms": [round(x, 6) for x in ms],
        "median_ms": round(median, 6),
        "p10_ms": round(percentile(ms, 10), 6),
        "p90_ms": round(percentile(ms, 90), 6),
        "tokens_per_s": round(1000.0 / median, 3) if median > 0 else None,
    }


def copy_bandwidth_gbps(device: str) -> float | None:
    """Achievable DRAM bandwidth from a large device-to-device copy (read + write), GB/s."""
    if device != "cuda":
        return None
    import torch

    free, _ = torch.cuda.mem_get_info()
    nbytes = min(COPY_BYTES, free // 4) // (1 << 20) * (1 << 20)  # leave room, whole MiB
    if nbytes < 64 << 20:
        return None  # too small to say anything about DRAM
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    for _ in range(3):
        dst.copy_(src)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(COPY_REPEATS):
        dst.copy_(src)
    end.record()
    torch.cuda.synchronize()
    seconds = start.elapsed_time(end) / 1e3
    del src, dst
    torch.cuda.empty_cache()
    return round(2 * nbytes * COPY_REPEATS / seconds / 1e9, 1)
