"""The floor of weight-only quantized formats, against byte counts done by hand from the public
Qwen2.5-7B config, and the study's L4 reference rows."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest
from helpers import run

from tracekit.specs.models import get_model
from tracekit.specs.quant import weight_format

# Qwen2.5-7B, public config.json: 28 layers, hidden 3584, intermediate 18944, 28 heads, 4 KV heads,
# head dim 128, vocab 152064, q/k/v biases, untied embeddings
L, H, INTER, NH, KVH, HD, V = 28, 3584, 18944, 28, 4, 128, 152064
MATS = [(NH * HD, H), (KVH * HD, H), (KVH * HD, H), (H, NH * HD), (INTER, H), (INTER, H), (H, INTER)]
BIAS_NORMS = (NH + 2 * KVH) * HD + 2 * H  # stays bf16


def _int4_matrix(o: int, i: int, g: int) -> Fraction:
    # AWQ/GPTQ: int32-packed 4-bit values; per (row, group of g inputs) an fp16 scale and a 4-bit zero
    groups = o * -(-i // g)
    return Fraction(o * i, 2) + groups * Fraction(5, 2)


def test_int4_bytes_by_hand():
    spec = get_model("qwen2.5-7b")
    for g in (128, 64, 32):
        dtype = "int4" if g == 128 else f"int4-g{g}"
        layer = sum(_int4_matrix(o, i, g) for o, i in MATS) + 2 * BIAS_NORMS
        exact = L * layer + 2 * (H + H + V * H)  # + final norm, one embedding row, lm_head
        allw = L * layer + 2 * (V * H + H + V * H)
        assert spec.weight_bytes_read_per_step(dtype) == pytest.approx(float(exact), abs=L)
        assert spec.weight_bytes(dtype) == pytest.approx(float(allw), abs=L)
    # per weight: 4 bits + 2.5 bytes of scale and zero per 128 weights
    assert weight_format("int4").bytes_per_weight(in_features=H) == pytest.approx(0.5 + 2.5 / 128)


def test_nf4_int8_fp8_per_weight():
    # bitsandbytes nf4 with double quantization: 4 bits, an 8-bit absmax per 64, fp32 per 256 blocks
    n = 4096 * 4096
    assert weight_format("nf4").matrix_bytes(4096, 4096) == n / 2 + n / 64 + 4 * (n / 64 / 256)
    assert weight_format("int8").matrix_bytes(4096, 1024) == 4096 * 1024 + 2 * 4096
    assert weight_format("fp8").matrix_bytes(4096, 1024) == 4096 * 1024 + 4


def test_weight_only_keeps_the_kv_cache_and_cuts_linear_bytes_almost_4x():
    spec = get_model("qwen2.5-7b")
    bf16, int4 = spec.step_bytes(2048, "bf16"), spec.step_bytes(2048, "int4")
    assert int4["kv_read"] == bf16["kv_read"] == 2048 * L * 2 * KVH * HD * 2
    assert int4["kv_write"] == bf16["kv_write"]
    linear = sum(o * i for o, i in MATS)
    cut = (2 * linear) / (spec.gemm_bytes("int4") / L - 2 * V * H / L)
    assert cut == pytest.approx(2 / (0.5 + 2.5 / 128), rel=1e-3)  # 3.85×: overhead eats 4 %


def test_floor_cli_quantized_and_reference_rows():
    r = run("floor", "--model", "qwen2.5-7b", "--dtype", "nf4", "--json")
    assert r.exit_code == 0, r.output
    rows = {row["gpu"]: row for row in json.loads(r.output)}
    bf = {row["gpu"]: row for row in json.loads(run("floor", "--model", "qwen2.5-7b", "--json").output)}
    assert rows["L4"]["floor_exact_ms"] < bf["L4"]["floor_exact_ms"] / 2.5
    ref = {x["path"]: x for x in rows["L4"]["study_reference"]}
    assert [x["ms_per_step"] for x in ref.values()] == [62.32, 59.36, 45.24, 17.36]
    bf16 = ref["bf16 (HF transformers)"]
    # the study states ≈81 % of the (W + K) floor for Qwen-2.5-7B at 2048 on the L4
    assert bf16["r_floor_all_weights"] == pytest.approx(0.81, abs=0.015)
    assert bf16["floor_all_weights_ms"] == pytest.approx(bf["L4"]["floor_all_weights_ms"])
    for x in ref.values():
        assert x["r_floor_exact"] == pytest.approx(x["floor_exact_ms"] / x["ms_per_step"])
    # the study's claim, checked against the floor: nf4 and AWQ get nowhere near what int4 allows
    assert ref["bitsandbytes nf4"]["speedup_vs_bf16"] < 0.5 * ref["bitsandbytes nf4"]["floor_speedup_vs_bf16"]
    assert "study_reference" not in rows["H100 SXM5"]
    r = run("floor", "--model", "llama-3.1-8b", "--json")
    assert all("study_reference" not in row for row in json.loads(r.output))
    r = run("floor", "--model", "qwen2.5-7b", "--gpu", "L4")
    assert r.exit_code == 0 and "GPTQ + ExLlamaV2" in r.output


def test_group_size_option():
    a = json.loads(run("floor", "--model", "qwen2.5-7b", "--dtype", "int4", "--json").output)
    b = json.loads(run("floor", "--model", "qwen2.5-7b", "--dtype", "int4", "--group-size", "32",
                       "--json").output)
    assert b[0]["bytes_exact"] > a[0]["bytes_exact"]  # smaller groups: more scales and zeros


@pytest.mark.parametrize(("args", "needle"), [
    (["--dtype", "int8", "--group-size", "64"], "Error: --group-size applies to --dtype int4 only"),
    (["--dtype", "int4", "--group-size", "0"], "Error: --group-size must be a positive integer"),
    (["--dtype", "int3"], "Error: unknown dtype 'int3'"),
])
def test_bad_quant_options(args, needle):
    r = run("floor", "--model", "qwen2.5-7b", *args)
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(needle), r.output


def test_explain_floor_with_a_quantized_format():
    from pathlib import Path

    from tracekit.explain import explain

    trace = Path(__file__).resolve().parents[1] / "sample_traces" / "qwen2.5-7b_ctx2048_cuda-graphs.json.gz"
    bf, q = explain(trace).to_dict(), explain(trace, dtype="int4").to_dict()
    assert q["model"]["dtype"] == "int4"
    assert q["floor"]["kv_read_bytes"] == bf["floor"]["kv_read_bytes"]
    assert q["floor"]["weights_bytes"] < bf["floor"]["weights_bytes"] / 2.5
    r = run("explain", trace, "--group-size", "64", "--json")
    assert json.loads(r.output)["model"]["dtype"] == "int4-g64"
