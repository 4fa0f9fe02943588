"""Capture: batch-1 decode on a GPU (or a CPU, for tiny models) under the profiler.

Batch-1 decode reads every weight and the whole KV cache once per token, so its floor is
bytes ÷ memory bandwidth; on fast GPUs the time a step really takes is often far above that
floor because the host cannot issue ~1000 small kernels fast enough. A capture measures both
sides: unprofiled steps timed with CUDA events (the ground truth), then a short profiled window
whose trace ``tracekit explain`` decomposes — with the capture's metadata embedded, so explain
needs no flags.

Importing this package imports neither torch nor polars; torch is needed only to run a capture.

    tracekit capture --model qwen2.5-7b --ctx 2048 --mode cuda-graphs -o qwen_graphs.json.gz

    >>> from tracekit.capture import CaptureOptions, run_capture
    >>> result = run_capture(CaptureOptions(model="tiny", device="cpu", ctx=32))  # doctest: +SKIP
"""

from __future__ import annotations

from tracekit.capture.options import MODES, CaptureOptions

#: loaded on first use: the command line imports CaptureOptions for its defaults, and
#: ``tracekit --help`` must not pay for the capture machinery (~0.1 s)
_LAZY = {"CaptureResult": "tracekit.capture.result", "run_capture": "tracekit.capture.run",
         "summary_rows": "tracekit.capture.run", "read_capture_meta": "tracekit.trace.capture_meta"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tracekit.capture' has no attribute {name!r}")


__all__ = [
    "MODES",
    "CaptureOptions",
    "CaptureResult",
    "read_capture_meta",
    "run_capture",
    "summary_rows",
]
