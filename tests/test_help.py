"""Every command's --help reads like a man page, with examples (tests/test_examples.py runs each
of them, with the README's). Shell completion works through click's documented mechanism
(``_TRACEKIT_COMPLETE``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from tracekit.cli import app

ROOT = Path(__file__).resolve().parents[1]
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
