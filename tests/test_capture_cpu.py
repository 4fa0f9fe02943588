"""``tracekit capture`` end to end on the CPU with the ``tiny`` model, and its failure modes.

The GPU-only parts (CUDA events, graph capture, the copy probe, Nsight) cannot run here; what
can is the whole pipeline around them: options → model → prefill → steps → profiler → the
atomic gzip writer → ``tracekit explain`` reading the result.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import stat
import statistics
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from helpers import error_line, run

from tracekit.capture.options import CaptureOptions
from tracekit.capture.write import write_trace
from tracekit.errors import BadUsage, CaptureError
from tracekit.trace.capture_meta import read_capture_meta

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "capture",
    "--model",
    "tiny",
    "--device",
    "cpu",
    "--ctx",
    "32",
    "--steps",
    "3",
    "--warmup",
    "1",
    "--profile-steps",
    "4",
    "--quiet",
]


@pytest.fixture(scope="module")
def tiny_trace(tmp_path_factory) -> tuple[Path, object]:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    out = tmp_path_factory.mktemp("cap") / "tmp" / "x.json.gz"
    result = run(*TINY, "-o", str(out))
    assert result.exit_code == 0, result.output
    return out, result


def _strict(constant: str):
    raise ValueError(f"{constant} is not JSON")


def _events(path: Path) -> tuple[dict, list[dict]]:
    with gzip.open(path, "rt") as f:
        doc = json.load(f, parse_constant=_strict)  # NaN/Infinity would fail here
    return doc, doc["traceEvents"]


# --- the happy path ----------------------------------------------------------------------------
def test_tiny_capture_writes_gzip_json_with_metadata(tiny_trace) -> None:
    path, result = tiny_trace
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    doc, _ = _events(path)
    meta = doc["tracekit"]
    assert meta["schema"] == "tracekit.capture/1"
    assert (meta["model_name"], meta["ctx"], meta["mode"]) == ("tiny", 32, "eager")
    assert meta["model"]["name"] == "tiny" and meta["model"]["params"] > 0
    # ctx + warmup + timed steps + the profiler calibration's unprofiled steps (2 warm + 10)
    assert meta["ctx_first_step"] == 32 + 1 + 3 + 12
    # this host's profiler cost, from its own raw samples (medians, events per step)
    pc = meta["profiler_cost"]
    assert pc["workload"] == "decode steps, as captured"  # the CPU has no cuDNN to avoid
    assert len(pc["unprofiled_ms"]) == len(pc["profiled_ms"]) == 10
    assert pc["events_per_step"] > 4 * meta["model"]["layers"]  # more than the SDPA ops alone
    diff = statistics.median(pc["profiled_ms"]) - statistics.median(pc["unprofiled_ms"])
    assert pc["ns_per_event"] == pytest.approx(max(diff, 0) / pc["events_per_step"] * 1e6, abs=0.1)
    assert pc["interval_ns"][0] <= pc["ns_per_event"] <= pc["interval_ns"][1]
    assert (meta["device"], meta["dtype"], meta["attention"]["requested"]) == ("cpu", "fp32", "sdpa")
    # what ran is read from the profiled window: an SDPA op, once per layer per profiled step
    cpu_sdpa = [e for e in _events(path)[1] if e.get("cat") == "cpu_op"
                and e["name"].startswith("aten::_scaled_dot_product")]
    assert meta["attention"]["ops"] == {n: sum(e["name"] == n for e in cpu_sdpa)
                                        for n in {e["name"] for e in cpu_sdpa}}
    assert sum(meta["attention"]["ops"].values()) == 4 * meta["model"]["layers"]
    assert meta["gpu"] is None and meta["copy_bandwidth_gbps"] is None
    assert meta["timing"]["steps"] == 3 and len(meta["timing"]["unprofiled_ms"]) == 3
    assert meta["timing"]["p10_ms"] <= meta["timing"]["median_ms"] <= meta["timing"]["p90_ms"]
    assert meta["profiled"]["steps"] == 4
    # the ground truth is timed again after the profiled window, as many steps as before
    assert meta["timing_after"]["steps"] == 3 and len(meta["timing_after"]["unprofiled_ms"]) == 3
    ratio = meta["profiled"]["wall_ms_per_step"] / meta["timing"]["median_ms"]
    assert meta["profiler_overhead_ratio"] == pytest.approx(ratio, rel=1e-3)
    assert set(meta["versions"]) == {"torch", "transformers", "cuda", "triton", "python"}
    assert meta["command"][0] == "tracekit" and all(isinstance(a, str) for a in meta["command"])
    assert "unprofiled" in result.output and "tokens/s" in result.output


@pytest.mark.slow  # runs a model on the CPU (torch)
def test_the_trace_is_exported_before_the_calibration_profiles(tmp_path, monkeypatch) -> None:
    """A second profiler session before the export left every kernel of the first at timestamp 0
    (an H100, torch 2.11): the trace must already be on disk, whole, when the calibration runs."""
    pytest.importorskip("transformers")
    from tracekit.capture import calibrate

    out = tmp_path / "x.json.gz"
    seen: list[list[str]] = []
    real = calibrate.measure

    def measure(*a, **kw):
        exports = sorted(tmp_path.glob(".x.json.gz.*.export.json"))
        seen.append([p.name for p in exports])
        assert len(exports) == 1
        doc = json.loads(exports[0].read_text())
        assert any(str(e.get("name", "")).startswith("tracekit.step#") for e in doc["traceEvents"])
        return real(*a, **kw)

    monkeypatch.setattr(calibrate, "measure", measure)
    result = run(*TINY, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert len(seen) == 1  # the calibration ran, once, after the export
    assert [p.name for p in tmp_path.iterdir()] == ["x.json.gz"]  # the export became the trace
    meta = _events(out)[0]["tracekit"]
    assert meta["profiler_cost"]["ns_per_event"] is not None


def test_only_the_step_annotations_carry_tracekit_names(tiny_trace) -> None:
    path, _ = tiny_trace
    _, events = _events(path)
    steps = [
        e["name"]
        for e in events
        if e.get("cat") == "user_annotation" and e["name"].startswith("tracekit.step#")
    ]
    assert steps == [f"tracekit.step#{i}" for i in range(4)]
    assert all(
        not str(e.get("name", "")).startswith("tracekit.") or e["name"] in steps for e in events
    )


def test_no_temp_files_left(tiny_trace) -> None:
    path, _ = tiny_trace
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.json.gz"]
    assert stat.S_IMODE(path.stat().st_mode) & 0o044  # readable by others, not mkstemp's 0600


def test_head_only_meta_reader(tiny_trace) -> None:
    path, _ = tiny_trace
    doc, _ = _events(path)
    assert read_capture_meta(path) == doc["tracekit"]


def test_explain_reads_the_capture(tiny_trace) -> None:
    pytest.importorskip("polars")
    from tracekit.explain import explain

    path, _ = tiny_trace
    e = explain(path)
    assert e.source["detection_method"] == "tracekit"
    assert e.source["decode_steps"] == 4
    # the context at the first profiled step, from the metadata (ctx 32 + 16 steps before it)
    assert (e.model["name"], e.model["ctx"], e.model["dtype"]) == ("tiny", 48, "fp32")


def test_reports_say_a_cpu_capture_has_no_gpu(tiny_trace) -> None:
    from rich.console import Console

    from tracekit.explain import explain
    from tracekit.report.terminal import render

    path, _ = tiny_trace
    e = explain(path)
    console = Console(record=True, width=100)
    render(e.to_dict(), console)
    assert "GPU: none (CPU capture)" in console.export_text()
    page = e.to_html()
    assert "GPU: none (CPU capture)" in page, page[page.index("<header"):][:600]
    assert "None" not in e.to_markdown()


def test_our_own_cpu_capture_warns_about_nothing_we_wrote(tiny_trace) -> None:
    """A CPU capture writes null for what it cannot measure (copy bandwidth, CUDA and Triton
    versions): "not measured", not a value to warn about; nor is its missing GPU a profiler
    setting to fix."""
    from tracekit.explain import explain

    path, _ = tiny_trace
    doc, _ = _events(path)
    assert doc["tracekit"]["copy_bandwidth_gbps"] is None  # the case this test is about
    warnings_ = explain(path).warnings
    for phrase in ("capture metadata", "ProfilerActivity", "ignored"):
        assert not [w for w in warnings_ if phrase in w], warnings_


# --- modes and model sources --------------------------------------------------------------------
@pytest.mark.slow  # runs a model on the CPU (torch)
def test_static_cache_decodes_the_same_tokens_as_eager(monkeypatch) -> None:
    """The static-cache stepper (graphs/compile) rewinds its prepare steps exactly."""
    torch = pytest.importorskip("torch")
    from tracekit.capture.model import build_model
    from tracekit.capture.modes import CompileStepper, EagerStepper, prompt, static_cache_len
    from tracekit.specs.models import get_model

    model = build_model(get_model("tiny"), device="cpu", dtype="fp32", seed=1)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(25)  # sharp logits, so a wrong position changes the argmax
    ids = prompt(model.config.vocab_size, 32, device="cpu", seed=0)
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)  # the stepping, not Inductor
    with torch.inference_mode():
        eager = EagerStepper(model, device="cpu")
        static = CompileStepper(
            model, device="cpu", kv_len=static_cache_len(ctx=32, decode_steps=8, mode="compile")
        )
        tokens = []
        for stepper in (eager, static):
            stepper.prefill(ids)
            stepper.prepare()
            seq = []
            for _ in range(8):
                stepper.step()
                seq.append(int(stepper.tok))
            tokens.append(seq)
            assert stepper.position == 40
    assert tokens[0] == tokens[1]


@pytest.mark.slow  # runs a model on the CPU (torch)
def test_weights_dir_and_config_json(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from tracekit.capture.model import build_model
    from tracekit.specs.models import get_model

    ckpt = tmp_path / "ckpt"
    build_model(get_model("tiny"), device="cpu", dtype="fp32").save_pretrained(ckpt)
    out = tmp_path / "w.json.gz"
    r = run(*TINY[:1], "--weights", str(ckpt), *TINY[3:], "-o", str(out))
    assert r.exit_code == 0, r.output
    meta = read_capture_meta(out)
    assert meta["weights"] == str(ckpt)
    assert meta["model"]["params"] == get_model("tiny").param_count()

    out2 = tmp_path / "c.json.gz"
    r = run("capture", "--model", str(ckpt / "config.json"), *TINY[3:], "-o", str(out2))
    assert r.exit_code == 0, r.output
    assert read_capture_meta(out2)["weights"] == "random"

    r = run(*TINY[:1], "--model", "qwen2.5-7b", "--weights", str(ckpt), *TINY[3:])
    assert r.exit_code == 2
    assert "does not match the checkpoint" in error_line(r)


# --- atomic writing ------------------------------------------------------------------------------
def _fake_export(path: str) -> None:
    Path(path).write_text('{"schemaVersion": 1, "traceEvents": [' + "{}," * 300_000 + "{}]}")


@pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_failure_mid_write_leaves_nothing(tmp_path: Path, monkeypatch, exc) -> None:
    import tracekit.capture.write as w

    real = w.splice_meta

    def failing(raw, meta, dst):
        real(raw, meta, dst)  # the temp file is complete...
        raise exc  # ...and the failure comes before the rename

    monkeypatch.setattr(w, "splice_meta", failing)
    with pytest.raises(type(exc)):
        write_trace(_fake_export, {"ctx": 1}, tmp_path / "t.json.gz")
    assert list(tmp_path.iterdir()) == []


def test_write_trace_splices_one_key(tmp_path: Path) -> None:
    out = tmp_path / "t.json.gz"
    write_trace(_fake_export, {"ctx": 7, "ratio": float("nan")}, out)
    with gzip.open(out, "rt") as f:
        doc = json.load(f)
    assert list(doc) == ["tracekit", "schemaVersion", "traceEvents"]
    assert doc["tracekit"] == {"ctx": 7, "ratio": None}  # strict JSON: NaN -> null
    assert read_capture_meta(out) == doc["tracekit"]


@pytest.mark.slow  # runs a model on the CPU (torch)
def test_interrupt_mid_capture_through_the_cli(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("torch")
    import tracekit.capture.write as w

    def interrupted(raw, meta, dst):
        Path(dst).write_bytes(b"\x1f\x8b partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(w, "splice_meta", interrupted)
    out = tmp_path / "x.json.gz"
    # transformers' FutureWarnings would reach the captured output when pytest's warnings plugin
    # is off (-p no:warnings); the assertion is about the Error line, not about them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = run(*TINY, "-o", str(out))
    assert r.exit_code == 130
    assert error_line(r) == "Error: interrupted; no trace was written"
    assert list(tmp_path.iterdir()) == []


def test_sigterm_unwinds_like_ctrl_c() -> None:
    from tracekit.child import sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the handler runs between bytecodes of the main thread
            pass
    assert signal.getsignal(signal.SIGTERM) is before


# --- bad arguments: one Error line, a non-zero exit, no traceback --------------------------------
def test_unknown_model() -> None:
    r = run("capture", "--model", "qwen2.5-7B-typo", "--device", "cpu")
    assert r.exit_code == 1
    line = error_line(r)
    assert "unknown model 'qwen2.5-7B-typo'" in line and "qwen2.5-7b" in line and "tiny" in line


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--mode", "bogus"], "unknown --mode 'bogus'; choose one of: eager, cuda-graphs, compile"),
        (["--device", "tpu"], "unknown --device 'tpu'"),
        (["--ctx", "0"], "--ctx must be at least 1, got 0"),
        (["--mode", "cuda-graphs"], "--mode cuda-graphs needs a GPU"),
        (["--profiler", "nsys"], "--profiler nsys traces CUDA"),
        (["-o", "trace.json"], "must end in .json.gz"),
    ],
)
def test_bad_usage(args: list[str], needle: str) -> None:
    r = run("capture", "--model", "tiny", "--device", "cpu", *args)
    assert r.exit_code == 2
    assert needle in error_line(r)


def test_model_required() -> None:
    r = run("capture", "--device", "cpu")
    assert r.exit_code == 2
    assert "name a model" in error_line(r)


@pytest.mark.slow  # imports torch (~5 s) to find no CUDA device
def test_cuda_requested_without_cuda(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    r = run("capture", "--model", "tiny", "-o", str(tmp_path / "x.json.gz"))
    assert r.exit_code == 1
    assert "no CUDA device found; use --device cpu for small models such as tiny" in error_line(r)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # runs a model on the CPU (torch)
def test_context_that_does_not_fit(monkeypatch, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import tracekit.capture.model as m

    monkeypatch.setattr(m, "device_memory", lambda device: (8_000_000_000, "the GPU (test)"))
    r = run(
        "capture",
        "--model",
        "qwen2.5-7b",
        "--device",
        "cpu",
        "--dtype",
        "bf16",
        "--ctx",
        "32768",
        "-o",
        str(tmp_path / "x.json.gz"),
    )
    assert r.exit_code == 1
    line = error_line(r)
    # weights 15.2 GB + KV 1.9 GB at 32768 tokens (+ the decode steps), against 8.0 GB
    assert "needs 17.1 GB" in line and "has 8.0 GB" in line and "ctx 32768" in line


def test_options_validation_is_torch_free() -> None:
    code = textwrap.dedent("""
        import sys
        import tracekit.capture, tracekit.cli
        from tracekit.capture.options import CaptureOptions
        CaptureOptions(model="tiny", device="cpu").validated()
        heavy = {"torch", "transformers", "polars", "msgspec"} & set(sys.modules)
        assert not heavy, heavy
    """)
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_defaults_come_from_the_library() -> None:
    d = CaptureOptions()
    assert (d.ctx, d.steps, d.warmup, d.profile_steps, d.mode) == (2048, 30, 5, 10, "eager")
    with pytest.raises(BadUsage):
        d.validated()


# --- Nsight Systems plumbing, with a stand-in nsys ----------------------------------------------
FAKE_NSYS = """#!{python}
import sqlite3, subprocess, sys
args = sys.argv[1:]
out = args[args.index("-o") + 1]
if args[0] == "profile":
    assert out.endswith(".nsys-rep"), out
    rc = subprocess.call(args[args.index("-o") + 2:])
    open(out, "w").write("report")
    sys.exit(rc)
