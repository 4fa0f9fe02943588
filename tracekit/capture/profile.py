"""The profiled window: torch.profiler around a few decode steps, each one named twice.

Every step carries ``record_function("tracekit.step#i")`` (Kineto: a ``user_annotation`` on the
CPU and a ``gpu_user_annotation`` over its kernels) *and* an NVTX range of the same text (Nsight
Systems: the profiler does not record NVTX). One NVTX range ``tracekit.profile`` spans the
window. Nothing else carries a ``tracekit.`` name, so ``tracekit explain`` finds steps without
being told a marker. The window ends with a synchronize so the last step's kernels are recorded.

CUDA graphs: Kineto must be initialised *before* a graph is captured or the replayed kernels are
missing from the trace; :func:`init_for_graphs` runs an empty profile for that.

    tracekit capture --model qwen2.5-7b --profile-steps 10
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

STEP_NAME = "tracekit.step#{i}"
WINDOW_NAME = "tracekit.profile"


class Nvtx:
    """push/pop of NVTX ranges: the ``nvtx`` package, else ``torch.cuda.nvtx``, else nothing."""

    def __init__(self, device: str) -> None:
        self.backend: str | None = None
        self._push: Callable[[str], Any] = lambda _msg: None
        self._pop: Callable[[], Any] = lambda: None
        try:
            import nvtx

            self._push = lambda msg: nvtx.push_range(message=msg)
            self._pop = nvtx.pop_range
            self.backend = "nvtx"
        except ImportError:
            if device == "cuda":
                import torch

                self._push, self._pop = torch.cuda.nvtx.range_push, torch.cuda.nvtx.range_pop
                self.backend = "torch.cuda.nvtx"

    def push(self, msg: str) -> None:
        self._push(msg)

    def pop(self) -> None:
        self._pop()


def activities(kinds: list[str]) -> list:
    from torch.profiler import ProfilerActivity

    table = {"cpu": ProfilerActivity.CPU, "cuda": ProfilerActivity.CUDA}
    return [table[k] for k in kinds]


def init_for_graphs(kinds: list[str]) -> None:
    """Initialise Kineto (CUPTI) so kernels of graphs captured from now on are traced."""
    from torch.profiler import profile

    with profile(activities=activities(kinds)):
        pass


def profile_steps(
    step: Callable[[], None], n: int, *, device: str, kinds: list[str], nvtx: Nvtx
) -> tuple[Any, float]:
    """Run ``n`` annotated steps under the profiler; the profiler and the wall ms per step."""
    from torch.profiler import profile, record_function

    from tracekit.capture.timing import sync

    sync(device)
    # shapes and stacks stay off: they multiply the trace's size and the profiler's overhead
    with profile(activities=activities(kinds), record_shapes=False, with_stack=False) as prof:
        nvtx.push(WINDOW_NAME)
        t0 = time.perf_counter_ns()
        for i in range(n):
            name = STEP_NAME.format(i=i)
            with record_function(name):
                nvtx.push(name)
                step()
                nvtx.pop()
        sync(device)
        wall_ns = time.perf_counter_ns() - t0
        nvtx.pop()
    return prof, wall_ns / n / 1e6
