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

from tracekit.errors import BadInput, BadUsage, TracekitError
from tracekit.fileio import atomic_write_text

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Explain where the time of batch-1 LLM decode goes on NVIDIA GPUs.",
    pretty_exceptions_enable=False,
)


def _fail(exc: TracekitError) -> None:
    typer.echo(f"Error: {exc}", err=True)
    raise typer.Exit(exc.exit_code)


SAMPLE = "sample_qwen2.5-7b_ctx2048_eager.json.gz"


def sample_path() -> Path:
    """The decode trace bundled inside the package (``tracekit explain --sample``)."""
    return Path(__file__).parent / "data" / SAMPLE


# --- explain ---------------------------------------------------------------------------------
@app.command()
def explain(
    trace: Path | None = typer.Argument(None, help="torch.profiler .json/.json.gz or Nsight .sqlite"),
    sample: bool = typer.Option(False, "--sample", help="Explain the trace bundled with tracekit."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON document (schema tracekit.explain/1)."),
    markdown: Path | None = typer.Option(None, "--markdown", help="Write a Markdown summary for an issue."),
    html: Path | None = typer.Option(None, "--html", help="Write a self-contained HTML report."),
    plotlyjs: str = typer.Option("inline", "--plotlyjs", help="inline (opens offline) or cdn (small file)."),
    step_marker: str | None = typer.Option(None, "--step-marker", help="Regex naming the annotation around each step."),
    model: str | None = typer.Option(None, "--model", help="Model name or config.json path (for the floor)."),
    ctx: int | None = typer.Option(None, "--ctx", help="Context length at the first profiled step."),
    gpu: str | None = typer.Option(None, "--gpu", help="GPU name, overriding the trace's device name."),
    bandwidth: float | None = typer.Option(None, "--bandwidth", help="Peak DRAM bandwidth in GB/s."),
    dtype: str | None = typer.Option(None, "--dtype", help="Weight/KV dtype (default: capture's, else bf16)."),
    convention: str = typer.Option("exact", "--convention", help="Byte convention: exact or all-weights."),
    graph_trace: Path | None = typer.Option(None, "--graph-trace", help="A CUDA-graph trace to calibrate the what-if."),
) -> None:
    """Break each decode step into memory floor, kernel excess and launch overhead.

    Example: tracekit explain trace.json.gz --model qwen2.5-7b --ctx 2048 --html report.html
    """
    from tracekit.explain import explain as run_explain

    if (trace is None) == (not sample):
        _fail(BadUsage("pass a trace file or --sample (exactly one)"))
    if plotlyjs not in ("inline", "cdn"):
        _fail(BadUsage(f"--plotlyjs must be inline or cdn, not {plotlyjs!r}"))
    try:
        result = run_explain(
            sample_path() if sample else trace, step_marker=step_marker, model=model, ctx=ctx,
            gpu=gpu, bandwidth_gbps=bandwidth, dtype=dtype, convention=convention,
            graph_trace=graph_trace,
        )
        doc = result.to_dict()
        if markdown is not None:
            from tracekit.report.markdown import render_markdown

            atomic_write_text(markdown, render_markdown(doc))
        if html is not None:
            from tracekit.report.html import render_html

            atomic_write_text(html, render_html(doc, result.timeline, plotlyjs=plotlyjs))
    except TracekitError as exc:
        _fail(exc)
    if as_json:
        import msgspec

        sys.stdout.write(msgspec.json.format(msgspec.json.encode(doc), indent=1).decode() + "\n")
    else:
        from tracekit.report.terminal import render

        render(doc)


# --- floor -----------------------------------------------------------------------------------
@app.command()
def floor(
    model: str = typer.Option(..., "--model", help="Model name or config.json path."),
    ctx: int = typer.Option(2048, "--ctx", help="Context length (tokens in the KV cache)."),
    gpu: str | None = typer.Option(None, "--gpu", help="One GPU (default: every known GPU)."),
    dtype: str = typer.Option("bf16", "--dtype", help="Weight/KV dtype."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON rows."),
) -> None:
    """The analytic memory floor of one decode step — no trace needed.

    Example: tracekit floor --model qwen2.5-7b --ctx 2048 --gpu H100
    """
    from tracekit.floor import floor_table
    from tracekit.specs.gpus import get_gpu
    from tracekit.specs.models import get_model

    try:
        if ctx < 0:
            raise BadInput(f"--ctx must be >= 0, got {ctx}")
        spec = get_model(model)
        rows = floor_table(spec, ctx, gpus=[get_gpu(gpu)] if gpu else None, dtype=dtype)
    except TracekitError as exc:
        _fail(exc)
    if as_json:
        import msgspec

        sys.stdout.write(msgspec.json.format(msgspec.json.encode(rows), indent=1).decode() + "\n")
        return
    from tracekit.report.terminal import render_floor

    render_floor(spec, ctx, dtype, rows)


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

