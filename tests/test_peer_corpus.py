"""The corpus of traces made by other projects (sample_traces/peer/, see sample_traces/MANIFEST.md):
serving engines (vLLM, SGLang), torch.compile, HF eager on H100/B200/MI300X/MI210/MI250, Kineto's
old capitalised format, Nsight Systems exports from an HPC project.

Every number here is checked against an oracle written plainly in this file (``json.load`` or
``sqlite3`` over the raw file, no tracekit code): GPU ops by kind, GPU busy (the union of every
kernel/memcpy/memset interval), which ops have a launch call in the trace, and, per step range,
which ops were launched inside it. Where tracekit is still wrong the test is an
``xfail(strict=True)`` whose reason names the step-detection gap (tracekit/steps.py), so that it
turns into a failure — to be switched on — the day the gap is closed.
"""

from __future__ import annotations

import functools
import gzip
import json
import re
import shutil
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from helpers import merge_intervals

from tracekit.breakdown import step_table
from tracekit.errors import NoStepsError
from tracekit.specs.gpus import match_gpu
from tracekit.specs.kernels import categorize
from tracekit.steps import detect_steps
from tracekit.trace import load

PEER = Path(__file__).resolve().parents[1] / "sample_traces" / "peer"
TL = "tracelens"  # AMD-AGI/TraceLens tests/traces (MIT)

KINETO = [
    f"{TL}/h100_hf_qwen1.5-0.5b-chat.json.gz",
    f"{TL}/mi300x_hf_qwen1.5-0.5b-chat.json.gz",
    f"{TL}/mi300x_sglang_qwen3-8b_decode_bs32.json.gz",
    f"{TL}/mi300x_sglang_qwen3-8b_prefill-decode.json.gz",
    f"{TL}/mi300x_vllm_decode_full-graph_bs32.json.gz",
    f"{TL}/mi300x_vllm_prefill-decode_piecewise-graph.json.gz",
    f"{TL}/b200_vllm_eager_tp8_rank0.json.gz",
    f"{TL}/mi300x_torch_compile_triton.json.gz",
    f"{TL}/mi210_gpu_only.json.gz",
    "hta/mi250_minitoy_train_ROCm6_2_kineto.json.gz",
    "hta/rank0.json.gz",
    "kineto/v100_resnet50_train_steps5-7.pt.trace.json.gz",
]
NSYS = ["pipit/a100_saxpy_mpi_cuda_nsys.sqlite.gz"]


# -- the oracles: plain reads of the raw files ------------------------------------------------
_GPU_CATS = {"kernel": "kernel", "gpu_memcpy": "memcpy", "gpu_memset": "memset",
             "memcpy": "memcpy", "memset": "memset"}  # old Kineto: Kernel, Memcpy, Memset
_API_CATS = {"cuda_runtime", "cuda_driver", "runtime", "driver"}  # HIP calls come as cuda_runtime


@functools.lru_cache(maxsize=4)
def _events(name: str) -> list[dict]:
    """The raw events, timestamps as decimals (read once per file: the tests only read them)."""
    return json.load(gzip.open(PEER / name), parse_float=Decimal)["traceEvents"]


def _ns(us) -> int:
    return int(Decimal(us) * 1000)


def _json_oracle(name: str) -> dict:
    """Per kind: how many ops; their busy union in ns; the ops (start, end, correlation, launch
    ts in ns or None) where the launch is the API call with the op's correlation id."""
    ev = _events(name)
    api = {}
    for e in ev:
        if str(e.get("cat", "")).lower() in _API_CATS and "correlation" in e.get("args", {}):
            api.setdefault(e["args"]["correlation"], _ns(e["ts"]))
    ops = [e for e in ev if e.get("ph") == "X" and str(e.get("cat", "")).lower() in _GPU_CATS]
    first = min(api, default=None)

    def before(e) -> bool:  # launched before the window: no call of its own, an id below all
        c = e.get("args", {}).get("correlation")
        return first is not None and isinstance(c, int) and c not in api and c < first

    rows = [(_ns(e["ts"]), _ns(e["ts"] + e.get("dur", 0)), _GPU_CATS[str(e["cat"]).lower()],
             api.get(e.get("args", {}).get("correlation")), before(e)) for e in ops]
    return {"rows": rows, "api_corr": set(api), "ops": ops}


