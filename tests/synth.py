"""Tiny Kineto traces built inline, whose arithmetic is known exactly.

Times are given in microseconds as *strings* so that nanosecond fractions reach the file exactly
as a profiler writes them (``"1000.123"``), never through a float.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

BASE_US = 4_929_294_000_000  # a 13-digit µs timestamp, like PyTorch 2.11's relative clock


class Raw(str):
    """A JSON number written verbatim."""


def _dumps(obj) -> str:
    if isinstance(obj, Raw):
        return str(obj)
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_dumps(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list):
        return "[" + ", ".join(_dumps(v) for v in obj) + "]"
    return json.dumps(obj)


def us(t: float | str) -> Raw:
    """BASE_US + t, as an exact decimal literal (t may carry three decimals: nanoseconds)."""
    t = str(t)
    whole, _, frac = t.partition(".")
    return Raw(f"{BASE_US + int(whole)}" + (f".{frac}" if frac else ""))


def kernel(name: str, ts, dur, corr: int | None, *, stream: int = 7, device: int = 0,
           cat: str = "kernel") -> dict:
    args = {"device": device, "stream": stream}
    if corr is not None:
        args["correlation"] = corr
    return {"ph": "X", "cat": cat, "name": name, "pid": device, "tid": stream,
            "ts": us(ts), "dur": Raw(str(dur)), "args": args}


def launch(name: str, ts, dur, corr: int, *, cat: str = "cuda_runtime", tid: int = 100) -> dict:
    return {"ph": "X", "cat": cat, "name": name, "pid": 100, "tid": tid, "ts": us(ts),
            "dur": Raw(str(dur)), "args": {"correlation": corr}}


def cpu_op(name: str, ts, dur, *, tid: int = 100) -> dict:
    """A framework op on the host thread (Kineto ``cpu_op``)."""
    return {"ph": "X", "cat": "cpu_op", "name": name, "pid": 100, "tid": tid, "ts": us(ts),
            "dur": Raw(str(dur)), "args": {}}


def annotation(name: str, ts, dur, *, gpu: bool = False) -> dict:
    return {"ph": "X", "cat": "gpu_user_annotation" if gpu else "user_annotation", "name": name,
            "pid": 0 if gpu else 100, "tid": 7 if gpu else 100, "ts": us(ts), "dur": Raw(str(dur)),
            "args": {}}


def write_trace(path: Path, events: list[dict], *, gpu_name: str = "NVIDIA H100 80GB HBM3",
                extra: dict | None = None, gz: bool = True) -> Path:
    doc = {
        "schemaVersion": 1,
        "deviceProperties": [{"id": 0, "name": gpu_name, "totalGlobalMem": 85e9, "numSms": 132,
                              "computeMajor": 9, "computeMinor": 0}],
        "displayTimeUnit": "ms",
        "baseTimeNanoseconds": 1790857026000000000,
        "traceEvents": events,
        **(extra or {}),
    }
    text = _dumps(doc).encode()
    path.write_bytes(gzip.compress(text) if gz else text)
    return path


def decode_steps(n: int, *, period: float = 100.0, kernels_per_step: int = 3,
                 kernel_us: float = 5.0, launch_us: float = 4.0, annotate: str | None = "step#{i}",
                 names: list[str] | None = None) -> list[dict]:
    """``n`` eager steps: the host launches each kernel ``launch_us`` apart; the GPU runs each
    kernel ``kernel_us`` as soon as its launch ends (host-bound by construction)."""
    events = []
    corr = 1
    names = names or [f"k{j}" for j in range(kernels_per_step)]
    for i in range(n):
        t0 = i * period
        if annotate:
            events.append(annotation(annotate.format(i=i), t0, period - 1))
        for j, name in enumerate(names):
            lt = t0 + 1 + j * launch_us
            events.append(launch("cudaLaunchKernel", lt, 2, corr))
            events.append(kernel(name, lt + 3, kernel_us, corr))
            corr += 1
    return events


# -- host stalls: a trace whose every gap is known (tests/test_host.py, test_unprofiled.py) -------
# Each step (1000 µs) runs ten host ops back to back; each launches one 2 µs kernel 5 µs before it
# ends, and the kernel ends with the op. So the gap before kernel j is d_j − 2 µs and lies inside
# op j. Op 3 is a cuDNN attention call holding the host 600 µs (inside an SDPA parent); op 7 is the
# same call at its ordinary 20 µs. The tail gap up to the next step (no op) is 238 µs.
DUR = [20, 20, 20, 600, 20, 20, 20, 20, 20, 20]
NAMES = ["aten::mm", "aten::mul", "aten::add", "aten::_cudnn_attention_forward", "aten::mm",
         "aten::mul", "aten::add", "aten::_cudnn_attention_forward", "aten::mm", "aten::add"]
PERIOD = 1000


def stall_trace(tmp_path, n_steps=4, dur=DUR, names=NAMES, gpu_name="NVIDIA H100 80GB HBM3"):
    events, corr = [], 1
    for i in range(n_steps):
        t0 = i * PERIOD
        events.append(annotation(f"step#{i}", t0, PERIOD - 1))
        s = t0 + 1
        for d, name in zip(dur, names):
            if "cudnn" in name:
                events.append(cpu_op("aten::scaled_dot_product_attention", s, d))
                events.append(cpu_op(name, s + 1, d - 2))
            else:
                events.append(cpu_op(name, s, d))
            events.append(launch("cudaLaunchKernel", s + d - 5, 2, corr))
            events.append(kernel(f"k_{name}", s + d - 2, 2, corr))
            corr += 1
            s += d
    return write_trace(tmp_path / "stall.json.gz", events, gpu_name=gpu_name)
