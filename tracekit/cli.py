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

from tracekit.capture.options import CaptureOptions
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
# Owned by the capture work (issue 4): options map 1:1 onto tracekit.capture.CaptureOptions,
# whose defaults they take. Choices are checked by the library (one ``Error:`` line, not a
# usage panel); torch is imported only once a capture really runs.
_CAP = CaptureOptions()


@app.command()
def capture(
    model: str = typer.Option(None, "--model", "-m", help="Registry name (qwen2.5-7b, llama-3.1-8b, mistral-7b, qwen2.5-0.5b, llama-3.2-1b, tiny, ...), a config.json or a checkpoint directory."),
    weights: Path = typer.Option(None, "--weights", help="Load real weights from this local checkpoint directory (offline) instead of random ones."),
    ctx: int = typer.Option(_CAP.ctx, "--ctx", help="Prompt tokens prefilled before decoding."),
    mode: str = typer.Option(_CAP.mode, "--mode", help="eager (dynamic cache) | cuda-graphs (static cache, one captured graph per step) | compile (torch.compile reduce-overhead)."),
    steps: int = typer.Option(_CAP.steps, "--steps", help="Unprofiled decode steps timed with CUDA events (the ground truth: their median)."),
    warmup: int = typer.Option(_CAP.warmup, "--warmup", help="Decode steps run and discarded before timing."),
    profile_steps: int = typer.Option(_CAP.profile_steps, "--profile-steps", help="Decode steps in the profiled window (each one a tracekit.step#i range)."),
    device: str = typer.Option(_CAP.device, "--device", help="cuda | cpu (cpu: small models such as tiny, CPU activity only)."),
    dtype: str = typer.Option(_CAP.dtype, "--dtype", help="auto (bf16 on cuda, fp32 on cpu) | bf16 | fp16 | fp32."),
    profiler: str = typer.Option(_CAP.profiler, "--profiler", help="torch | nsys (also run under Nsight Systems: writes .nsys-rep and .sqlite next to the output)."),
    nsys: str = typer.Option(None, "--nsys", help="Path of the nsys binary (implies --profiler nsys)."),
    nsys_kineto: str = typer.Option(_CAP.nsys_kineto, "--nsys-kineto", help="Under nsys, what torch.profiler records too: cpu (safe) | cuda (both tools trace CUDA; needs CUPTI to allow it)."),
    seed: int = typer.Option(_CAP.seed, "--seed", help="Seed of the random weights and prompt."),
    output: Path = typer.Option(None, "--output", "-o", help="Trace to write (.json.gz); default MODEL_ctxN_MODE.json.gz here."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress display (the summary is still printed)."),
) -> None:
    """Run batch-1 decode under the profiler and write a trace that explain reads with no flags.

    Example: tracekit capture --model qwen2.5-7b --ctx 2048 --mode cuda-graphs -o graphs.json.gz
    """
    from tracekit.capture import run_capture, summary_rows
    from tracekit.capture.progress import Progress, RichProgress

    opts = CaptureOptions(
        model=model, weights=weights, ctx=ctx, mode=mode, steps=steps, warmup=warmup,
        profile_steps=profile_steps, device=device, dtype=dtype, profiler=profiler, nsys=nsys,
        nsys_kineto=nsys_kineto, seed=seed, output=output,
        command=["tracekit", *sys.argv[1:]],
    )
    try:
        result = run_capture(opts, progress=Progress() if quiet else RichProgress())
    except TracekitError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        typer.echo("Error: interrupted; no trace was written", err=True)
        raise typer.Exit(130) from None
    width = max(len(label) for label, _ in summary_rows(result))
    for label, value in summary_rows(result):
        typer.echo(f"{label:<{width}}  {value}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, prog_name="tracekit", standalone_mode=True)
    except TracekitError as exc:  # pragma: no cover - commands catch their own
        print(f"Error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)