def _sqlite_oracle(name: str, tmp_path: Path) -> dict:
    db = tmp_path / "x.sqlite"
    with gzip.open(PEER / name) as f, open(db, "wb") as g:
        shutil.copyfileobj(f, g)
    con = sqlite3.connect(db)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
    api = set()
    for t in ("CUPTI_ACTIVITY_KIND_RUNTIME", "CUPTI_ACTIVITY_KIND_DRIVER"):
        if t in tables:
            api |= {r[0] for r in con.execute(f"SELECT correlationId FROM {t}")}
    rows = []
    for kind, t in (("kernel", "CUPTI_ACTIVITY_KIND_KERNEL"), ("memcpy", "CUPTI_ACTIVITY_KIND_MEMCPY"),
                    ("memset", "CUPTI_ACTIVITY_KIND_MEMSET")):
        if t in tables:
            rows += [(s, e, kind, 0 if c in api else None, False)
                     for s, e, c in con.execute(f"SELECT start, end, correlationId FROM {t}")]
    con.close()
    return {"rows": rows}


def _busy(intervals) -> int:
    return sum(b - a for a, b in merge_intervals(intervals))


def _oracle(name: str, tmp_path: Path) -> dict:
    return _sqlite_oracle(name, tmp_path) if ".sqlite" in name else _json_oracle(name)


# -- the reader: every GPU op, exactly ---------------------------------------------------------
@pytest.mark.parametrize("name", KINETO + NSYS)
def test_reader_counts_and_busy_equal_the_oracle(name, tmp_path):
    rows = _oracle(name, tmp_path)["rows"]
    g = load(PEER / name).gpu_ops
    for kind in ("kernel", "memcpy", "memset"):
        assert (g["kind"] == kind).sum() == sum(r[2] == kind for r in rows), kind
    ours = _busy(zip(g["start_ns"].to_list(), g["end_ns"].to_list()))
    want = _busy((r[0], r[1]) for r in rows)
    assert abs(ours - want) <= len(rows)  # ns rounding of µs decimals: at most 1 ns an op
    assert want > 0


@pytest.mark.parametrize("name", KINETO + NSYS)
def test_every_launched_op_finds_its_launch_call(name, tmp_path):
    """An op whose correlation id belongs to an API call of the trace has that call among
    tracekit's launches (HIP calls included); the rest were launched before the window."""
    rows = _oracle(name, tmp_path)["rows"]
    trace = load(PEER / name)
    launched = set(trace.launches["correlation"].drop_nulls().to_list())
    corr = trace.gpu_ops["correlation"].to_list()
    assert sum(c in launched for c in corr) == sum(r[3] is not None for r in rows)


def test_hip_launches_are_read_as_launches():
    # the HIP names torch.profiler writes on ROCm, counted from the raw trace
    name = f"{TL}/mi300x_vllm_prefill-decode_piecewise-graph.json.gz"
    ev = _events(name)
    by_kind = {"kernel": re.compile(r"^hip(Ext)?(Module)?LaunchKernel"),
               "graph": re.compile(r"^hipGraphLaunch"), "memcpy": re.compile(r"^hipMemcpy")}
    launches = load(PEER / name).launches
    for kind, rx in by_kind.items():
        want = sum(1 for e in ev if e.get("cat") == "cuda_runtime" and rx.match(e["name"]))
        assert want > 0 and (launches["kind"] == kind).sum() == want, kind
    assert set(launches["api"].to_list()) == {"runtime"}


def test_hip_syncs_are_read_as_syncs():
    name = f"{TL}/mi300x_hf_qwen1.5-0.5b-chat.json.gz"
    want = sorted(e["name"] for e in _events(name) if e.get("cat") == "cuda_runtime"
                  and e["name"] in ("hipDeviceSynchronize", "hipMemcpyWithStream"))
    assert want and sorted(load(PEER / name).syncs["name"].to_list()) == want


