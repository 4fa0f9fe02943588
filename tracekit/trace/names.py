"""What an event's category and name say it is: a GPU op, a launch, a sync, an annotation, a CPU op.

Both readers classify with these rules: the Kineto reader by an event's ``cat`` and ``name``, the
Nsight reader (:mod:`tracekit.trace.nsys`) an API call by its name. Each rule runs once per
distinct value (a trace has a few hundred), never once per event.

* categories — ``kernel``/``gpu_memcpy``/``gpu_memset`` are GPU ops (old traces: ``Kernel``,
  ``Memcpy``, ``Memset``); ``cuda_runtime``/``cuda_driver`` hold launch and sync calls (on ROCm
  the HIP calls, ``hipLaunchKernel`` & co., under ``cuda_runtime``); ``cuda_sync`` marks host
  waits; ``user_annotation``/``gpu_user_annotation`` are ``record_function`` ranges;
  ``cpu_op``/``operator`` are CPU ops. Categories that carry nothing tracekit needs are skipped
  without a word; any other is skipped and counted (``meta["skipped_categories"]``).
* API names — a launch, a graph launch, a copy or a memset by its prefix, a sync by its name;
  the prefixes are data (:mod:`tracekit.specs.apis`).

    >>> route("gpu_memcpy"), launch_kind("cudaLaunchKernel_v7000"), is_sync_call("cudaDeviceSynchronize")
    ('gpu', 'kernel', True)
"""

from __future__ import annotations

import functools
import re

from tracekit.specs import apis

#: GPU op categories -> the op's kind
GPU_CATS = {"kernel": "kernel", "gpu_memcpy": "memcpy", "memcpy": "memcpy",
            "gpu_memset": "memset", "memset": "memset"}
#: API call categories -> which API
API_CATS = {"cuda_runtime": "runtime", "runtime": "runtime",
            "cuda_driver": "driver", "driver": "driver"}
#: annotation categories -> whether the range is on the GPU's timeline
ANNOTATION_CATS = {"user_annotation": False, "gpu_user_annotation": True}
CPU_OP_CATS = {"cpu_op", "operator"}
#: categories that carry nothing tracekit needs; skipped without a warning
IGNORED_CATS = {
    "python_function", "ac2g", "fwdbwd", "overhead", "trace",
    "cpu_instant_event", "python_gc", "gpu_instant_event", "mtia_runtime", "privateuse1_runtime",
    "memory", "kernel_activity", "",
    "tracekit",  # the tracks `tracekit annotate` adds: tracekit's own findings, not trace data
}
#: CUPTI's range profiler (torch.profiler's experimental_config=profiler_metrics): one record of
#: counters per range instead of kernel events; routed as unknown so the reader can say so
RANGE_CAT = "cuda_profiler_range"

#: the values of the small string columns (coded as uint8 while reading) and their codes
GPU_KINDS = ["kernel", "memcpy", "memset"]
LAUNCH_KINDS = ["kernel", "graph", "memcpy", "memset"]
APIS = ["runtime", "driver"]
GPU_KIND_CODE = {c: GPU_KINDS.index(k) for c, k in GPU_CATS.items()}
LAUNCH_KIND_CODE = {k: i for i, k in enumerate(LAUNCH_KINDS)}
API_CODE = {c: APIS.index(a) for c, a in API_CATS.items()}

#: what each category's events become (checked before lower-casing: the common spellings are exact)
_ROUTE: dict[str, str] = {
    **{c: "gpu" for c in GPU_CATS}, **{c: "api" for c in API_CATS}, "cuda_sync": "api",
    **{c: "ann" for c in ANNOTATION_CATS}, **{c: "cpu" for c in CPU_OP_CATS},
    **{c: "skip" for c in IGNORED_CATS},
}


def route(cat: str | None) -> str:
    """Which table a category's events go to: ``gpu``, ``api``, ``ann``, ``cpu``, ``skip``
    (read and dropped) or ``unknown`` (dropped and counted). Case does not matter."""
    if cat is None:
        return "skip"
    r = _ROUTE.get(cat)
    if r is None:
        r = _ROUTE.get(cat.lower(), "unknown")
    return r


def _prefixes(names: tuple[str, ...]) -> re.Pattern:
    return re.compile("|".join(map(re.escape, names)))


# CUDA runtime/driver and HIP calls, by prefix
_KERNEL_LAUNCH = _prefixes(apis.KERNEL_LAUNCH)
_GRAPH_LAUNCH = _prefixes(apis.GRAPH_LAUNCH)
_MEMCPY = _prefixes(apis.MEMCPY)
_MEMSET = _prefixes(apis.MEMSET)
#: a sync call, or a copy whose name does not say Async (cudaMemcpy, hipMemcpyWithStream)
_SYNC = re.compile(f"{_prefixes(apis.SYNC).pattern}"
                   f"|(?:{_prefixes(apis.BLOCKING_COPY).pattern})(?!.*Async)")
_VERSION_SUFFIX = re.compile(r"_v\d+$")


@functools.lru_cache(maxsize=4096)
def launch_kind(name: str) -> str | None:
    """``kernel``/``graph``/``memcpy``/``memset`` for an API call that puts work on a GPU, else None."""
    name = _VERSION_SUFFIX.sub("", name)
    if _KERNEL_LAUNCH.match(name):
        return "kernel"
    if _GRAPH_LAUNCH.match(name):
        return "graph"
    if _MEMCPY.match(name):
        return "memcpy"
    if _MEMSET.match(name):
        return "memset"
    return None


@functools.lru_cache(maxsize=4096)
def is_sync_call(name: str) -> bool:
    """True for an API call that makes the host wait for the GPU (a sync, a blocking copy)."""
    return bool(_SYNC.match(_VERSION_SUFFIX.sub("", name)))
