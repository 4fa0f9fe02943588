"""The ``tracekit`` command line: a thin layer over the library.

It parses arguments, calls the library, renders, and maps :mod:`tracekit.errors` to one
``Error: …`` line and an exit code (1 bad input, 2 bad usage). No analysis lives here.

    tracekit explain --sample
    tracekit explain trace.json.gz --json
    tracekit floor --model qwen2.5-7b --ctx 2048
    tracekit capture --model qwen2.5-7b --ctx 2048 --mode eager -o trace.json.gz
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from tracekit.capture.options import CaptureOptions
from tracekit.errors import BadUsage, TracekitError
from tracekit.fileio import write_all
from tracekit.report.safe import clean_text


class Terminated(BaseException):
    """SIGTERM, raised where the program is so that cleanup (temp files) runs."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush cannot fail again."""
    import os

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _error(message: str, code: int) -> None:
    click.echo(f"Error: {clean_text(' '.join(str(message).splitlines()))}", err=True)
    sys.exit(code)


class _Group(click.Group):
    """Every failure is one ``Error: …`` line: click's own usage errors included."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        args = list(sys.argv[1:] if args is None else args)
        if not args:
            click.echo(self.get_help(click.Context(self, info_name=prog_name or "tracekit")))
            sys.exit(0)
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            rv = super().main(args, prog_name or "tracekit", complete_var, standalone_mode=False,
                              **extra)
            sys.stdout.flush()
        except click.UsageError as exc:
            _error(exc.format_message(), 2)
        except (click.Abort, KeyboardInterrupt):
            _error("interrupted", 130)
        except Terminated:
            _error("terminated", 143)
        except TracekitError as exc:
            _error(str(exc), exc.exit_code)
        except BrokenPipeError:
            _quiet_stdout()  # `tracekit explain --json | head`: the reader left, not an error
            sys.exit(141)
        except OSError as exc:  # stdout itself failed (a full disk behind `> file`)
            _quiet_stdout()
            _error(f"cannot write the output: {exc.strerror or exc}", 1)
        finally:
            signal.signal(signal.SIGTERM, previous)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=_Group, help="Explain where the time of batch-1 LLM decode goes on NVIDIA GPUs.",
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def app() -> None:
    pass


def _fail(exc: TracekitError) -> None:
    _error(str(exc), exc.exit_code)


SAMPLE = "sample_qwen2.5-7b_ctx2048_eager.json.gz"


def sample_path() -> Path:
    """The decode trace bundled inside the package (``tracekit explain --sample``)."""
    return Path(__file__).parent / "data" / SAMPLE


# --- explain ---------------------------------------------------------------------------------
@app.command()
@click.argument("trace", required=False, type=click.Path(path_type=Path))
@click.option("--sample", is_flag=True, help="Explain the trace bundled with tracekit.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document (schema tracekit.explain/1).")
@click.option("--markdown", type=click.Path(path_type=Path), help="Write a Markdown summary for an issue.")
@click.option("--html", type=click.Path(path_type=Path), help="Write a self-contained HTML report.")
@click.option("--plotlyjs", default="inline", show_default=True, help="inline (opens offline) or cdn (small file).")
@click.option("--step-marker", help="Regex naming the annotation around each step.")
@click.option("--model", help="Model name or config.json path (for the floor).")
@click.option("--ctx", type=int, help="Context length at the first profiled step.")
@click.option("--gpu", help="GPU name, overriding the trace's device name.")
@click.option("--bandwidth", type=float, help="Peak DRAM bandwidth in GB/s.")
@click.option("--dtype", help="Weight/KV dtype (default: the capture's, else bf16).")
@click.option("--convention", default="exact", show_default=True, help="Byte convention: exact or all-weights.")
@click.option("--graph-trace", type=click.Path(path_type=Path), help="A CUDA-graph trace to calibrate the what-if.")
def explain(trace, sample, as_json, markdown, html, plotlyjs, step_marker, model, ctx, gpu,
            bandwidth, dtype, convention, graph_trace) -> None:
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
        outputs = []
        if markdown is not None:
            from tracekit.report.markdown import render_markdown

            outputs.append((markdown, render_markdown(doc).encode()))
        if html is not None:
            from tracekit.report.html import render_html

            outputs.append((html, render_html(doc, result.timeline, plotlyjs=plotlyjs).encode()))
        write_all(outputs)  # both reports or neither
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
@click.option("--model", required=True, help="Model name or config.json path.")
@click.option("--ctx", type=int, default=2048, show_default=True, help="Context length (tokens in the KV cache).")
@click.option("--gpu", help="One GPU (default: every known GPU).")
@click.option("--dtype", default="bf16", show_default=True, help="Weight/KV dtype.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows.")
def floor(model, ctx, gpu, dtype, as_json) -> None:
    """The analytic memory floor of one decode step — no trace needed.

    Example: tracekit floor --model qwen2.5-7b --ctx 2048 --gpu H100
    """
    from tracekit.floor import floor_table
    from tracekit.specs.gpus import get_gpu
    from tracekit.specs.models import get_model

    try:
        from tracekit.explain import check_ctx

        check_ctx(ctx)
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
@click.option("--model", "-m", help="Registry name (qwen2.5-7b, llama-3.1-8b, mistral-7b, qwen2.5-0.5b, llama-3.2-1b, tiny, ...), a config.json or a checkpoint directory.")
@click.option("--weights", type=click.Path(path_type=Path), help="Load real weights from this local checkpoint directory (offline) instead of random ones.")
@click.option("--ctx", type=int, default=_CAP.ctx, show_default=True, help="Prompt tokens prefilled before decoding.")
@click.option("--mode", default=_CAP.mode, show_default=True, help="eager (dynamic cache) | cuda-graphs (static cache, one captured graph per step) | compile (torch.compile reduce-overhead).")
@click.option("--steps", type=int, default=_CAP.steps, show_default=True, help="Unprofiled decode steps timed with CUDA events (the ground truth: their median).")
@click.option("--warmup", type=int, default=_CAP.warmup, show_default=True, help="Decode steps run and discarded before timing.")
@click.option("--profile-steps", type=int, default=_CAP.profile_steps, show_default=True, help="Decode steps in the profiled window (each one a tracekit.step#i range).")
@click.option("--device", default=_CAP.device, show_default=True, help="cuda | cpu (cpu: small models such as tiny, CPU activity only).")
@click.option("--dtype", default=_CAP.dtype, show_default=True, help="auto (bf16 on cuda, fp32 on cpu) | bf16 | fp16 | fp32.")
@click.option("--profiler", default=_CAP.profiler, show_default=True, help="torch | nsys (also run under Nsight Systems: writes .nsys-rep and .sqlite next to the output).")
@click.option("--nsys", help="Path of the nsys binary (implies --profiler nsys).")
@click.option("--nsys-kineto", default=_CAP.nsys_kineto, show_default=True, help="Under nsys, what torch.profiler records too: cpu (safe) | cuda (both tools trace CUDA; needs CUPTI to allow it).")
@click.option("--seed", type=int, default=_CAP.seed, show_default=True, help="Seed of the random weights and prompt.")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Trace to write (.json.gz); default MODEL_ctxN_MODE.json.gz here.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display (the summary is still printed).")
def capture(model, weights, ctx, mode, steps, warmup, profile_steps, device, dtype, profiler, nsys,
            nsys_kineto, seed, output, quiet) -> None:
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
        click.echo("Error: interrupted; no trace was written", err=True)
        sys.exit(130)
    width = max(len(label) for label, _ in summary_rows(result))
    for label, value in summary_rows(result):
        click.echo(f"{label:<{width}}  {value}")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    app.main(args=argv, prog_name="tracekit")