def test_an_api_call_recorded_twice_is_one_launch(tmp_path):
    """Nsight Systems 2022.2 with CUDA backtraces records each call twice (an outer
    ``cudaLaunchKernel`` around CUPTI's ``cudaLaunchKernel_v7000``, one correlation id)."""
    name = "pipit/a100_saxpy_mpi_cuda_nsys.sqlite.gz"
    db = tmp_path / "x.sqlite"
    with gzip.open(PEER / name) as f, open(db, "wb") as g:
        shutil.copyfileobj(f, g)
    con = sqlite3.connect(db)
    rows = con.execute("SELECT r.correlationId FROM CUPTI_ACTIVITY_KIND_RUNTIME r JOIN StringIds s "
                       "ON s.id = r.nameId WHERE s.value LIKE 'cudaLaunchKernel%' "
                       "OR s.value LIKE 'cudaMemcpy%'").fetchall()
    con.close()
    calls = {r[0] for r in rows}
    assert len(rows) == 2 * len(calls)  # the export's duplicates
    trace = load(PEER / name)
    assert trace.launches.height == len(calls)
    assert sorted(trace.launches["correlation"].to_list()) == sorted(calls)
    table = step_table(trace, detect_steps(trace))
    assert table["launches"].to_list() == table["kernels"].to_list()  # one launch per saxpy


# -- work launched before the window -----------------------------------------------------------
@pytest.mark.parametrize("name", [f"{TL}/h100_hf_qwen1.5-0.5b-chat.json.gz",
                                  f"{TL}/mi300x_hf_qwen1.5-0.5b-chat.json.gz", "hta/rank0.json.gz"])
def test_ops_launched_before_the_window_are_told_apart(name):
    """GPU ops whose correlation id matches no API call of the trace and lies below every one of
    them were launched before profiling started. tracekit exposes them per op: the launch
    columns of ``Steps.ops`` are null exactly for those."""
    o = _json_oracle(name)
    before = [e for e in o["ops"] if e["args"].get("correlation") not in o["api_corr"]]
    assert before and all(e["args"]["correlation"] < min(o["api_corr"]) for e in before)
    ops = detect_steps(load(PEER / name), require_decode=False).ops
    unknown = ops.filter(ops["launch_start_ns"].is_null())
    assert unknown["outside"].all() and unknown["step"].null_count() == unknown.height
    assert unknown.height == len(before)
    assert sorted(unknown["correlation"].to_list()) == sorted(
        e["args"]["correlation"] for e in before)


def test_work_from_before_the_window_is_not_folded_into_the_first_step():
    name = f"{TL}/h100_hf_qwen1.5-0.5b-chat.json.gz"
    o = _json_oracle(name)
    (a, b), = [(_ns(e["ts"]), _ns(e["ts"] + e["dur"])) for e in _events(name)
               if e.get("cat") == "user_annotation" and e["name"].startswith("ProfilerStep")]
    inside = sum(1 for r in o["rows"] if r[2] == "kernel" and r[3] is not None and a <= r[3] < b)
    trace = load(PEER / name)
    steps = detect_steps(trace, require_decode=False)
    assert step_table(trace, steps)["kernels"].to_list() == [inside]
    assert any("launched before the profiled window" in w for w in steps.warnings)


# -- membership: with the step ranges named, no GPU work is dropped ----------------------------
#: (trace, --step-marker or None, annotation the oracle takes as the step ranges)
MEMBERSHIP = [
    (f"{TL}/mi300x_hf_qwen1.5-0.5b-chat.json.gz", None, r"^ProfilerStep#"),
    (f"{TL}/h100_hf_qwen1.5-0.5b-chat.json.gz", None, r"^ProfilerStep#"),
    (f"{TL}/mi300x_sglang_qwen3-8b_decode_bs32.json.gz", r"^step\[DECODE", r"^step\[DECODE"),
    (f"{TL}/mi300x_sglang_qwen3-8b_prefill-decode.json.gz", r"^step\[", r"^step\["),
    (f"{TL}/mi300x_vllm_decode_full-graph_bs32.json.gz", r"^execute_", r"^execute_"),
    (f"{TL}/mi300x_vllm_prefill-decode_piecewise-graph.json.gz", r"^execute_", r"^execute_"),
    (f"{TL}/b200_vllm_eager_tp8_rank0.json.gz", r"^execute_", r"^execute_"),
    (f"{TL}/mi300x_torch_compile_triton.json.gz", r"CompiledFxGraph", r"CompiledFxGraph"),
    ("hta/mi250_minitoy_train_ROCm6_2_kineto.json.gz", None, r"^ProfilerStep#"),
    ("kineto/v100_resnet50_train_steps5-7.pt.trace.json.gz", None, r"^ProfilerStep#"),
]


def _ranges(name: str, pattern: str) -> list[tuple[int, int]]:
    rx = re.compile(pattern)
    cats = {"user_annotation", "operator"}  # old Kineto: ProfilerStep#N is an Operator event
    return sorted((_ns(e["ts"]), _ns(e["ts"] + e["dur"])) for e in _events(name)
                  if str(e.get("cat", "")).lower() in cats and rx.search(e.get("name", "")))


