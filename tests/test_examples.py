"""Every example command printed by ``--help`` and in the README runs, as written.

The examples are read from the help text (``Example: tracekit …``) and from the README's shell
blocks (lines starting with ``tracekit`` or ``$ tracekit``), then run in a directory holding the
files they name (``trace.json.gz`` and ``eager.json.gz``: an eager sample trace; ``graphs.json.gz``:
a CUDA-graph one). An example must exit 0 with no ``Error:``, or, where it needs a GPU (``capture``,
``sweep`` on a machine without CUDA), fail with exactly one ``Error:`` line that says so. One
example per command and output path runs as ``python -m tracekit`` in a child (:data:`CHILD`), the
others through the CLI's click group in this process.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from tracekit.cli import app

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_traces"
FILES = {"trace.json.gz": "qwen2.5-7b_ctx2048_eager.json.gz",
         "eager.json.gz": "qwen2.5-7b_ctx2048_eager.json.gz",
         "graphs.json.gz": "qwen2.5-7b_ctx2048_cuda-graphs.json.gz",
         "rank0.json.gz": "peer/hta/ranks/sampled_rank-0.json.gz",
         "rank1.json.gz": "peer/hta/ranks/sampled_rank-1.json.gz",
         # the committed quantized captures (H100, cuda-graphs)
         "int4.json.gz": "quant/h100/qwen2.5-7b_ctx2048_cuda-graphs_int4.json.gz",
         "bf16.json.gz": "quant/h100/qwen2.5-7b_ctx2048_cuda-graphs_bf16.json.gz",
         "graphs_bf16.json.gz": "quant/h100/qwen2.5-7b_ctx2048_cuda-graphs_bf16.json.gz"}
GPU_COMMANDS = {"capture", "sweep"}  # they run models on a GPU
NEEDS_GPU = re.compile(r"CUDA|GPU|torch", re.IGNORECASE)


def _help_examples() -> list[str]:
    out = []
    for command in [app, *app.commands.values()]:  # the docstring as written, before click wraps it
        out += re.findall(r"Example:\s*(tracekit [^\n]+)", command.help or "")
        out += re.findall(r"^\s*\$ (tracekit [^\n]+)", command.help or "", re.M)
    return [e.strip() for e in out]


def _readme_examples() -> list[str]:
    text = (REPO / "README.md").read_text()
    out = []
    for block in re.findall(r"```(?:bash|sh|shell|console)?\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("pip install . && "):
                line = line.removeprefix("pip install . && ")
            if line.startswith("tracekit "):
                out.append(line.split("  #")[0].split(" # ")[0].strip())
    return out


EXAMPLES = sorted(set(_help_examples()) | set(_readme_examples()))

#: the examples run as ``python -m tracekit …`` in a child (the entry point, the process's exit
#: status and streams, a worker pool): one per command and output path; the rest run the same
#: argv through the CLI's click group in this process (tests/test_hostile.py does the same)
CHILD = {
    "tracekit explain --sample",
    "tracekit explain trace.json.gz --markdown issue.md --html report.html --plotlyjs cdn",
    "tracekit explain int4.json.gz --baseline graphs_bf16.json.gz",
    "tracekit compare eager.json.gz graphs.json.gz --json --seed 1",
    "tracekit floor --model llama-3.1-8b --ctx 8192 --gpu \"H100 SXM5\" --json",
    "tracekit annotate trace.json.gz -o seen.json.gz --model qwen2.5-7b --ctx 2048",
    "tracekit batch . --out fleet --jobs 2",
    "tracekit ranks rank0.json.gz rank1.json.gz",
    "tracekit sweep capture/paper_matrix.toml --list",
    "tracekit capture -m tiny --device cpu --ctx 32 --steps 3 --profile-steps 2 -o tiny.json.gz",
}


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def _run(argv: list[str], cwd: Path, child: bool) -> Ran:
    if child:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
        r = subprocess.run([sys.executable, "-m", "tracekit", *argv], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=300)
        return Ran(r.returncode, r.stdout, r.stderr)
    here = Path.cwd()
    os.chdir(cwd)
    try:
        res = CliRunner().invoke(app, argv)
    finally:
        os.chdir(here)
    stderr = res.stderr
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        stderr += "".join(traceback.format_exception(res.exception))  # "Traceback" fails it
    return Ran(res.exit_code, res.stdout, stderr)


def test_examples_were_found():
    commands = {e.split()[1] for e in EXAMPLES}
    assert {"explain", "floor", "capture"} <= commands, EXAMPLES
    # the examples run as a child are examples still, and cover every command but capture on a GPU
    assert CHILD <= set(EXAMPLES), CHILD - set(EXAMPLES)
    assert {e.split()[1] for e in CHILD} == commands & set(app.commands), commands


def _param(example: str):
    """The children, and the capture examples (they import torch), are ``slow``."""
    slow = example in CHILD or example.split()[1] == "capture"
    return pytest.param(example, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("example", [_param(e) for e in EXAMPLES])
def test_example_runs(example, tmp_path):
    for name, src in FILES.items():
        shutil.copy(SAMPLES / src, tmp_path / name)
    if (REPO / "capture").is_dir():  # recipes the sweep examples name
        shutil.copytree(REPO / "capture", tmp_path / "capture")
    (tmp_path / "sample_traces").symlink_to(SAMPLES)  # examples that name a committed trace
    gpu = example.rstrip().endswith("# GPU")  # the help marks what needs an NVIDIA GPU
    argv = shlex.split(example, comments=True)[1:]
    if argv[0] == "sweep" and gpu and not Path("/dev/nvidia0").exists():
        pytest.skip("sweep needs a GPU: without one it runs every cell to its own CUDA error "
                    "(minutes) and reports them all, not one Error line")
    r = _run(argv, tmp_path, child=example in CHILD)
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    # what needs a GPU: an example marked so, or a capture not on the CPU; the rest must succeed
    needs_gpu = gpu or (argv[0] in GPU_COMMANDS and "cpu" not in argv and "--list" not in argv
                        and "--rows-only" not in argv)
    if needs_gpu and r.returncode != 0:
        # capture may print progress lines first (``session 1/10…``); the failure is one Error line
        lines = r.stderr.strip().splitlines()
        errors = [ln for ln in lines if ln.startswith("Error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], r.stderr[-2000:]
        assert NEEDS_GPU.search(errors[0]), errors[0]
        return
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Error:" not in r.stderr
    # our own files (the samples, tracekit's captures) draw no warning about what tracekit wrote
    # or how they were profiled (the examples run piped: stdout is not a terminal)
    said = " ".join((r.stdout + r.stderr).split())
    for phrase in ("capture metadata", "ProfilerActivity", "skipped events", "ignored "):
        assert phrase not in said, said[max(0, said.find(phrase) - 200):][:600]
    for flag in ("--html", "--markdown", "-o"):
        if flag in argv:
            out = tmp_path / argv[argv.index(flag) + 1]
            assert out.is_file() and out.stat().st_size > 0, out
