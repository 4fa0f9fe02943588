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


def _prefilling_decoding(prefilling: int, decoding: int) -> tuple[str, int]:
    """A forward pass over ``prefilling`` sequences still prefilling and ``decoding`` ones decoding
    a token each: its phase and its batch (idle when both are zero)."""
    if prefilling == 0:
        return ("decode", decoding) if decoding else ("idle", 0)
    return ("mixed" if decoding else "prefill"), prefilling + decoding


def _vllm_new_cached(m: re.Match) -> tuple[str | None, int | None]:
    """vLLM V1 ``execute_new_{N}_cached_{M}``: N requests scheduled for the first time (their
    prompt is prefilled, perhaps in chunks), M already running (each decodes a token). The name
    cannot tell a chunked prefill's later chunks from decode, so a pass with new requests is
    prefill or mixed, and one with none is decode of M sequences."""
    return _prefilling_decoding(int(m["new"]), int(m["cached"]))


def _vllm_context_generation(m: re.Match) -> tuple[str | None, int | None]:
    """vLLM ``execute_[T_]context_{A}(…)_generation_{B}(…)``: A sequences prefilling (or
    continuing a chunked prefill), B sequences decoding one token each."""
    return _prefilling_decoding(int(m["ctx"]), int(m["gen"]))


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
    #: one range is one forward pass by the stack's own definition (a serving engine's step);
    #: False where a range may hold a piece of a pass or several (checked against the kernels)
    one_pass: bool = True


MARKERS: tuple[StepMarker, ...] = (
    StepMarker(
        "sglang_step", "SGLang step[MODE …]", re.compile(r"^step\[(?P<mode>[A-Z_]+)(?P<rest>[^\]]*)\]"),
        "SGLang", "one scheduler step: one forward pass (DECODE, EXTEND = prefill, MIXED)",
        "sglang/srt/managers/scheduler_profiler_mixin.py: record_function(f'step[{mode} …]'), "
        "e.g. 'step[DECODE bs=32]', 'step[EXTEND bs=15 toks=15360]'", _sglang),
    StepMarker(
        "vllm_execute", "vLLM execute_…context_A(…)_generation_B(…)", re.compile(
            r"^execute_(?:\d+_)?context_(?P<ctx>\d+)\([^)]*\)_generation_(?P<gen>\d+)\("),
        "vLLM (and SGLang's model runner)",
        "one model-runner call: one forward pass of A prefilling and B decoding sequences",
        "the model runner's profiler annotation, e.g. 'execute_context_1(888_788544)_generation_0(0)'"
        " or 'execute_32_context_0(sq0sk0…)_generation_32(sq32sk55086…)' (AMD TraceLens' sample "
        "traces of vLLM and SGLang)", _vllm_context_generation),
    StepMarker(
        "vllm_execute", "vLLM execute_new_N_cached_M", re.compile(
            r"^execute_new_(?P<new>\d+)_cached_(?P<cached>\d+)\b"),
        "vLLM (V1 engine)", "one engine step: one forward pass of the scheduled batch",
        "vllm/v1/worker/gpu_worker.py: annotate_profile() names each step "
        "execute_new_{N}_cached_{M}", _vllm_new_cached),
    StepMarker(
        "trtllm_forward", "TensorRT-LLM _forward_step", re.compile(r"^_forward_step\Z"),
        "TensorRT-LLM (PyTorch backend)", "one model forward of the scheduled batch (NVTX)",
        "tensorrt_llm/_torch/pyexecutor/model_engine.py: @nvtx_range('_forward_step')"),
    StepMarker(
        "profiler_step", "ProfilerStep#N", re.compile(r"^ProfilerStep#\d+\Z"),
        "torch.profiler", "one prof.step() period: whatever the loop does between two steps",
        "torch.profiler.profile(schedule=…) + prof.step()", one_pass=False),
    StepMarker(
        "compiled_graph", "torch.compile CompiledFxGraph", re.compile(
            r"^## Call CompiledFxGraph \w+ ##\Z"),
        "torch.compile (Inductor)", "one call of a compiled graph: a whole pass when the model "
        "compiled without graph breaks (pieces of one are merged into passes)",
        "torch/_inductor/output_code.py: record_function(f'## Call CompiledFxGraph {key} ##')",
        one_pass=False),
)


def kind_of(marker: StepMarker, name: str) -> tuple[str | None, int | None]:
    """The kind and batch a marker's name states (``(None, None)`` where it states neither)."""
    m = marker.pattern.search(name)
    return marker.kind_of(m) if m else (None, None)
