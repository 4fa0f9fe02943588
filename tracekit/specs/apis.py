"""Host API calls that put work on a GPU or wait for it, by name, for CUDA and ROCm (HIP). Data.

A trace records each runtime/driver call by name; tracekit needs to know which of them *launch*
GPU work (so that the GPU ops they launched can be matched to them by correlation id and placed
in the step that launched them) and which *block* the host until the device is done (syncs).
Names are matched by prefix, after a version suffix (``_v7000``) is dropped, so the per-thread
stream variants (``hipLaunchKernel_spt``, ``cudaLaunchKernel_ptsz``) and the ``Ex``/``ExC``
forms (``cudaLaunchKernelExC``, ``cuLaunchKernelEx``) need no rows of their own.

On ROCm, torch.profiler writes the HIP calls under the category ``cuda_runtime`` (Kineto reuses
its CUDA activity types), e.g. ``hipLaunchKernel``, ``hipExtModuleLaunchKernel`` (hipBLASLt and
Tensile GEMMs), ``hipModuleLaunchKernel`` (Triton), ``hipGraphLaunch``, ``hipMemcpyWithStream``.
Sources: Kineto's ROCm logger (libkineto/src/RocprofLogger.cpp: ``isKernelApi`` and the copy
APIs it correlates) and the AMD traces under ``sample_traces/peer/`` (MI300X, MI210, MI250).

    >>> [p for p in KERNEL_LAUNCH if p.startswith("hip")][:2]
    ['hipLaunchKernel', 'hipExtLaunchKernel']
"""

from __future__ import annotations

#: calls that launch one kernel (a prefix each)
KERNEL_LAUNCH: tuple[str, ...] = (
    # CUDA runtime and driver (cudaLaunchKernelExC, cuLaunchKernelEx by prefix)
    "cudaLaunchKernel", "cudaLaunchCooperativeKernel", "cuLaunchKernel", "cuLaunchCooperativeKernel",
    # HIP (Kineto's RocprofLogger isKernelApi)
    "hipLaunchKernel", "hipExtLaunchKernel", "hipLaunchCooperativeKernel",
    "hipModuleLaunchKernel", "hipExtModuleLaunchKernel", "hipHccModuleLaunchKernel",
    "hipModuleLaunchCooperativeKernel", "hipExtLaunchMultiKernelMultiDevice",
    "hipDrvLaunchKernelEx",
)
#: calls that replay a captured graph: every kernel of the replay shares the call's correlation id
GRAPH_LAUNCH: tuple[str, ...] = ("cudaGraphLaunch", "cuGraphLaunch", "hipGraphLaunch")
#: calls that copy memory (cudaMemcpyAsync, hipMemcpyWithStream, hipMemcpyDtoH, ... by prefix)
MEMCPY: tuple[str, ...] = ("cudaMemcpy", "cuMemcpy", "hipMemcpy")
#: calls that set memory (cudaMemsetAsync, hipMemsetD32Async, ... by prefix)
MEMSET: tuple[str, ...] = ("cudaMemset", "cuMemset", "hipMemset")

#: calls that block the host until the device (or a stream, or an event) is done
SYNC: tuple[str, ...] = (
    "cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize",
    "cuCtxSynchronize", "cuStreamSynchronize", "cuEventSynchronize",
    "hipDeviceSynchronize", "hipStreamSynchronize", "hipEventSynchronize", "hipCtxSynchronize",
)
#: copies that block the host: every copy call of MEMCPY whose name does not say ``Async``.
#: ``hipMemcpyWithStream`` is one: PyTorch's blocking copy on ROCm (c10/cuda/CUDAFunctions.h,
#: ``memcpy_and_sync``), where CUDA builds use ``cudaMemcpyAsync`` + ``cudaStreamSynchronize``.
BLOCKING_COPY: tuple[str, ...] = MEMCPY
