"""The JSON contract, checked: every committed trace's ``tracekit explain --json`` validates against
``docs/schema/tracekit.explain-1.schema.json`` (and a comparison against the compare schema), and
the schemas reject what the contract forbids (a float count, a missing key, a NaN)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from tracekit.cli import app

if TYPE_CHECKING:  # jsonschema takes ~1.8 s to import (its format checkers): only where used
    from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "docs" / "schema"
TRACES = sorted(p for p in (ROOT / "sample_traces").rglob("*.gz"))
#: committed traces with no decode steps to explain (HTA's benchmark trace: one step, no markers)
#: traces whose explain is one Error line by design (no decode step in them: a non-LLM workload
#: with no step pattern, or one prefill / mixed pass), each checked in test_peer_corpus.py
NO_STEPS = {"benchmark_result_2869224_1695835535_trace.json.gz",
            "mi210_gpu_only.json.gz", "b200_vllm_eager_tp8_rank0.json.gz",
            "mi300x_sglang_qwen3-8b_prefill-decode.json.gz",
            "mi300x_vllm_prefill-decode_piecewise-graph.json.gz",
            "h100_hf_qwen1.5-0.5b-chat.json.gz", "mi300x_hf_qwen1.5-0.5b-chat.json.gz"}


def _validator(name: str) -> Draft202012Validator:
    schema = json.loads((SCHEMAS / name).read_text())
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def _strict(constant: str):
    raise ValueError(f"{constant} is not JSON")


def _cli_json(*args: str) -> dict:
    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output, parse_constant=_strict)  # NaN / Infinity fail here


@pytest.fixture(scope="module")
def explain_schema() -> Draft202012Validator:
    return _validator("tracekit.explain-1.schema.json")


def _errors(v: Draft202012Validator, doc: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in v.iter_errors(doc)]


@pytest.mark.parametrize("path", [p for p in TRACES if p.name not in NO_STEPS],
                         ids=lambda p: p.name)
def test_every_committed_trace_validates(explain_schema, path):
    doc = _cli_json("explain", str(path))
    assert _errors(explain_schema, doc) == []


def test_the_bundled_sample_validates_and_has_every_section(explain_schema):
    doc = _cli_json("explain", "--sample")
    assert _errors(explain_schema, doc) == []
    props = explain_schema.schema["properties"]
    # the optional sections are there for a capture (quantization: only with --baseline)
    assert set(props) - {"quantization"} <= set(doc)


def test_the_schema_rejects_what_the_contract_forbids(explain_schema):
    doc = _cli_json("explain", "--sample")
    bad = copy.deepcopy(doc)
    # counts are integers (JSON Schema takes 1310.0 for an integer: test_report_story checks the
    # parsed types; here a fractional median count)
    bad["summary"]["kernels"] = bad["summary"]["kernels"] + 0.5
    assert any("summary/kernels" in e for e in _errors(explain_schema, bad))
    bad = copy.deepcopy(doc)
    bad["steps"][0]["gpu_busy_ms"] = -1.0  # a negative busy time is a bug, never a result
    assert any("steps/0/gpu_busy_ms" in e for e in _errors(explain_schema, bad))
    bad = copy.deepcopy(doc)
    del bad["decomposition"]["kernel_excess_ms"]  # keys are never removed
    assert _errors(explain_schema, bad)
    bad = copy.deepcopy(doc)
    bad["steps"][0]["kind"] = "mystery"
    assert _errors(explain_schema, bad)
    more = copy.deepcopy(doc)
    more["a_key_added_later"] = {"x": 1}  # additive: new keys are fine
    more["summary"]["a_new_median_ms"] = 1.0
    assert _errors(explain_schema, more) == []
    assert "nan" not in json.dumps(doc).lower().replace("nanosec", "")


def test_a_comparison_validates():
    v = _validator("tracekit.compare-1.schema.json")
    s = ROOT / "sample_traces"
    doc = _cli_json("compare", str(s / "qwen2.5-7b_ctx2048_eager.json.gz"),
                    str(s / "qwen2.5-7b_ctx2048_cuda-graphs.json.gz"))
    assert _errors(v, doc) == []
    bad = copy.deepcopy(doc)
    bad["n_a"] = "3"
    assert _errors(v, bad)
