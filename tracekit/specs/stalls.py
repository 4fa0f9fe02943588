"""Known causes of host stalls in decode, as data: a signature, the cause, the advice, the sources.

A *stall* (see ``tracekit/host.py``) is one CPU op that held the launching thread far longer than
issuing a launch takes, while the GPU sat idle. Most stalls seen in batch-1 decode come from a
handful of causes, each with a recognisable op on the host. A rule matches when its ``pattern``
(a case-insensitive regular expression) matches the stalling op's name or, failing that, a name in
its stack (innermost first). The first matching rule wins; a stall no rule matches is still
reported, named by its op, with ``cause`` null.

Add a rule when a real trace shows a new cause; give it a source a reader can check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class StallCause:
    name: str
    pattern: str
    cause: str
    advice: str
    sources: tuple[str, ...]
    #: a few words each, for the one-sentence verdict
    short_cause: str = ""
    short_advice: str = ""


#: first match wins; specific before generic
CAUSES: list[StallCause] = [
    StallCause(
        name="cudnn_sdpa_plan",
        pattern=r"_cudnn_attention|cudnn_attention|_scaled_dot_product_cudnn",
        cause="cuDNN SDPA builds a new execution plan (graph) for each new KV length, i.e. every "
              "decode step with a dynamic cache",
        advice="force flash or memory-efficient SDPA (torch.nn.attention.sdpa_kernel("
               "SDPBackend.FLASH_ATTENTION)), or use a static cache so the shapes stop changing",
        sources=(
            "https://github.com/ml-explore/mlx/pull/2743 (cuDNN graph recreated whenever the "
            "sequence length increases)",
            "https://github.com/meta-pytorch/torchtune/issues/1652 (long host overhead of SDPA "
            "on H100, where PyTorch picks cuDNN attention)",
            "https://github.com/sgl-project/sglang/pull/4650 (building the cuDNN SDPA graph "
            "takes hundreds of ms; graphs must be reused)",
            "https://docs.pytorch.org/docs/stable/generated/torch.nn.attention.sdpa_kernel.html",
        ),
        short_cause="cuDNN builds a plan for each new KV length",
        short_advice="force flash attention or use a static cache",
    ),
    StallCause(
        name="host_sync",
        pattern=r"aten::item$|aten::_local_scalar_dense|aten::nonzero|aten::is_nonzero"
                r"|aten::equal$|cudaStreamSynchronize|cudaDeviceSynchronize|cudaEventSynchronize"
                r"|aten::_to_copy|aten::to$|aten::copy_",
        cause="the host waits for the device (.item(), .cpu(), a data-dependent shape, a "
              "blocking copy): the GPU drains its queue, then idles while the host catches up",
        advice="keep the value on the device (e.g. greedy argmax without .item()), copy "
               "asynchronously into pinned memory, or move the check out of the step; "
               "torch.cuda.set_sync_debug_mode('warn') names the call",
        sources=(
            "https://docs.pytorch.org/docs/stable/generated/torch.cuda.set_sync_debug_mode.html",
            "https://docs.pytorch.org/docs/stable/notes/cuda.html#asynchronous-execution",
        ),
        short_cause="the host waits for the device",
        short_advice="keep values on the device and drop the sync",
    ),
    StallCause(
        name="allocator_growth",
        pattern=r"cudaMalloc|cudaFree|cuMemAlloc|cuMemFree|cuMemCreate|cuMemMap"
                r"|aten::empty|aten::resize_|aten::empty_strided|aten::new_empty",
        cause="the CUDA caching allocator grows (cudaMalloc) or returns memory (cudaFree, which "
              "synchronizes) because a tensor of a new size did not fit a cached block",
        advice="pre-allocate (a static KV cache), warm up with the largest shapes first, or set "
               "PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True",
        sources=("https://docs.pytorch.org/docs/stable/notes/cuda.html#memory-management",),
        short_cause="the CUDA caching allocator grows or frees memory",
        short_advice="pre-allocate or use expandable segments",
    ),
    StallCause(
        name="compile_recompile",
        pattern=r"Torch-Compiled Region|torch/_dynamo|_dynamo|CompiledFunction|"
                r"TorchDynamo|compile_fx|Recompil|guard",
        cause="torch.compile re-traces or recompiles (a guard failed: a new shape, dtype or "
              "Python value) or runs Dynamo's frame evaluation on the host",
        advice="mark dynamic dimensions (torch._dynamo.mark_dynamic) or use a static cache; "
               "TORCH_LOGS=recompiles names the failing guard",
        sources=("https://docs.pytorch.org/docs/stable/torch.compiler_troubleshooting.html",),
        short_cause="torch.compile re-traces or recompiles",
        short_advice="mark dynamic dimensions or keep shapes static",
    ),
    StallCause(
        name="graph_capture",
        pattern=r"cudaGraphInstantiate|cudaStreamBeginCapture|cudaStreamEndCapture"
                r"|CUDAGraph|cudagraph",
        cause="a CUDA graph is being captured or instantiated inside the step (a new shape "
              "reached cudagraph trees or a manual capture), which costs far more than a replay",
        advice="warm up every shape you will decode with before timing, or pad to a few "
               "bucketed shapes",
        sources=("https://docs.pytorch.org/docs/stable/notes/cuda.html#cuda-graphs",),
        short_cause="a CUDA graph is captured inside the step",
        short_advice="warm up every shape before timing",
    ),
    StallCause(
        name="jit_compile",
        pattern=r"triton|autotun|nvrtc|cuModuleLoad|cuLibraryLoad|jit",
        cause="a kernel is compiled or autotuned on first use of a shape (Triton/NVRTC JIT, "
              "lazy module loading)",
        advice="warm up with the shapes you will decode with; cache compiled kernels "
               "(TRITON_CACHE_DIR) or set CUDA_MODULE_LOADING=EAGER",
        sources=("https://docs.nvidia.com/cuda/cuda-c-programming-guide/#lazy-loading",),
        short_cause="a kernel is compiled on first use",
        short_advice="warm up with the decode shapes",
    ),
]

_COMPILED = [(c, re.compile(c.pattern, re.IGNORECASE)) for c in CAUSES]


def match_cause(op: str | None, stack: list[str] | tuple[str, ...] = ()) -> StallCause | None:
    """The first known cause whose pattern matches ``op``, else a frame of ``stack`` (innermost
    first); ``None`` when nothing matches."""
    names = ([op] if op else []) + list(reversed(list(stack)))
    for name in names:
        for cause, rx in _COMPILED:
            if rx.search(name):
                return cause
    return None
