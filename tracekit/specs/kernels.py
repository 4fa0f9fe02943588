"""Kernel categories, by name. Data, not logic: the first rule whose pattern matches wins.

Names are matched case-insensitively against the demangled kernel name Kineto and Nsight record.
The rules are deliberately coarse — the question is "where does the step go", not which tile
shape cuBLAS picked. Copies and memsets are categorised by op kind before any rule runs.
"""

from __future__ import annotations

import re
from enum import Enum


class KernelCategory(str, Enum):
    GEMM = "gemm"  # GEMM/GEMV: cuBLAS(Lt), nvjet, cutlass, Triton mm, split-K reduction
    ATTENTION = "attention"  # SDPA / flash / memory-efficient / paged attention
    NORMALIZATION = "normalization"  # RMSNorm, LayerNorm
    ELEMENTWISE = "elementwise"  # activations, rotary, adds/muls, casts, fused pointwise
    REDUCTION = "reduction"  # softmax over logits, argmax/top-k, sampling, reductions
    COPY = "copy"  # memcpy, memset, cat/index/copy kernels
    COMMUNICATION = "communication"  # NCCL and friends
    OTHER = "other"
    # quantized decode (see QUANT_RULES)
    QUANT_GEMM = "quant_gemm"  # GEMV/GEMM reading low-bit weights: tinygemm, Marlin, fp8 _scaled_mm
    DEQUANT = "dequant"  # kernels that only unpack/dequantize weights for a bf16 GEMM


#: (category, pattern) — order matters; the first match wins
RULES: list[tuple[KernelCategory, str]] = [
    (KernelCategory.COMMUNICATION, r"nccl|all_?reduce|all_?gather|reduce_?scatter|alltoall|nvshmem"),
    # RCCL keeps NCCL's kernel names; vLLM's custom all-reduce (csrc/custom_all_reduce.cuh)
    (KernelCategory.COMMUNICATION, r"rccl|cross_device_reduce"),
    # KV-cache writes, before attention: vLLM's reshape_and_cache_flash_kernel says "flash"
    (KernelCategory.COPY, r"reshape_and_cache|concat_and_cache|store_kvcache"),
    (KernelCategory.ATTENTION, r"flash|fmha|attention|attn|sdpa|mha_|xformers|paged|decode_kernel"
                               r"|cutlass.*kernel.*(mha|attn)|_scaled_dot_product|flashinfer"),
    (KernelCategory.GEMM, r"gemm|gemv|nvjet|cublas|cutlass|sm\d+_xmma|xmma_|matmul|_mm_|triton_tem"
                          r"|splitkreduce|s16816|h16816|wgmma|bmm|dot_kernel|addmm|cudnn.*conv"),
    # FlashInfer's kernels by their own names (no "attention" in BatchPrefillWithRaggedKVCache...)
    (KernelCategory.ATTENTION, r"prefillwith|decodewith|mergestate"),
    # ROCm GEMMs: Tensile (rocBLAS, hipBLASLt) kernels are named Cijk_<layout>_..., CK's by op
    (KernelCategory.GEMM, r"^cijk_|rocblas|hipblaslt|tensile"),
    # MoE grouped GEMMs: fused_moe (vLLM/SGLang Triton), aiter fmoe (Marlin and Machete, quantized
    # GEMMs, are QUANT_GEMM: see QUANT_RULES)
    (KernelCategory.GEMM, r"fused_moe|fmoe"),
    # MoE routing (top-k, histogram, sort/align of tokens to experts), before copy: SGLang/vLLM
    # triton_kernels' _combined_routing_memset says "memset"
    (KernelCategory.REDUCTION, r"moe_align|routing|bitmatrix|topk_gating|grouped_topk"),
    # rotary embedding, before copy ("embedding")
    (KernelCategory.ELEMENTWISE, r"rotary"),
    # RMSNorm as Inductor fuses it: triton_red_fused_add_mean_mul_pow_rsqrt_0
    (KernelCategory.NORMALIZATION, r"triton_(red|per)_fused.*pow.*rsqrt"),
    (KernelCategory.NORMALIZATION, r"rms_?norm|layer_?norm|batch_?norm|group_?norm|\bnorm|_norm"),
    (KernelCategory.REDUCTION, r"softmax|argmax|argmin|topk|top_k|sort|radix|sampl|reduce_kernel"
                               r"|reduction|_red_|_per_|multinomial|cumsum|scan|triton_red"),
    (KernelCategory.COPY, r"copy|memcpy|memset|cat_?array|catarray|index_?select|indexselect"
                          r"|gather|scatter|fill|transpose|contiguous|embedding"),
    (KernelCategory.ELEMENTWISE, r"elementwise|vectorized|pointwise|triton_poi|unrolled|activation"
                                 r"|silu|gelu|swiglu|rotary|rope|mul|add|exp|sigmoid|tanh|pow|rsqrt"
                                 r"|neg|where|clamp|cast|arange"),
]

