"""The ``tracekit`` command line: a thin layer over the library.

It parses arguments, calls the library, renders, and maps :mod:`tracekit.errors` to one
``Error: …`` line and an exit code (1 bad input, 2 bad usage). No analysis lives here.

    tracekit explain --sample
    tracekit explain trace.json.gz --json
    tracekit floor --model qwen2.5-7b --ctx 2048
    tracekit capture --model qwen2.5-7b --ctx 2048 --mode eager -o trace.json.gz
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from tracekit.errors import TracekitError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Explain where the time of batch-1 LLM decode goes on NVIDIA GPUs.",
    pretty_exceptions_enable=False,
)


def _fail(exc: TracekitError) -> None:
    typer.echo(f"Error: {exc}", err=True)
    raise typer.Exit(exc.exit_code)


# --- capture ---------------------------------------------------------------------------------
# Owned by the capture work (issue 4): options map 1:1 onto tracekit.capture.CaptureOptions.
@app.command()
def capture() -> None:
    """Run batch-1 decode under the profiler and write a trace (see tracekit.capture)."""
    raise typer.Exit(2)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, prog_name="tracekit", standalone_mode=True)
    except TracekitError as exc:  # pragma: no cover - commands catch their own
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)

