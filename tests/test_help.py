"""Every command's --help reads like a man page and its examples run: a test executes each
``$ tracekit …`` line of each help text (those marked ``# GPU`` need a GPU and are only parsed),
in a folder holding the files the examples name. Shell completion works through click's
documented mechanism (``_TRACEKIT_COMPLETE``)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tracekit.cli import app

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_traces"
#: the files the examples name, and the committed traces they stand for
FILES = {
    "trace.json.gz": SAMPLES / "qwen2.5-7b_ctx2048_eager.json.gz",
    "eager.json.gz": SAMPLES / "qwen2.5-7b_ctx2048_eager.json.gz",
    "graphs.json.gz": SAMPLES / "qwen2.5-7b_ctx2048_cuda-graphs.json.gz",
    "capture/paper_matrix.toml": ROOT / "capture" / "paper_matrix.toml",
    "rank0.json.gz": SAMPLES / "peer" / "hta" / "ranks" / "sampled_rank-0.json.gz",
    "rank1.json.gz": SAMPLES / "peer" / "hta" / "ranks" / "sampled_rank-1.json.gz",
}
COMMANDS = sorted(app.commands)


def _help(*args: str) -> str:
    r = CliRunner().invoke(app, [*args, "--help"], terminal_width=100)
    assert r.exit_code == 0, r.output
    return r.output


def _examples(text: str) -> list[tuple[str, bool]]:
    """(command line, needs a GPU) for every ``$ tracekit`` line."""
    out = []
    for line in text.splitlines():
        m = re.match(r"\s+\$ (tracekit .*)$", line)
        if m:
            out.append((m.group(1).split("#")[0].strip(), "# GPU" in m.group(1)))
    return out


def test_every_command_has_a_description_and_examples():
    for name in COMMANDS:
        text = _help(name)
        desc = text.split("\n\n")[1].strip()
        assert len(desc) > 40, name
        ex = _examples(text)
        assert ex and any(not gpu for _, gpu in ex), name
        assert max(len(x) for x in text.splitlines()) <= 100, name
    assert _examples(_help())


@pytest.fixture()
def example_dir(tmp_path, monkeypatch):
    for name, src in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


CASES = [(name, line) for name in [None, *COMMANDS]
         for line, gpu in _examples(_help(*([name] if name else []))) if not gpu]


@pytest.mark.parametrize("command,line", CASES, ids=[c[1][9:60] for c in CASES])
def test_each_example_runs(example_dir, command, line):
    argv = shlex.split(line)[1:]
    if command == "capture":
        pytest.importorskip("torch")
        pytest.importorskip("transformers")
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == 0, f"{line}\n{r.output[-2000:]}"
    for flag in ("-o", "--markdown", "--html"):  # the files an example says it writes exist
        if flag in argv:
            assert (example_dir / argv[argv.index(flag) + 1]).stat().st_size > 0


def _complete(words: str, cword: int) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "_TRACEKIT_COMPLETE": "bash_complete",
           "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    p = subprocess.run([sys.executable, "-m", "tracekit"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return [line.split(",", 1)[1] for line in p.stdout.splitlines() if "," in line]


def test_shell_completion_scripts_and_candidates():
    for shell, needle in (("bash_source", "complete -o nosort -F _tracekit_completion tracekit"),
                          ("zsh_source", "#compdef tracekit"),
                          ("fish_source", "complete --no-files --command tracekit")):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "_TRACEKIT_COMPLETE": shell}
        p = subprocess.run([sys.executable, "-m", "tracekit"], env=env, capture_output=True,
                           text=True, timeout=60)
        assert p.returncode == 0 and needle in p.stdout, (shell, p.stdout[:300])
    assert set(_complete("tracekit ", 1)) == set(COMMANDS)
    assert "--graph-trace" in _complete("tracekit explain --gr", 2)
    from tracekit.specs.models import known_models

    assert set(_complete("tracekit floor --model qwen", 3)) == {
        m for m in known_models() if m.startswith("qwen")}
    assert "H100 SXM5" in _complete("tracekit explain t.json.gz --gpu H1", 4)
