"""The command line: exit codes, the exact ``Error:`` lines, no tracebacks, no partial files."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import pytest
from helpers import run
from synth import decode_steps, write_trace

BAD_INPUTS = {
    "notjson.json": (b"hello", "is not valid JSON"),
    "trunc.json.gz": (gzip.compress(b'{"traceEvents": []}' * 1000)[:100], "truncated gzip"),
    "notrace.json": (b'{"a": 1}', "not a torch.profiler trace: it has no 'traceEvents' list"),
    "empty.json": (b'{"traceEvents": []}', "has no events"),
    "zero.json": (b"", "is empty"),
}


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_gives_one_error_line_and_no_file(tmp_path, name):
    data, msg = BAD_INPUTS[name]
    path = tmp_path / name
    path.write_bytes(data)
    out = tmp_path / "report.html"
    r = run("explain", str(path), "--html", str(out), "--markdown", str(tmp_path / "r.md"))
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and msg in lines[0]
    assert "Traceback" not in r.output
    assert list(tmp_path.iterdir()) == [path]  # no partial output, no temp file


def test_no_steps_error_names_the_fix(tmp_path):
    ev = decode_steps(1, kernel_us=2, annotate=None)
    path = write_trace(tmp_path / "one.json.gz", ev)
    r = run("explain", str(path))
    assert r.exit_code == 1
    assert r.output.strip() == (
        f"Error: {path}: no decode steps found: no annotations, graph launches or repeating "
        "kernel sequence; pass --step-marker REGEX naming the annotation around each step")


def test_usage_errors_exit_2():
    r = run("explain")
    assert r.exit_code == 2 and r.output.strip() == "Error: pass a trace file or --sample (exactly one)"
    r = run("explain", "--sample", "--plotlyjs", "nope")
    assert r.exit_code == 2


def test_unknown_model_and_gpu_list_known_names():
    r = run("explain", "--sample", "--model", "qwen2.5-7B-chat")
    assert r.exit_code == 1
    assert r.output.startswith("Error: unknown model 'qwen2.5-7B-chat'; known: qwen2.5-7b, ")
    r = run("floor", "--model", "qwen2.5-7b", "--gpu", "Voodoo2")
    assert r.exit_code == 1 and "unknown GPU 'Voodoo2'; known: " in r.output and "H100 SXM5" in r.output


def test_explain_sample_json_contract():
    r = run("explain", "--sample", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["schema"] == "tracekit.explain/1"
    for key in ("source", "model", "gpu", "steps", "summary", "floor", "decomposition", "whatif",
                "kernels_by_category", "verdict", "warnings"):
        assert key in doc
    for step in doc["steps"]:
        for key in ("latency_ms", "gpu_busy_ms", "idle_ms", "idle_by_class_ms", "kernels",
                    "launches", "graph_launches"):
            assert key in step
    assert "NaN" not in r.output and "Infinity" not in r.output


def test_floor_command_reproduces_the_study():
    # the study (docs/architecture.md, "Facts"): all 7.62 B parameters + KV at ctx 2048 ≈ 15.35 GB → 4.58 ms on H100, 51.2 ms on L4
    r = run("floor", "--model", "qwen2.5-7b", "--ctx", "2048", "--json")
    assert r.exit_code == 0
    rows = {row["gpu"]: row for row in json.loads(r.output)}
    assert rows["H100 SXM5"]["bytes_all_weights"] / 1e9 == pytest.approx(15.35, abs=0.01)
    assert rows["H100 SXM5"]["floor_all_weights_ms"] == pytest.approx(4.58, abs=0.01)
    assert rows["L4"]["floor_all_weights_ms"] == pytest.approx(51.2, abs=0.05)
    assert rows["H100 SXM5"]["floor_exact_ms"] < rows["H100 SXM5"]["floor_all_weights_ms"]


@pytest.mark.parametrize("command", ["explain", "floor", "capture"])
def test_every_command_has_help_with_an_example(command):
    r = run(command, "--help")
    assert r.exit_code == 0
    # the example itself is run by tests/test_examples.py
    assert f"$ tracekit {command} " in r.output or f"Example: tracekit {command} " in r.output


def test_python_dash_m_and_no_traceback_in_a_real_process(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{")
    p = subprocess.run([sys.executable, "-m", "tracekit", "explain", str(bad)],
                       capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr.startswith("Error: ") and "Traceback" not in p.stderr
    assert p.stdout == ""


def _piped(args: list[str], columns: str | None) -> str:
    """``tracekit ARGS`` with stdout a pipe (not a terminal), COLUMNS set or not."""
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    if columns is not None:
        env["COLUMNS"] = columns
    r = subprocess.run([sys.executable, "-m", "tracekit", *args], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_piped_output_fits_its_tables_without_columns():
    """`tracekit floor | less`: no COLUMNS in the environment, stdout a pipe. rich alone lays it out
    at 80 columns and wraps every long GPU name over two or three rows; one row per GPU here."""
    rows = json.loads(_piped(["floor", "--model", "qwen2.5-7b", "--ctx", "2048", "--json"], None))
    out = _piped(["floor", "--model", "qwen2.5-7b", "--ctx", "2048"], None)
    lines = out.splitlines()
    first = next(i for i, ln in enumerate(lines) if ln.startswith("┡"))
    end = next(i for i, ln in enumerate(lines) if ln.startswith("└"))
    body = lines[first + 1:end]  # the floor table's rows (a reference table may follow)
    assert len(body) == len(rows), out
    for r in rows:
        assert sum(ln.startswith(f"│ {r['gpu']} ") for ln in body) == 1, r["gpu"]


def test_piped_output_keeps_the_columns_the_user_set():
    out = _piped(["floor", "--model", "qwen2.5-7b", "--ctx", "2048"], "100")
    assert max(len(ln.rstrip()) for ln in out.splitlines()) <= 100
    assert max(len(ln) for ln in out.splitlines()) > 90  # laid out at 100, not at rich's 80
