"""The published numbers of the study tracekit grew from, as data (restated: users have no copy).

J. Chen, "Memory-Bound but Not Bandwidth-Limited: The Physical AI Inference Gap in Batch-1 LLM
Decode", arXiv 2605.30571 (2026). Three 7–8B GQA transformers (Qwen-2.5-7B, Llama-3.1-8B,
Mistral-7B) × four GPUs (H100 SXM5, A100-80GB SXM4, L40S, L4) × context 2048–16384, bf16, SDPA
attention, batch 1; each cell the median of 30 decode steps after 5 warm-up. Its memory floor is
``(W + K) / B_peak`` — all weight bytes plus the KV cache over the datasheet peak bandwidth
(tracekit's ``all-weights`` convention) — and R_floor = floor ÷ observed step time.

Only numbers the paper states are here; nothing is read off its figures.
"""

from __future__ import annotations

from typing import TypedDict

PAPER = ("J. Chen, Memory-Bound but Not Bandwidth-Limited: The Physical AI Inference Gap in "
         "Batch-1 LLM Decode, arXiv 2605.30571 (2026)")

#: R_floor the paper states (Qwen-2.5-7B, ctx 2048, bf16, all-weights floor over datasheet peak)
R_FLOOR = [
    {"gpu": "H100 SXM5", "model": "qwen2.5-7b", "ctx": 2048, "r_floor": 0.27, "approx": True},
    {"gpu": "L4", "model": "qwen2.5-7b", "ctx": 2048, "r_floor": 0.81, "approx": True},
]

#: CUDA Graphs A/B (eager ÷ graphs), N fresh sessions, 95 % bootstrap CI
CUDA_GRAPHS_AB = [
    {"gpu": "H100 SXM5", "model": "qwen2.5-7b", "ctx": 2048, "sessions": 10, "speedup": 1.259,
     "ci_low": 1.253, "ci_high": 1.267},
    {"gpu": "L4", "model": "qwen2.5-7b", "ctx": 2048, "sessions": None, "speedup": 1.028,
     "ci_low": None, "ci_high": None},
]

#: L4 decode paths, ms per step. The paper gives ms/step only; model and context are those of
#: its L4 headline (Qwen-2.5-7B at ctx 2048): its bf16 row over the 51.2 ms all-weights floor is
#: the ≈81 % R_floor it states for that cell. ``dtype`` is tracekit's floor format for the path.
class DecodePath(TypedDict):
    path: str
    dtype: str
    ms_per_step: float


L4_QUANTIZED: list[DecodePath] = [
    {"path": "bf16 (HF transformers)", "dtype": "bf16", "ms_per_step": 62.32},
    {"path": "bitsandbytes nf4", "dtype": "nf4", "ms_per_step": 59.36},
    {"path": "AutoAWQ + Marlin", "dtype": "int4", "ms_per_step": 45.24},
    {"path": "GPTQ + ExLlamaV2", "dtype": "int4", "ms_per_step": 17.36},
]
L4_QUANTIZED_MODEL, L4_QUANTIZED_CTX, L4_QUANTIZED_GPU = "qwen2.5-7b", 2048, "L4"
