"""The typed contract (tracekit/contract.py) against the documents and against the published schema.

* ``explain --json`` of committed traces of every kind (Kineto eager with a capture block, CUDA
  graphs, torch.compile, Nsight, HF generate, traces made by others on AMD and NVIDIA: vLLM,
  SGLang, HTA's, an HPC Nsight export) converts to ``ExplainDoc`` with msgspec
  (a wrong type fails), and has no key the types do not declare (a new key must enter the
  contract first);
* the same for ``compare --json`` and ``CompareDoc``;
* the committed JSON Schemas (docs/schema/) agree with the types: every key the schema lists is a
  key of the type, with a JSON type the schema admits; every key the schema requires, the type
  requires; every key the type declares, the schema lists.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

import msgspec
import pytest
from click.testing import CliRunner

from tracekit.breakdown import GAP_CLASSES, GapClass
from tracekit.cli import app
from tracekit.contract import CompareDoc, ExplainDoc, GapName, IdleByClass, Unprofiled, WhatIf

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_traces"
SCHEMAS = ROOT / "docs" / "schema"

#: one committed trace per kind of input the contract must describe
TRACES = {
    "kineto eager, capture block": "h100/qwen2.5-7b_ctx2048_eager.json.gz",
    "CUDA graphs": "h100/qwen2.5-7b_ctx2048_cuda-graphs.json.gz",
    "torch.compile": "h100/qwen2.5-7b_ctx2048_compile.json.gz",
    "Nsight Systems": "qwen2.5-7b_ctx2048_eager_nsys.sqlite.gz",
    "HF generate, prefill then decode": "generate/h100/gen7b_qwen2.5-7b.json.gz",
    "no capture block, no model": "plain_qwen2.5-7b_ctx2048_eager_annotated.json.gz",
    "peer: vLLM full graph, MI300X": "peer/tracelens/mi300x_vllm_decode_full-graph_bs32.json.gz",
    "peer: SGLang batch 32, MI300X": "peer/tracelens/mi300x_sglang_qwen3-8b_decode_bs32.json.gz",
    "peer: HTA training ranks": "peer/hta/rank0.json.gz",
    "peer: Nsight, A100 (pipit)": "peer/pipit/a100_saxpy_mpi_cuda_nsys.sqlite.gz",
}


def _cli_json(*args: str) -> dict:
    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


# -- walking a document along its type --------------------------------------------------------
def _arms(tp: Any) -> tuple:
    return get_args(tp) if get_origin(tp) in (Union, types.UnionType) else (tp,)


def _fits(value: Any, tp: Any) -> bool:
    """Whether ``value`` has the JSON shape of ``tp`` (object, array or scalar)."""
    if isinstance(value, dict):
        return is_typeddict(tp) or get_origin(tp) is dict or tp is Any
    if isinstance(value, list):
        return get_origin(tp) is list or tp is Any
    return not (is_typeddict(tp) or get_origin(tp) in (dict, list))


def undeclared(value: Any, tp: Any, path: str = "$") -> list[str]:
    """The paths of keys in ``value`` that ``tp`` does not declare (wrong types are msgspec's
    to report)."""
    arm = next((a for a in _arms(tp) if a is not type(None) and _fits(value, a)), None)
    if arm is None or arm is Any:
        return []
    if is_typeddict(arm):
        hints = get_type_hints(arm)
        out = [f"{path}.{k}" for k in value if k not in hints]
        for k, v in value.items():
            if k in hints:
                out += undeclared(v, hints[k], f"{path}.{k}")
        return out
    if get_origin(arm) is list:
        return [p for i, v in enumerate(value) for p in undeclared(v, get_args(arm)[0],
                                                                       f"{path}[{i}]")]
    if get_origin(arm) is dict:
        return [p for k, v in value.items() for p in undeclared(v, get_args(arm)[1],
                                                                   f"{path}.{k}")]
    return []


def _check(doc: dict, tp: Any) -> None:
    msgspec.convert(doc, tp)  # raises msgspec.ValidationError naming the path of a wrong type
    assert undeclared(doc, tp) == []


@pytest.fixture(scope="module", params=list(TRACES), ids=list(TRACES))
def explained(request) -> dict:
    return _cli_json("explain", str(SAMPLES / TRACES[request.param]))


def test_explain_documents_match_the_types(explained):
    _check(explained, ExplainDoc)


def test_the_sample_with_a_quantized_baseline_matches_the_types():
    q = SAMPLES / "quant" / "h100"
    doc = _cli_json("explain", str(q / "qwen2.5-7b_ctx2048_eager_int4.json.gz"),
                    "--baseline", str(q / "qwen2.5-7b_ctx2048_eager_bf16.json.gz"))
    assert "quantization" in doc
    _check(doc, ExplainDoc)


def test_a_comparison_matches_the_types():
    doc = _cli_json("compare", str(SAMPLES / "qwen2.5-7b_ctx2048_eager.json.gz"),
                    str(SAMPLES / "qwen2.5-7b_ctx2048_cuda-graphs.json.gz"))
    _check(doc, CompareDoc)


def test_the_types_reject_what_the_contract_forbids():
    doc = _cli_json("explain", "--sample")
    _check(doc, ExplainDoc)
    bad = json.loads(json.dumps(doc))
    bad["summary"]["kernels"] = 1310.5  # counts are integers
    with pytest.raises(msgspec.ValidationError, match=r"summary.*kernels"):
        msgspec.convert(bad, ExplainDoc)
    bad = json.loads(json.dumps(doc))
    bad["steps"][0]["kind"] = "mystery"  # a step kind outside the enum
    with pytest.raises(msgspec.ValidationError, match=r"steps\[0\]\.kind"):
        msgspec.convert(bad, ExplainDoc)
    bad = json.loads(json.dumps(doc))
    del bad["decomposition"]["kernel_excess_ms"]  # a required key
    with pytest.raises(msgspec.ValidationError, match="kernel_excess_ms"):
        msgspec.convert(bad, ExplainDoc)
    bad = json.loads(json.dumps(doc))
    bad["whatif"]["a_new_ms"] = 1.0  # a key nobody added to the contract
    bad["steps"][2]["another"] = None
    assert sorted(undeclared(bad, ExplainDoc)) == ["$.steps[2].another", "$.whatif.a_new_ms"]


def test_the_sections_another_change_extends_take_additive_keys():
    """``whatif`` and ``unprofiled`` grow keys (intervals, the calibration source): each has a
    ``total=False`` part, so a new key is one optional line and older documents still convert."""
    assert WhatIf.__optional_keys__ >= {"no_stalls_ms", "no_stalls_speedup"}
    assert "calibration_source" not in Unprofiled.__required_keys__


def test_the_gap_classes_are_the_contract_keys():
    """breakdown.GAP_CLASSES is typed as the contract's GapName: the enum, the list, the literal
    and the keys of ``idle_by_class_ms`` must name the same classes in the same order."""
    names = [g.value for g in GapClass]
    assert GAP_CLASSES == names == list(get_args(GapName)) == list(IdleByClass.__annotations__)


# -- the published schema against the types ---------------------------------------------------
_JSON_TYPES = {int: {"integer"}, float: {"number"}, str: {"string"}, bool: {"boolean"},
               type(None): {"null"}}


def _json_types(tp: Any) -> set[str]:
    out: set[str] = set()
    for a in _arms(tp):
        if a is Any:
            return {"any"}
        if get_origin(a) is Literal:
            out |= {next(iter(_JSON_TYPES[type(v)])) for v in get_args(a)}
        elif is_typeddict(a) or get_origin(a) is dict:
            out.add("object")
        elif get_origin(a) is list:
            out.add("array")
        else:
            out |= _JSON_TYPES[a]
    return out


def _schema_types(node: dict) -> set[str] | None:
    """The JSON types a schema node admits (None: any)."""
    if "type" in node:
        t = node["type"]
        got = set(t) if isinstance(t, list) else {t}
    elif "enum" in node or "const" in node:
        vals = node.get("enum", [node.get("const")])
        got = {next(iter(_JSON_TYPES[type(v)])) for v in vals}
    elif "oneOf" in node or "anyOf" in node:
        arms = [_schema_types(n) for n in node.get("oneOf", node.get("anyOf"))]
        if any(a is None for a in arms):
            return None
        got = set().union(*arms)  # type: ignore[arg-type]
    else:
        return None
    return got | {"integer"} if "number" in got else got


def _object_node(node: dict) -> dict:
    for arm in node.get("oneOf", node.get("anyOf", [])):
        if "properties" in arm:
            return arm
    return node


def schema_mismatches(node: dict, tp: Any, path: str = "$") -> list[str]:
    out = []
    allowed, have = _schema_types(node), _json_types(tp)
    if allowed is not None and "any" not in have and not have <= allowed:
        out.append(f"{path}: the types admit {sorted(have - allowed)}, the schema does not")
    obj = next((a for a in _arms(tp) if is_typeddict(a)), None)
    lst = next((a for a in _arms(tp) if get_origin(a) is list), None)
    node = _object_node(node)
    if obj is not None and "properties" in node:
        hints = get_type_hints(obj)
        props = node["properties"]
        out += [f"{path}.{k}: in the schema, not in {obj.__name__}" for k in props if k not in hints]
        out += [f"{path}.{k}: in {obj.__name__}, not in the schema" for k in hints if k not in props]
        out += [f"{path}.{k}: required by the schema, optional in {obj.__name__}"
                for k in node.get("required", []) if k not in obj.__required_keys__]
        for k in props.keys() & hints.keys():
            out += schema_mismatches(props[k], hints[k], f"{path}.{k}")
    elif lst is not None and isinstance(node.get("items"), dict):
        out += schema_mismatches(node["items"], get_args(lst)[0], f"{path}[]")
    return out


@pytest.mark.parametrize(("name", "tp"), [("tracekit.explain-1.schema.json", ExplainDoc),
                                          ("tracekit.compare-1.schema.json", CompareDoc)])
def test_the_published_schema_agrees_with_the_types(name, tp):
    schema = json.loads((SCHEMAS / name).read_text())
    assert schema_mismatches(schema, tp) == []


def test_the_schema_check_catches_a_drift():
    """The comparison above fails on each kind of drift (an independent edit of the schema)."""
    schema = json.loads((SCHEMAS / "tracekit.explain-1.schema.json").read_text())
    schema["properties"]["whatif"]["properties"]["gone_ms"] = {"type": "number"}
    schema["properties"]["summary"]["properties"]["kernels"]["type"] = ["string", "null"]
    schema["properties"]["whatif"]["required"].append("no_stalls_ms")
    del schema["properties"]["floor"]["properties"]["missing"]
    got = schema_mismatches(schema, ExplainDoc)
    assert "$.whatif.gone_ms: in the schema, not in WhatIf" in got
    assert "$.summary.kernels: the types admit ['integer'], the schema does not" in got
    assert "$.whatif.no_stalls_ms: required by the schema, optional in WhatIf" in got
    assert "$.floor.missing: in FloorSection, not in the schema" in got
    assert len(got) == 4

