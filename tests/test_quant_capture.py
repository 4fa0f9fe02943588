"""``tracekit capture --quant`` (issue 23): the floor of each scheme against the bytes a quantized
model really holds, the capture's metadata, the ``Error:`` lines, ``explain --baseline``, the kernel
categories of quantized decode, the campaign script and the analyses table.

The byte oracle is independent of tracekit's capture code: the test builds a small Llama with
transformers, quantizes it with torchao itself, and sums the ``nbytes`` of every tensor each
parameter stores (values, scales, zero points, code books; a tensor subclass flattened to its
plain tensors). tracekit's floor count for the scheme's format must equal that sum exactly.
int4 (tinygemm's tile-packed layout) runs torchao's own code with only the CUDA packing kernel
replaced by its output-shape contract; float8 dynamic needs a GPU of compute capability 8.9. Every
GPU capture records its stored bytes, checked against the floor in ``test_committed_gpu_captures``.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import error_line, run

from tracekit.errors import BadInput
from tracekit.quantized import realised_savings
from tracekit.specs.kernels import KernelCategory, categorize
from tracekit.specs.models import get_model
from tracekit.specs.quant import SCHEMES, weight_format

ROOT = Path(__file__).resolve().parents[1]
#: small enough for the CPU, large enough for NF4 (every matrix a multiple of 64 × 256 weights)
SMALL = {"model_type": "llama", "hidden_size": 256, "intermediate_size": 512,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "head_dim": 64, "vocab_size": 1024, "tie_word_embeddings": False,
         "max_position_embeddings": 4096}
QUICK = ["--device", "cpu", "--dtype", "bf16", "--ctx", "32", "--steps", "4", "--warmup", "1",
         "--profile-steps", "2", "--quiet"]


@pytest.fixture(scope="module")
def small_config(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("small")
    (d / "config.json").write_text(json.dumps(SMALL))
    return d / "config.json"


def _stored_nbytes(t) -> int:
    """Every byte a tensor stores: a subclass (torchao) flattened to its plain tensors."""
    if hasattr(type(t), "__tensor_flatten__"):
        names, _ = t.__tensor_flatten__()
        return sum(_stored_nbytes(getattr(t, n)) for n in names if getattr(t, n) is not None)
    return int(t.nbytes)


def _quantized_small_model(scheme: str):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torchao")
    from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig, quantize_, to_nf4

    cfg = transformers.AutoConfig.for_model(**SMALL)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    keep = ("lm_head",)

    def wanted(m, fqn):
        return isinstance(m, torch.nn.Linear) and fqn.rsplit(".", 1)[-1] not in keep

    if scheme == "nf4":
        for fqn, m in model.named_modules():
            if wanted(m, fqn):
                m.weight = torch.nn.Parameter(to_nf4(m.weight.detach()), requires_grad=False)
    else:
        cfg_q = {"int8": Int8WeightOnlyConfig(), "fp8": Float8WeightOnlyConfig()}[scheme]
        quantize_(model, cfg_q, filter_fn=wanted)
    return model


@pytest.mark.parametrize("scheme", ["int8", "fp8", "nf4"])
def test_floor_counts_every_byte_the_quantized_model_holds(scheme, small_config):
    model = _quantized_small_model(scheme)
    held = sum(_stored_nbytes(p) for p in model.parameters())
    spec = get_model(str(small_config))
    fmt = SCHEMES[scheme].floor_dtype()
    assert spec.weight_bytes(fmt) == held  # all-weights: every parameter, as stored
    # the generic formats (AWQ-style int8, bitsandbytes nf4, ...) would miss torchao's layout
    generic = {"int8": "int8", "fp8": "fp8", "nf4": "nf4"}[scheme]
    assert spec.weight_bytes(generic) != held


def test_int4_tinygemm_floor_counts_what_torchao_stores(small_config, monkeypatch):
    """torchao's real int4 tile-packed path (padding, scales and zeros) on the CPU, with the one
    CUDA-only step — PyTorch's ``_convert_weight_to_int4pack`` — replaced by its output contract
    (int32 [n/8][k/(inner_k_tiles·16)][32][inner_k_tiles/2]). The small model's 256-wide layers are
    stored 1024 wide: the floor must count that."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torchao")
    from torchao.quantization import Int4WeightOnlyConfig, quantize_

    def packed(w, inner_k_tiles):
        n, k = w.shape[0], w.shape[1] * 2
        return torch.zeros((n // 8, k // (inner_k_tiles * 16), 32, inner_k_tiles // 2),
                           dtype=torch.int32)

    monkeypatch.setattr(torch.ops.aten, "_convert_weight_to_int4pack", packed)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    spec = get_model(str(small_config))
    for group in (64, 128):
        model = transformers.AutoModelForCausalLM.from_config(
            transformers.AutoConfig.for_model(**SMALL), dtype=torch.bfloat16)
        quantize_(model, Int4WeightOnlyConfig(group_size=group,
                                              int4_packing_format="tile_packed_to_4d"),
                  filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and fqn != "lm_head")
        held = sum(_stored_nbytes(p) for p in model.parameters())
        assert spec.weight_bytes(SCHEMES["int4"].floor_dtype(group)) == held
        assert spec.weight_bytes(f"int4-g{group}") < held  # the unpadded AWQ layout is less


def test_int4_tinygemm_counts_the_documented_padded_tile_layout():
    """torchao documents the tile-packed weight as int32 [n/8][k/(8·16)][32][8/2] of the matrix
    padded to n % 8 == 0 and k % 1024 == 0, and scale_and_zero as bf16 [k/group][n][2]."""
    qwen = get_model("qwen2.5-7b")
    for out_f, in_f in qwen.linear_shapes():
        n, k = -(-out_f // 8) * 8, -(-in_f // 1024) * 1024
        for g in (64, 128):
            qdata = (n // 8) * (k // 128) * 32 * (8 // 2) * 4
            scale_zero = (k // g) * n * 2 * 2
            assert weight_format(f"int4-tinygemm-g{g}").matrix_bytes(out_f, in_f) == qdata + scale_zero
    # Qwen2.5-7B's 3584-wide q projection is stored 4096 wide: 8/7 of the unpadded bytes
    unpadded = 3584 * 3584 * (0.5 + 4 / 128)
    assert weight_format("int4-tinygemm").matrix_bytes(3584, 3584) / unpadded == pytest.approx(8 / 7)


# -- the capture, end to end on the CPU ---------------------------------------------------------
@pytest.fixture(scope="module")
def captures(small_config, tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("torchao")
    d = tmp_path_factory.mktemp("quantcap")
    for name, extra in (("bf16", []), ("nf4", ["--quant", "nf4"])):
        r = run("capture", "--model", small_config, *QUICK, *extra, "-o", d / f"small_{name}.json.gz")
        assert r.exit_code == 0, r.output
    return d


def _meta(path: Path) -> dict:
    with gzip.open(path, "rt") as f:
        return json.load(f)["tracekit"]


def test_capture_records_scheme_library_and_the_bytes_it_stored(captures, small_config):
    import torchao

    q = _meta(captures / "small_nf4.json.gz")["quant"]
    assert (q["scheme"], q["library"], q["library_version"]) == ("nf4", "torchao", torchao.__version__)
    assert q["floor_dtype"] == "nf4-torchao"
    # the stored bytes, by the test's own nbytes count of the same quantization
    model = _quantized_small_model("nf4")
    linear = sum(_stored_nbytes(m.weight) for n, m in model.named_modules()
                 if type(m).__name__ == "Linear" and not n.endswith("lm_head"))
    assert q["tensor_bytes"]["total"] == linear == q["floor_linear_bytes"]
    assert set(q["tensor_bytes"]["by_component"]) == {
        "quantized_data", "quantized_scalers", "quantization_factor", "scaler_mean", "nf4"}
    assert q["ran"]["ops"]  # what ran is read from the profiled window (CPU: ops, no kernels)
    assert _meta(captures / "small_bf16.json.gz")["quant"] is None


def test_explain_floor_uses_the_captured_format_and_baseline_compares(captures, small_config):
    r = run("explain", captures / "small_nf4.json.gz", "--gpu", "H100 SXM5", "--json",
            "--baseline", captures / "small_bf16.json.gz")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    spec = get_model(str(small_config))
    assert doc["model"]["dtype"] == "nf4-torchao"
    ctx = doc["floor"]["ctx"]
    assert doc["floor"]["bytes"] == spec.step_bytes(ctx, "nf4-torchao")["total"]
    q = doc["quantization"]
    assert (q["dtype"], q["baseline_dtype"]) == ("nf4-torchao", "bf16")
    # the floor saving by plain arithmetic: bf16 bytes minus nf4 bytes, over 3350 GB/s
    base_ctx = q["baseline_floor_ms"] * 3350e9 / 1e3
    assert base_ctx == pytest.approx(spec.step_bytes(ctx, "bf16")["total"], rel=1e-9)
    assert q["floor_saving_ms"] == pytest.approx(q["baseline_floor_ms"] - q["floor_ms"])


def test_quant_errors_are_one_line():
    assert "unknown --quant 'int3'" in error_line(run("capture", "-m", "tiny", "--quant", "int3"))
    r = run("capture", "-m", "tiny", "--quant", "int8", "--group-size", "64")
    assert r.exit_code == 2
    assert error_line(r) == "Error: --group-size applies to --quant int4 only, not --quant int8"
    r = run("capture", "-m", "tiny", "--quant", "int4", "--group-size", "100")
    assert "--group-size must be 32, 64, 128 or 256" in error_line(r)


@pytest.mark.slow  # runs a model on the CPU (torch)
def test_a_scheme_the_device_cannot_run_names_the_scheme_and_why(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("torchao")
    out = tmp_path / "x.json.gz"
    r = run("capture", "-m", "tiny", *QUICK, "--quant", "int4", "-o", out)
    assert r.exit_code == 1
    assert error_line(r).startswith("Error: --quant int4: the tile-packed int4 layout runs on "
                                    "PyTorch's CUDA tinygemm kernel")
    r = run("capture", "-m", "tiny", *QUICK, "--quant", "fp8-dynamic", "-o", out)
    assert error_line(r).startswith("Error: --quant fp8-dynamic:")
    r = run("capture", "-m", "tiny", *QUICK, "--quant", "nf4", "-o", out)  # too small for NF4
    assert error_line(r).startswith("Error: --quant nf4: torchao")
    assert not out.exists() and not list(tmp_path.iterdir())


# -- realised savings: exact arithmetic on two small documents ----------------------------------
def _doc(dtype, floor_ms, step_ms, cats, gemm_bytes):
    return {"model": {"dtype": dtype}, "floor": {"floor_ms": floor_ms},
            "summary": {"latency_ms": step_ms * 1.5}, "unprofiled": {"latency_ms": step_ms},
            "kernels_by_category": [
                {"category": c, "ms_per_step": ms,
                 "model_bytes_per_step": gemm_bytes if c == "gemm" else None}
                for c, ms in cats.items()]}


def test_realised_savings_arithmetic_and_verdict():
    base = _doc("bf16", 4.6, 11.1, {"gemm": 5.0, "elementwise": 1.0}, 15e9)
    q = _doc("int4-tinygemm", 1.4, 9.8, {"gemm": 0.4, "quant_gemm": 6.0, "elementwise": 2.0}, 5e9)
    r = realised_savings(q, base)
    assert r["basis"] == "unprofiled"
    assert r["floor_saving_ms"] == pytest.approx(3.2)
    assert r["step_saving_ms"] == pytest.approx(1.3)
    assert r["realised"] == pytest.approx(1.3 / 3.2)
    assert r["speedup"] == pytest.approx(11.1 / 9.8)
    # linear path: bf16 15 GB in 5 ms = 3000 GB/s; int4 5 GB in 6.4 ms = 781 GB/s
    assert r["baseline_linear"]["achieved_gbps"] == pytest.approx(3000)
    assert r["linear"]["achieved_gbps"] == pytest.approx(5e9 / 6.4e-3 / 1e9)
    assert r["bandwidth_ratio"] == pytest.approx((5e9 / 6.4e-3) / (15e9 / 5e-3))
    v = r["verdict"]
    assert "cut the floor from 4.60 to 1.40 ms" in v and "from 11.10 to 9.80 ms" in v
    assert "41% of the byte saving realised" in v and "26% of the 3000 GB/s" in v
    assert "elementwise kernels gained 1.00 ms/step" in v
    slower = realised_savings(_doc("int8-torchao", 2.4, 49.1, {"gemm": 9.0}, 8e9),
                              _doc("bf16", 4.6, 32.2, {"gemm": 5.0}, 15e9))
    assert slower["realised"] < 0 and "none of the byte saving realised" in slower["verdict"]
    with pytest.raises(BadInput, match="same weight format"):
        realised_savings(base, base)


@pytest.mark.parametrize("name,cat", [
    ("void at::native::tinygemm_m16n8k16_chunk_kernel<(at::native::KReductionType)0, 256, 8>(",
     KernelCategory.QUANT_GEMM),
    ("void at::native::weight_int8pack_mm_kernel<c10::BFloat16>(...)", KernelCategory.QUANT_GEMM),
    ("sm90_xmma_gemm_e4m3bf16_e4m3f32_f32_tn_n_tilesize64x64x128", KernelCategory.QUANT_GEMM),
    ("void kgemm_4bit_inference_naive<__nv_bfloat16, 128, 16>(int, int, int)", KernelCategory.QUANT_GEMM),
    ("void marlin::Marlin<256, 1, 8, 8, 4, 8>(int4 const*)", KernelCategory.QUANT_GEMM),
    ("void kDequantizeBlockwise<__nv_bfloat16, 512, 64, 8, 2>(float*)", KernelCategory.DEQUANT),
    ("triton_poi_fused_dequantize_0", KernelCategory.DEQUANT),
    ("void flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 64, 64, 4, cutlass::float_e4m3_t>>",
     KernelCategory.ATTENTION),
    ("nvjet_hsh_128x64_64x5_1x2_h_bz_coopA_NNT", KernelCategory.GEMM),
])
def test_quantized_kernel_categories(name, cat):
    assert categorize(name) is cat


# -- the campaign script and the analyses table, on CPU-made captures ---------------------------
@pytest.mark.slow
def test_campaign_script_on_the_cpu(small_config, tmp_path):
    pytest.importorskip("torchao")
    env = {**os.environ, "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work"),
           "MODEL": str(small_config), "CTX": "32", "STEPS": "3", "WARMUP": "1", "DEVICE": "cpu",
           "DTYPE": "bf16", "CELLS": "eager:int8 eager:int4", "REPEAT": "",
           "BUDGET_S": "300", "SITE": str(tmp_path / "site")}
    p = subprocess.run(["bash", str(ROOT / "capture" / "quant_campaign.sh")], env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    out = sorted(x.name for x in (tmp_path / "out").iterdir())
    assert "quant_summary.md" in out and "campaign_logs.tar" in out and len(out) <= 8
    summary = (tmp_path / "out" / "quant_summary.md").read_text()
    # one cell that captures (int8) and one that fails (int4 on the CPU): the script's two paths;
    # an unquantized row is the same code with other metadata (test_analyses_table_from_cpu_captures
    # reads bf16 captures)
    assert "| eager | int8 | int8-torchao |" in summary
    log = (tmp_path / "work" / "campaign.log").read_text()
    assert "Error: --quant int4: the tile-packed int4 layout" in log


def test_campaign_summary_rows_and_speedup_from_cpu_captures(captures):
    """capture/quant_summary.py (the campaign's table) over a bf16 and an nf4 capture: a row each,
    the nf4 speed-up the ratio of the two captures' unprofiled medians (plain json oracle)."""
    p = subprocess.run([sys.executable, str(ROOT / "capture" / "quant_summary.py"), str(captures)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = {ln.split("|")[2].strip(): [c.strip() for c in ln.split("|")[1:-1]]
            for ln in p.stdout.splitlines() if ln.startswith("| eager |")}
    assert set(rows) == {"bf16", "nf4"}
    assert rows["bf16"][2] == "bf16" and rows["nf4"][2] == "nf4-torchao"
    med = {k: _meta(captures / f"small_{k}.json.gz")["timing"]["median_ms"] for k in rows}
    assert float(rows["nf4"][6]) == pytest.approx(med["bf16"] / med["nf4"], abs=0.006)
    assert float(rows["bf16"][6]) == 1.0


def test_analyses_table_from_cpu_captures(captures, tmp_path):
    out = tmp_path / "table"
    cmd = [sys.executable, str(ROOT / "analyses" / "quant_table.py"), "--traces", str(captures),
           "--out", str(out), "--gpu", "H100 SXM5"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = {r["scheme"]: r for r in csv.DictReader((out / "quant_table.csv").open())}
    assert set(rows) == {"bf16", "nf4"}
    # one session each: the speed-up is the ratio of the medians of steps (plain json oracle)
    med = {k: statistics.median(_meta(captures / f"small_{k}.json.gz")["timing"]["unprofiled_ms"])
           for k in ("bf16", "nf4")}
    assert float(rows["nf4"]["speedup"]) == pytest.approx(med["bf16"] / med["nf4"], rel=1e-5)
    assert rows["nf4"]["basis"] == "steps" and rows["nf4"]["floor_dtype"] == "nf4-torchao"
    assert rows["nf4"]["stored_mb"] == rows["nf4"]["counted_mb"]
    first = (out / "quant_table.md").read_bytes()
    assert "nf4-torchao weights cut the floor" in first.decode()
    subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    assert (out / "quant_table.md").read_bytes() == first  # reproducible byte for byte


QUANT_SAMPLES = sorted((ROOT / "sample_traces" / "quant").rglob("*.json.gz"))


@pytest.mark.skipif(not QUANT_SAMPLES, reason="no GPU quantized captures committed yet")
def test_committed_gpu_captures(tmp_path):
    """Every committed quantized GPU capture stored exactly the bytes its floor counts, and the
    committed table is what the script makes from them."""
    for path in QUANT_SAMPLES:
        q = _meta(path).get("quant")
        if q:
            assert q["tensor_bytes"]["total"] == q["floor_linear_bytes"], path.name
    p = subprocess.run([sys.executable, str(ROOT / "analyses" / "quant_table.py"),
                        "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    for name in ("quant_table.csv", "quant_table.md"):
        assert (tmp_path / name).read_bytes() == (ROOT / "analyses" / "results" / name).read_bytes()


def test_compare_names_each_side_format_and_counts_its_floor(captures, small_config):
    r = run("compare", captures / "small_bf16.json.gz", captures / "small_nf4.json.gz",
            "--gpu", "H100 SXM5", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert (doc["a"]["dtype"], doc["b"]["dtype"]) == ("bf16", "nf4-torchao")
    assert not any("different dtypes" in w for w in doc["warnings"])
    spec = get_model(str(small_config))
    ratio = doc["a"]["summary"]["floor_ms"] / doc["b"]["summary"]["floor_ms"]
    # both floors at (nearly) the same context: the ratio of the formats' bytes
    ctx = _meta(captures / "small_nf4.json.gz")["ctx_first_step"]
    assert ratio == pytest.approx(spec.step_bytes(ctx, "bf16")["total"]
                                  / spec.step_bytes(ctx, "nf4-torchao")["total"], rel=0.01)


def test_kernel_table_gives_low_bit_kernels_the_quantized_bytes(tmp_path):
    """A synthetic int4 step: tinygemm reads the quantized linears, a plain GEMM the bf16 lm_head."""
    from synth import decode_steps, write_trace

    from tracekit.explain import explain

    names = ["void at::native::tinygemm_m16n8k16_chunk_kernel<256, 8>(int)", "nvjet_hsh_128x64_lm",
             "void at::native::vectorized_elementwise_kernel<4, mul>(int)"]
    path = write_trace(tmp_path / "int4.json.gz", decode_steps(6, names=names, kernel_us=5.0))
    doc = explain(path, model="qwen2.5-7b", ctx=2048, dtype="int4-tinygemm").to_dict()
    cats = {r["category"]: r for r in doc["kernels_by_category"]}
    q = get_model("qwen2.5-7b")
    head = q.vocab * q.hidden * 2
    # the tile-packed bytes as torchao documents them (see the int4 test above), every layer
    per_layer = sum((-(-o // 8) * 8) * (-(-i // 1024) * 1024) // 2
                    + (-(-i // 1024) * 1024) // 128 * (-(-o // 8) * 8) * 4
                    for o, i in q.linear_shapes())
    assert cats["quant_gemm"]["model_bytes_per_step"] == q.layers * per_layer
    assert cats["gemm"]["model_bytes_per_step"] == head
    assert cats["quant_gemm"]["achieved_gbps"] == pytest.approx(q.layers * per_layer / 5e-6 / 1e9)


def test_sweep_names_quantized_cells_and_rows_carry_the_format(captures, small_config):
    from tracekit.sweep import Cell, cell_id, cell_row

    base = {"model": "qwen2.5-7b", "ctx": 2048, "mode": "cuda-graphs"}
    assert cell_id(base) == "qwen2.5-7b_ctx2048_cuda-graphs_sdpa_s1"  # unchanged for bf16
    assert cell_id({**base, "quant": "int4"}) == "qwen2.5-7b_ctx2048_cuda-graphs_sdpa_s1_int4"
    assert cell_id({**base, "quant": "int4", "group_size": 64}).startswith(
        "qwen2.5-7b_ctx2048_cuda-graphs_sdpa_s1_int4-")
    opts = {"model": str(small_config), "ctx": 32, "mode": "eager", "quant": "nf4"}
    row = cell_row(Cell(cell_id(opts), opts, 60.0), captures / "small_nf4.json.gz")
    assert row["dtype"] == "nf4-torchao" and row["cell"].endswith("_nf4")


def test_a_trace_naming_an_unknown_format_is_one_error_line(tmp_path):
    from synth import decode_steps, write_trace

    meta = {"tracekit": {"schema": "tracekit.capture/1", "model_name": "qwen2.5-7b", "ctx": 2048,
                         "mode": "eager", "dtype": "bf16",
                         "quant": {"scheme": "int3", "floor_dtype": "<b>int3</b>"}}}
    path = write_trace(tmp_path / "q.json.gz", decode_steps(4), extra=meta)
    r = run("explain", path)
    assert r.exit_code == 1
    assert error_line(r).startswith("Error: tracekit.quant.floor_dtype must be a weight format")
