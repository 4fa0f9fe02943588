"""What the CLI tests share: run a command in-process, and read its one ``Error:`` line.

    from helpers import error_line, run
    r = run("compare", a, b)
    assert r.exit_code == 1 and "no decode steps" in error_line(r)
"""

from __future__ import annotations

from click.testing import CliRunner, Result

from tracekit.cli import app


def run(*args: object) -> Result:
    """``tracekit ARGS…`` in this process (paths and numbers are passed as strings)."""
    return CliRunner().invoke(app, [str(a) for a in args])


def error_line(result: Result) -> str:
    """The single line a failed command prints, ``Error: …``, with no traceback and nothing else."""
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]