#: quantized decode, matched after communication and attention and before every other rule (a
#: tinygemm kernel is a GEMM by name, but what matters is that it reads 4-bit weights):
#: low-bit GEMV/GEMM — PyTorch's tinygemm (``_weight_int4pack_mm``: ``tinygemm_m16n8k16_…``) and
#: ``_weight_int8pack_mm``, the Marlin family (Marlin, Machete, AWQ/GPTQ kernels, ExLlama),
#: bitsandbytes' 4-bit GEMV (``kgemm_4bit_inference``), fp8 GEMMs (``_scaled_mm`` → cuBLASLt /
#: CUTLASS kernels named by their e4m3/e5m2 operands); dequantization — kernels that name it
#: (bitsandbytes ``kDequantizeBlockwise``, torchao/Triton ``dequantize``, int4 unpacking). A
#: dequantize built from plain aten ops (torchao's NF4 path in eager) runs as elementwise/copy
#: kernels, which no name can tell apart: ``tracekit explain --baseline`` shows it as the time
#: those categories gained over the bf16 step.
QUANT_RULES: list[tuple[KernelCategory, str]] = [
    (KernelCategory.DEQUANT, r"dequant|unpack_?int4|unpack_?4bit"),
    (KernelCategory.QUANT_GEMM, r"tinygemm|int4pack|int8pack|_weight_int[48]|marlin|machete"
                                r"|exllama|gptq|awq_|gemv_?4bit|gemm_?4bit|kgemm_4bit|w4a16|w8a16"
                                r"|wint4|wint8|e4m3|e5m2|f8f8|fp8.*gemm|gemm.*fp8|scaled_mm"),
]
QUANT_CATEGORIES = (KernelCategory.QUANT_GEMM, KernelCategory.DEQUANT)


def _split_top(rx: str, sep: str) -> list[str]:
    """``rx`` split at ``sep`` where it is outside every group."""
    parts, depth, cur, i = [], 0, "", 0
    while i < len(rx):
        if rx[i] == "\\":
            cur += rx[i:i + 2]
            i += 2
            continue
        if rx[i] == "(":
            depth += 1
        elif rx[i] == ")":
            depth -= 1
        if depth == 0 and rx.startswith(sep, i):
            parts.append(cur)
            cur, i = "", i + len(sep)
            continue
        cur += rx[i]
        i += 1
    return [*parts, cur]


class _Rule:
    """One rule, matched in time linear in the name.

    Python's ``re`` backtracks: ``cutlass.*kernel.*(mha|attn)`` searched over a 100 KB name of
    repeated ``kernel`` takes quadratic time (42 s). So the alternatives without ``.*`` run as one
    regex — each of them a literal with at most a bounded class, which cannot backtrack far — and
    an alternative ``a.*b.*c`` runs as successive searches, each from where the previous match
    ended: the leftmost match of each part leaves the most room for the next, so this finds a
    match exactly when the regex would, and reads the name once per part.
    """

    def __init__(self, rx: str) -> None:
        alts = _split_top(rx, "|")
        plain = [a for a in alts if ".*" not in a]
        self.plain = re.compile("|".join(plain)) if plain else None
        self.ordered = [[re.compile(p) for p in _split_top(a, ".*")]
                        for a in alts if ".*" in a]

    def search(self, name: str) -> bool:
        """Whether the rule matches ``name`` (already lower-cased)."""
        if self.plain is not None and self.plain.search(name):
            return True
        for parts in self.ordered:
            pos = 0
            for part in parts:
                m = part.search(name, pos)
                if m is None:
                    break
                pos = m.end()
            else:
                return True
        return False


#: the quantized rules go in after RULES' first attention rule (communication, the KV-cache writes
#: and attention keep their names' priority) and before every GEMM rule
_AT = next(i for i, (cat, _) in enumerate(RULES) if cat == KernelCategory.ATTENTION) + 1
_COMPILED = [(cat, _Rule(rx)) for cat, rx in RULES[:_AT] + QUANT_RULES + RULES[_AT:]]


def categorize(name: str, kind: str = "kernel") -> KernelCategory:
    """The category of one GPU op."""
    if kind in ("memcpy", "memset"):
        return KernelCategory.COPY
    name = name.lower()  # the rules are lower case: cheaper than matching with IGNORECASE
    for cat, rule in _COMPILED:
        if rule.search(name):
            return cat
    return KernelCategory.OTHER


def short_name(name: str) -> str:
    """The bare function name of a demangled kernel: no return type, namespaces, template or
    call arguments. Kineto and Nsight demangle differently (``(anonymous namespace)`` vs
    ``<unnamed>``, ``2`` vs ``(int)2``); their short names agree.

        >>> short_name("void at::native::(anonymous namespace)::indexSelectSmallIndex<float, 2>(int)")
        'indexSelectSmallIndex'
    """
    out, depth = [], 0
    for ch in name:
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth = max(depth - 1, 0)
        elif depth == 0:
            out.append(ch)
    base = "".join(out).strip()
    base = base.split(" ")[-1] if " " in base else base  # drop a return type
    return base.rsplit("::", 1)[-1] or name