@pytest.mark.parametrize(("name", "marker", "pattern"), MEMBERSHIP)
def test_each_step_holds_the_ops_launched_inside_it(name, marker, pattern):
    """Per step: the kernels, copies and sets whose launch call (else the op itself) started in
    the step's range, and their busy union, against the oracle."""
    o = _json_oracle(name)
    ranges = _ranges(name, pattern)
    trace = load(PEER / name)
    table = step_table(trace, detect_steps(trace, step_marker=marker, require_decode=False))
    assert table.height == len(ranges)
    for row, (a, b) in zip(table.iter_rows(named=True), ranges):
        # ops launched before the window are in no step (counted apart), whatever their start
        mine = [r for r in o["rows"]
                if not r[4] and a <= (r[3] if r[3] is not None else r[0]) < b]
        for kind, col in (("kernel", "kernels"), ("memcpy", "memcpys"), ("memset", "memsets")):
            assert row[col] == sum(r[2] == kind for r in mine), (row["step"], kind)
        want = _busy((r[0], r[1]) for r in mine)
        assert abs((row["gpu_busy_ns"] or 0) - want) <= max(1, want // 100), row["step"]  # 1%


# -- step detection without flags: what a user gets today, and what the issue wants -----------
def _explain(name: str) -> dict:
    from tracekit.explain import explain

    return explain(load(PEER / name)).to_dict()


@pytest.mark.parametrize(("name", "steps"), [
    (f"{TL}/h100_hf_qwen1.5-0.5b-chat.json.gz", 1),
    (f"{TL}/mi300x_hf_qwen1.5-0.5b-chat.json.gz", 1),
    ("hta/mi250_minitoy_train_ROCm6_2_kineto.json.gz", 2),
    ("kineto/v100_resnet50_train_steps5-7.pt.trace.json.gz", 3),
])
def test_profiler_steps_are_the_steps(name, steps):
    assert len(_ranges(name, r"^ProfilerStep#")) == steps
    s = detect_steps(load(PEER / name), require_decode=False)
    assert s.method == "profiler_step"
    assert s.table.height == steps


def test_nvtx_ranges_of_an_nsys_export_are_the_steps(tmp_path):
    name = "pipit/a100_saxpy_mpi_cuda_nsys.sqlite.gz"
    rows = _sqlite_oracle(name, tmp_path)["rows"]
    d = _explain(name)
    assert d["source"]["detection_method"] == "annotation"
    assert sum(s["kernels"] for s in d["steps"]) == sum(r[2] == "kernel" for r in rows)
    assert d["source"]["steps_found"] == sum(r[2] == "kernel" for r in rows)  # one saxpy each


@pytest.mark.parametrize("name", [f"{TL}/mi210_gpu_only.json.gz"])
def test_no_markers_and_no_pattern_is_one_error_line(name):
    from helpers import error_line, run

    r = run("explain", PEER / name)
    assert r.exit_code == 1 and "no decode steps found" in error_line(r)


#: (trace, steps the issue wants, their kind, the marker whose range is one step)
#: (trace, the kind its marker states, the annotation the oracle takes as the one step)
ONE_PASS = [
    (f"{TL}/mi300x_vllm_decode_full-graph_bs32.json.gz", "decode", r"^execute_"),
    (f"{TL}/mi300x_vllm_prefill-decode_piecewise-graph.json.gz", "mixed", r"^execute_"),
    (f"{TL}/mi300x_sglang_qwen3-8b_decode_bs32.json.gz", "decode", r"^step\[DECODE"),
    (f"{TL}/mi300x_sglang_qwen3-8b_prefill-decode.json.gz", "prefill", r"^step\["),
    (f"{TL}/b200_vllm_eager_tp8_rank0.json.gz", "prefill", r"^execute_"),
    (f"{TL}/mi300x_torch_compile_triton.json.gz", None, r"CompiledFxGraph"),
]


@pytest.mark.parametrize(("name", "kind", "pattern"), ONE_PASS)
def test_each_annotated_forward_pass_is_one_step(name, kind, pattern):
    """Without flags: one step per annotated forward pass, holding every op launched in it, of
    the kind its marker states. A trace whose only pass is a prefill (or a mixed chunked-prefill
    pass) is never explained as decode: one Error line says what was found."""
    o = _json_oracle(name)
    (a, b), = _ranges(name, pattern)
    inside = [r for r in o["rows"] if not r[4] and a <= (r[3] if r[3] is not None else r[0]) < b]
    trace = load(PEER / name)
    if kind in ("prefill", "mixed"):
        with pytest.raises(NoStepsError, match=rf"none holds a decode step \(1 {kind}\)"):
            _explain(name)
        # the user's marker: the same one range, its kind still read from its name
        steps = detect_steps(trace, step_marker=pattern, require_decode=False)
        assert steps.table["kind"].to_list() == [kind]
        table = step_table(trace, steps)
    else:
        d = _explain(name)
        assert d["source"]["steps_found"] == 1
        table = step_table(trace, detect_steps(trace))
        if kind is not None:
            assert d["steps"][0]["kind"] == kind
    step, = table.iter_rows(named=True)
    assert step["kernels"] == sum(r[2] == "kernel" for r in inside)


def test_the_batch_a_marker_states_is_the_steps_batch():
    """vLLM's execute_32_context_0(…)_generation_32(…) and SGLang's step[DECODE bs=32]: batch 32."""
    for name in (f"{TL}/mi300x_vllm_decode_full-graph_bs32.json.gz",
                 f"{TL}/mi300x_sglang_qwen3-8b_decode_bs32.json.gz"):
        (label,) = [e["name"] for e in _events(name) if e.get("cat") == "user_annotation"
                    and re.match(r"^(execute_|step\[)", e["name"])][-1:]
        want = int(re.search(r"generation_(\d+)|bs=(\d+)", label).group(
            1 if "generation_" in label else 2))
        assert _explain(name)["steps"][0]["batch"] == want == 32


@pytest.mark.parametrize("name", [f"{TL}/h100_hf_qwen1.5-0.5b-chat.json.gz",
                                  f"{TL}/mi300x_hf_qwen1.5-0.5b-chat.json.gz"])
def test_a_forward_pass_over_many_tokens_is_a_prefill(name):
    """The one ProfilerStep holds one pass whose embedding lookup was fed 16 x 559 token ids (the
    recorded shapes): a prefill, never explained as decode — one Error line says so."""
    (dims,) = [e["args"]["Input Dims"] for e in _events(name)
               if e.get("cat") == "cpu_op" and e["name"] == "aten::embedding"]
    batch, tokens = dims[1]  # the token ids: batch x sequence length
    assert tokens > 1  # the recorded shapes say prefill
    with pytest.raises(NoStepsError, match=r"none holds a decode step \(1 prefill\)"):
        _explain(name)
    steps = detect_steps(load(PEER / name), require_decode=False)
    assert steps.table["kind"].to_list() == ["prefill"]
    assert steps.table["batch"].to_list() == [batch]


# -- the GPU table, from the device names these traces record ----------------------------------
@pytest.mark.parametrize(("name", "gbps"), [
    (f"{TL}/mi300x_hf_qwen1.5-0.5b-chat.json.gz", 5300),  # "AMD Instinct MI300X VF"
    (f"{TL}/mi300x_torch_compile_triton.json.gz", 5300),  # "AMD Instinct MI300X"
    (f"{TL}/mi210_gpu_only.json.gz", 1638.4),  # "AMD Instinct MI210"
    (f"{TL}/b200_vllm_eager_tp8_rank0.json.gz", 8000),
    # ROCm 6.2 on an MI250 reports "AMD Radeon Graphics", and vLLM's MI300X traces an empty
    # name: unknown, never a guess
    ("hta/mi250_minitoy_train_ROCm6_2_kineto.json.gz", None),
    (f"{TL}/mi300x_vllm_decode_full-graph_bs32.json.gz", None),
])
def test_gpu_peak_from_the_recorded_device_name(name, gbps):
    device = json.load(gzip.open(PEER / name))["deviceProperties"][0]["name"]
    assert load(PEER / name).meta["gpu_name"] == device
    spec = match_gpu(device)
    assert (spec.peak_gbps if spec else None) == gbps


# -- kernel categories, with real names --------------------------------------------------------
#: (name, category, where the name comes from: a corpus trace, or the project's source)
KERNELS = [
    ("Cijk_Alik_Bljk_BBS_BH_Bias_HA_S_SAV_UserArgs_MT32x32x256_MI16x16x1_SN_LDSB1_AFC1", "gemm",
     f"{TL}/mi300x_vllm_decode_full-graph_bs32.json.gz"),
    ("Cijk_Ailk_Bjlk_SB_Bias_AS_SAV_UserArgs_MT64x16x16_MI16x16x1_SN_LDSB0_AFC1", "gemm",
     "hta/mi250_minitoy_train_ROCm6_2_kineto.json.gz"),
    ("_matmul_ogs_NNT_bf16xbf16xmxfp4_16x128x256x1_swiglu", "gemm",
     f"{TL}/mi300x_vllm_decode_full-graph_bs32.json.gz"),
    ("nvjet_tst_64x64_64x16_2x1_2cta_v_bz_bias_TNT", "gemm", f"{TL}/b200_vllm_eager_tp8_rank0.json.gz"),
    ("void marlin::Marlin<(vllm::ScalarTypeId)5, 256, 1, 8, 8, false, 4, 8>(int4 const*)", "quant_gemm",
     "vllm csrc/quantization/gptq_marlin/marlin_template.h"),
    ("void cutlass::device_kernel<machete::MacheteKernelTemplate<cutlass::bfloat16_t> >()",
     "quant_gemm", "vllm csrc/quantization/machete/machete_mm_kernel.cuh"),
    ("fused_moe_kernel", "gemm", "vllm model_executor/layers/fused_moe/fused_moe.py"),
    ("void ck::kernel_gemm_xdl_cshuffle_v3<ck::GridwiseGemm_xdl_cshuffle_v3<> >()", "gemm",
     "composable_kernel include/ck/tensor_operation/gpu/grid/gridwise_gemm_xdl_cshuffle_v3.hpp"),
    ("void pytorch_flash::flash_fwd_kernel<pytorch_flash::Flash_fwd_kernel_traits<64, 128, 128", "attention",
     f"{TL}/h100_hf_qwen1.5-0.5b-chat.json.gz"),  # FlashAttention 2, as PyTorch's SDPA ships it
    ("attn_fwd", "attention", f"{TL}/mi300x_hf_qwen1.5-0.5b-chat.json.gz"),  # SDPA's Triton FA on ROCm
    ("void paged_attention_ll4mi_QKV_mfma16_kernel<0, __hip_bfloat16, __hip_bfloat16", "attention",
     f"{TL}/mi300x_sglang_qwen3-8b_decode_bs32.json.gz"),
    ("kernel_unified_attention_2d", "attention",
     f"{TL}/mi300x_vllm_prefill-decode_piecewise-graph.json.gz"),
    ("_ZN7ck_tile6kentryILi2ENS_38FmhaBatchPrefillWithPagedKVCacheKernelINS_40BlockFmhaBatchPref",
     "attention", f"{TL}/mi300x_sglang_qwen3-8b_prefill-decode.json.gz"),
    ("fmhaSm100aKernel_QkvE4m3OBfloat16H64PagedKvCausalP16VarSeqQ128Kv128PersistentContext",
     "attention", f"{TL}/b200_vllm_eager_tp8_rank0.json.gz"),
    ("void flashinfer::BatchPrefillWithRaggedKVCacheKernel<flashinfer::KernelTraits<1u> >()",
     "attention", "flashinfer include/flashinfer/attention/prefill.cuh"),
    ("void flashinfer::MergeStatesKernel<8u, 16u, 8u, 4u, __nv_bfloat16, __nv_bfloat16>()",
     "attention", "flashinfer include/flashinfer/attention/cascade.cuh"),
    ("void cutlass::device_kernel<flash::enable_sm90_or_later<flash::FlashAttnFwdSm90<"
     "flash::CollectiveMainloopFwdSm90<2> > > >()", "attention",
     "flash-attention hopper/flash_fwd_kernel_sm90.h"),
    ("void vllm::reshape_and_cache_flash_kernel<__hip_bfloat16, __hip_bfloat16, "
     "(vllm::Fp8KVCacheDataType)0>(__hip_bfloat16 const*)", "copy",
     f"{TL}/mi300x_vllm_decode_full-graph_bs32.json.gz"),
    ("void (anonymous namespace)::store_kvcache<2048l, 4, false, long>((anonymous "
     "namespace)::StoreKVCacheParams)", "copy", f"{TL}/mi300x_sglang_qwen3-8b_decode_bs32.json.gz"),
    ("void vllm::rotary_embedding_kernel<c10::BFloat16, true>(long const*, c10::BFloat16*, "
     "c10::BFloat16*, c10::BFloat16 const*, int, long, long, long, int, int, int)", "elementwise",
     f"{TL}/b200_vllm_eager_tp8_rank0.json.gz"),
    ("_combined_routing_memset", "reduction", f"{TL}/mi300x_vllm_decode_full-graph_bs32.json.gz"),
    ("_sum_bitmatrix_rows", "reduction", f"{TL}/mi300x_vllm_decode_full-graph_bs32.json.gz"),
    ("_topk_forward", "reduction", f"{TL}/mi300x_vllm_decode_full-graph_bs32.json.gz"),
    ("void vllm::moe::moe_align_block_size_kernel<int>(int const*, int*)", "reduction",
     "vllm csrc/moe/moe_align_sum_kernels.cu"),
    ("triton_red_fused_add_mean_mul_pow_rsqrt_0", "normalization",
     f"{TL}/mi300x_torch_compile_triton.json.gz"),
    ("_ZN7ck_tile6kentryILi1ENS_12Rmsnorm2dFwdINS_27Rmsnorm2dFwdPipelineOnePassINS_27Rmsnorm2dFw",
     "normalization", f"{TL}/mi300x_vllm_decode_full-graph_bs32.json.gz"),
    ("triton_poi_fused__unsafe_view_mul_silu_2", "elementwise",
     f"{TL}/mi300x_torch_compile_triton.json.gz"),
    ("void (anonymous namespace)::multimem_all_reduce_kernel<c10::BFloat16, 16>(c10::BFloat16*)",
     "communication", f"{TL}/b200_vllm_eager_tp8_rank0.json.gz"),
    ("ncclDevKernel_AllGather_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "communication",
     f"{TL}/b200_vllm_eager_tp8_rank0.json.gz"),
    ("void vllm::cross_device_reduce_1stage<__nv_bfloat16, 8>(vllm::RankData*)", "communication",
     "vllm csrc/custom_all_reduce.cuh"),
]


@pytest.mark.parametrize(("kernel", "category", "source"), KERNELS)
def test_kernel_categories_of_serving_and_rocm_stacks(kernel, category, source):
    assert categorize(kernel).value == category
    if source.endswith(".json.gz"):  # a corpus trace: the name (its first 60 characters) is in it
        names = {e["name"] for e in _events(source) if e.get("cat") == "kernel"}
        assert any(n.startswith(kernel[:60]) for n in names), kernel


def test_a_step_half_idle_names_its_idle_time_beside_the_gpu_time():
    """ResNet-50 training on a V100 (Kineto's own sample): the GPU is busy a bit over half of
    each step and waits for the next batch the rest. The verdict leads with the GPU's time and
    names the idle time beside it — its size against an oracle over the raw events (each step's
    window from its first op to the next step's; busy the union of the ops in it) and the op that
    held the host (the data loader, recorded once per step)."""
    import statistics

    name = "kineto/v100_resnet50_train_steps5-7.pt.trace.json.gz"
    rows = _json_oracle(name)["rows"]
    ranges = _ranges(name, r"^ProfilerStep#")
    mine = [[r for r in rows if not r[4] and a <= (r[3] if r[3] is not None else r[0]) < b]
            for a, b in ranges]
    starts = [min(r[0] for r in m) for m in mine]
    latency = [b - a for a, b in zip(starts, starts[1:])]
    busy = [_busy((max(r[0], a), min(r[1], b)) for r in rows if min(r[1], b) > max(r[0], a))
            for a, b in zip(starts, starts[1:])]
    lat_ms = statistics.median(latency) / 1e6
    idle_ms = statistics.median(lt - bz for lt, bz in zip(latency, busy)) / 1e6
    loader = [e for e in _events(name) if e.get("name", "").startswith("enumerate(DataLoader)")]
    assert len(loader) == len(ranges)  # one batch fetched per step
    assert 0.25 <= idle_ms / lat_ms < 0.5
    v = _explain(name)["verdict"]
    assert v.startswith(f"GPU-busy: the GPU is busy {lat_ms - idle_ms:.1f} ms of each {lat_ms:.1f} ms")
    assert (f"; besides, {idle_ms:.1f} ms ({idle_ms / lat_ms:.0%}) of each step is the GPU waiting "
            f"for the host: one stall per step in {loader[0]['name']}") in v