con = sqlite3.connect(out)
con.execute("CREATE TABLE StringIds (id INTEGER PRIMARY KEY, value TEXT)")
con.execute("CREATE TABLE CUPTI_ACTIVITY_KIND_KERNEL (start INT, end INT, deviceId INT, "
            "streamId INT, correlationId INT, demangledName INT)")
con.commit()
"""


def test_nsys_missing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("tracekit.capture.nsys.NSYS_GLOBS", ())
    r = run(
        "capture", "--model", "tiny", "--profiler", "nsys", "-o", str(tmp_path / "x.json.gz")
    )
    assert r.exit_code == 1
    assert "Nsight Systems (nsys) not found" in error_line(r)
    r = run("capture", "--model", "tiny", "--nsys", str(tmp_path / "nope"))
    assert r.exit_code == 1
    assert "is not an executable nsys" in error_line(r)


@pytest.mark.slow  # runs a model on the CPU (torch)
def test_nsys_child_failure_keeps_the_report(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("on a GPU the child capture would succeed")
    nsys = tmp_path / "nsys"
    nsys.write_text(FAKE_NSYS.format(python=sys.executable))
    nsys.chmod(0o755)
    out = tmp_path / "x.json.gz"
    with pytest.raises(CaptureError) as err:
        from tracekit.capture import run_capture

        run_capture(CaptureOptions(model="tiny", nsys=str(nsys), output=out, ctx=8))
    msg = str(err.value)
    assert "the capture under nsys failed (exit 1)" in msg and "x.nsys-rep" in msg
    assert (tmp_path / "x.nsys-rep").is_file() and (tmp_path / "x.sqlite").is_file()
    assert not out.exists()
