"""The stacks' step markers (tracekit/specs/markers.py): the kind and batch each name states.

The names are the ones real traces carry (AMD TraceLens' vLLM and SGLang samples under
sample_traces/peer/tracelens, checked there), and vLLM V1's execute_new_N_cached_M as its worker
writes it."""

from __future__ import annotations

import pytest

from tracekit.specs.markers import MARKERS, kind_of


def _marker(name: str):
    return next(m for m in MARKERS if m.pattern.search(name))


@pytest.mark.parametrize(("name", "method", "kind", "batch"), [
    ("execute_context_1(888_788544)_generation_0(0)", "vllm_execute", "prefill", 1),
    ("execute_32_context_0(sq0sk0sqsq0sqsk0)_generation_32(sq32sk55086sqsq32sqsk55086)",
     "vllm_execute", "decode", 32),
    ("execute_8192_context_9(sq8155sk8430sqsq7475785sqsk7671310)_generation_37(sq37",
     "vllm_execute", "mixed", 46),
    ("execute_new_0_cached_4", "vllm_execute", "decode", 4),
    ("execute_new_2_cached_0", "vllm_execute", "prefill", 2),
    ("execute_new_1_cached_3", "vllm_execute", "mixed", 4),
    ("execute_new_0_cached_0", "vllm_execute", "idle", 0),
    ("step[DECODE bs=32]", "sglang_step", "decode", 32),
    ("step[EXTEND bs=15 toks=15360]", "sglang_step", "prefill", 15),
    ("step[IDLE]", "sglang_step", "idle", None),
    ("_forward_step", "trtllm_forward", None, None),
    ("ProfilerStep#12", "profiler_step", None, None),
    ("## Call CompiledFxGraph fal4xpiah2v6blbfmwwonu52dvevbsmlh743q5tkclrt4gcqpzea ##",
     "compiled_graph", None, None),
])
def test_each_marker_states_its_kind_and_batch(name, method, kind, batch):
    m = _marker(name)
    assert m.name == method
    assert kind_of(m, name) == (kind, batch)


@pytest.mark.parametrize("name", ["tracekit.step#3", "decode_step#1", "execute_model",
                                  "_forward_step_inter_pp", "ProfilerStep#", "step[decode]"])
def test_names_that_are_not_a_stacks_marker(name):
    assert not any(m.pattern.search(name) for m in MARKERS)


def test_sglang_is_tried_before_its_model_runners_execute_range():
    """SGLang's trace nests step[DECODE bs=32] inside an execute_… range: the innermost marker,
    SGLang's own, comes first."""
    order = [m.name for m in MARKERS]
    assert order.index("sglang_step") < order.index("vllm_execute")
    assert all(m.source for m in MARKERS)  # every marker says where a reader can check it
