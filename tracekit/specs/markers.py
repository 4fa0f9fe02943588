"""The step markers inference stacks write into their traces. Data, not logic.

A decode step is one model forward pass. Where a stack marks its passes (or its engine iterations,
each one forward pass) with a named range, that range is the step, and its text often says what
the pass was: how many sequences it decoded, whether it prefilled. Each entry is a pattern over the
annotation's name (CPU ``user_annotation``/``cpu_op`` range, or an NVTX range in an Nsight export),
the stack that writes it, what one range marks, a source a reader can check, and how the name tells
the step's kind and batch.

Kinds: ``decode`` (every sequence in the pass decodes one token), ``prefill`` (prompt tokens only),
``mixed`` (chunked prefill and decode in one pass), ``idle`` (an engine iteration with no forward
pass), ``None`` (the name does not say: tracekit decides from the pass's GPU work).

The entries are tried in order; the first whose ranges hold GPU work is used.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

#: (kind, batch) read from a marker's name; batch None when the name does not say
KindOf = Callable[[re.Match], "tuple[str | None, int | None]"]


def _unknown(m: re.Match) -> tuple[str | None, int | None]:
    return None, None


def _vllm_new_cached(m: re.Match) -> tuple[str | None, int | None]:
    """vLLM V1 ``execute_new_{N}_cached_{M}``: N requests scheduled for the first time (their
    prompt is prefilled, perhaps in chunks), M already running (each decodes a token). The name
    cannot tell a chunked prefill's later chunks from decode, so a pass with new requests is
    prefill or mixed, and one with none is decode of M sequences."""
    new, cached = int(m["new"]), int(m["cached"])
    if new == 0:
        return ("decode", cached) if cached else ("idle", 0)
    return ("mixed" if cached else "prefill"), new + cached


def _vllm_context_generation(m: re.Match) -> tuple[str | None, int | None]:
    """vLLM ``execute_context_{A}({a})_generation_{B}({b})``: A sequences prefilling ``a`` tokens,
    B sequences decoding ``b`` tokens."""
    ctx, gen = int(m["ctx"]), int(m["gen"])
    if ctx == 0:
        return ("decode", gen) if gen else ("idle", 0)
    return ("mixed" if gen else "prefill"), ctx + gen


def _sglang(m: re.Match) -> tuple[str | None, int | None]:
    """SGLang ``step[MODE …]``: the forward mode (DECODE, EXTEND — a prefill —, MIXED, IDLE …)
    and, where written, ``bs=N``."""
    mode = m["mode"].upper()
    bs = re.search(r"\bbs\s*[=:]\s*(\d+)", m["rest"] or "")
    batch = int(bs.group(1)) if bs else None
    kind = {"DECODE": "decode", "TARGET_VERIFY": "decode", "EXTEND": "prefill",
            "PREFILL": "prefill", "MIXED": "mixed", "IDLE": "idle"}.get(mode)
    return kind, batch


@dataclass(frozen=True)
class StepMarker:
    name: str  #: the detection method reported when this marker finds the steps
    label: str  #: how the detail names its ranges: "10 {label} ranges"
    pattern: re.Pattern
    stack: str
    marks: str  #: what one range is
    source: str  #: where a reader can check the name
    kind_of: KindOf = _unknown


MARKERS: tuple[StepMarker, ...] = (
    StepMarker(
        "vllm_execute", "vLLM execute_new_N_cached_M", re.compile(r"^execute_new_(?P<new>\d+)_cached_(?P<cached>\d+)\b"),
        "vLLM (V1 engine)", "one engine step: one forward pass of the scheduled batch",
        "vllm/v1/worker/gpu_worker.py: annotate_profile() names each step "
        "execute_new_{N}_cached_{M}", _vllm_new_cached),
    StepMarker(
        "vllm_execute", "vLLM execute_context_A(a)_generation_B(b)", re.compile(
            r"^execute_context_(?P<ctx>\d+)\((?P<ctx_tokens>\d+)\)_generation_(?P<gen>\d+)"
            r"\((?P<gen_tokens>\d+)\)"),
        "vLLM", "one model-runner call: one forward pass of the scheduled batch",
        "vLLM's model runner profiler annotation execute_context_A(a)_generation_B(b)",
        _vllm_context_generation),
    StepMarker(
        "sglang_step", "SGLang step[MODE …]", re.compile(r"^step\[(?P<mode>[A-Z_]+)(?P<rest>[^\]]*)\]"),
        "SGLang", "one scheduler step: one forward pass (DECODE, EXTEND = prefill, MIXED)",
        "sglang/srt/managers/scheduler_profiler_mixin.py: record_function(f'step[{mode} …]')",
        _sglang),
    StepMarker(
        "trtllm_forward", "TensorRT-LLM _forward_step", re.compile(r"^_forward_step\Z"),
        "TensorRT-LLM (PyTorch backend)", "one model forward of the scheduled batch (NVTX)",
        "tensorrt_llm/_torch/pyexecutor/model_engine.py: @nvtx_range('_forward_step')"),
    StepMarker(
        "profiler_step", "ProfilerStep#N", re.compile(r"^ProfilerStep#\d+\Z"),
        "torch.profiler", "one prof.step() period: whatever the loop does between two steps",
        "torch.profiler.profile(schedule=…) + prof.step()"),
)


def kind_of(marker: StepMarker, name: str) -> tuple[str | None, int | None]:
    """The kind and batch a marker's name states (``(None, None)`` where it states neither)."""
    m = marker.pattern.search(name)
    return marker.kind_of(m) if m else (None, None)
