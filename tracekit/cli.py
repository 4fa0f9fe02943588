"""The ``tracekit`` command line: a thin layer over the library.

It parses arguments, calls the library, renders, and maps :mod:`tracekit.errors` to one
``Error: …`` line and an exit code (1 bad input, 2 bad usage). No analysis lives here.

    tracekit explain --sample
    tracekit explain trace.json.gz --json
    tracekit floor --model qwen2.5-7b --ctx 2048
    tracekit compare eager.json.gz graphs.json.gz --markdown ab.md
    tracekit sweep capture/paper_matrix.toml --out runs/h100 --budget-s 540
    tracekit capture --model qwen2.5-7b --ctx 2048 --mode eager -o trace.json.gz
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import click

from tracekit import __version__, sample_path
from tracekit.capture.options import CaptureOptions
from tracekit.errors import BadUsage, NoStepsError, Terminated, TracekitError
from tracekit.fileio import refuse_input, write_all
from tracekit.report.safe import clean_text


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _quiet_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush cannot fail again."""
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
        completing = os.environ.get(complete_var or "_TRACEKIT_COMPLETE")
        if not args and not completing:
            click.echo(self.get_help(click.Context(self, info_name=prog_name or "tracekit")))
            sys.exit(0)
        previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C: KeyboardInterrupt
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
            signal.signal(signal.SIGTERM, previous[0])
            signal.signal(signal.SIGINT, previous[1])
        sys.exit(rv if isinstance(rv, int) else 0)


GROUP_HELP = """Explain where the time of batch-1 LLM decode goes on NVIDIA GPUs.

tracekit reads a torch.profiler (Kineto) trace or an Nsight Systems export of decode, finds the
decode steps and splits each into the memory floor, kernel excess and launch-side overhead, with
what-ifs and a one-line verdict. `tracekit COMMAND --help` shows each command's examples.

\b
Examples:
  $ tracekit explain --sample
  $ tracekit --version

\b
Shell completion (bash, zsh, fish), click's mechanism:
  bash  eval "$(_TRACEKIT_COMPLETE=bash_source tracekit)"    # in ~/.bashrc
  zsh   eval "$(_TRACEKIT_COMPLETE=zsh_source tracekit)"     # in ~/.zshrc
  fish  _TRACEKIT_COMPLETE=fish_source tracekit | source     # in ~/.config/fish/completions/tracekit.fish

Output files: every option that names one (--markdown, --html, -o) replaces an existing file
(never half-written: a temp file is renamed into place), refuses to write over an input trace,
and says `wrote PATH` on stderr; stdout carries only the report or the --json document.

\b
Exit status: 0 success; 1 bad input (one `Error:` line says what and how to fix it);
2 bad usage; 130 interrupted.
"""


@click.group(cls=_Group, help=GROUP_HELP,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="tracekit",
                      message="%(prog)s %(version)s")
def app() -> None:
    pass


def print_json(doc) -> None:
    """A command's ``--json`` document on stdout: indented one space, one trailing newline."""
    import msgspec

    sys.stdout.write(msgspec.json.format(msgspec.json.encode(doc), indent=1).decode() + "\n")


def wrote(*paths) -> None:
    """Every output option says what it wrote, on stderr (stdout holds the report or --json)."""
    for p in paths:
        click.echo(f"wrote {p}", err=True)


def _check_reports(plotlyjs: str, reports: tuple[Path | None, ...], inputs: list) -> None:
    """Before any work: ``--plotlyjs`` is inline or cdn, and no report would overwrite an input."""
    if plotlyjs not in ("inline", "cdn"):
        raise BadUsage(f"--plotlyjs must be inline or cdn, not {plotlyjs!r}")
    for out in reports:
        if out is not None:
            refuse_input(out, inputs)


def _write_reports(markdown: Path | None, html: Path | None, draw_markdown: Callable[[], str],
                   draw_html: Callable[[], str]) -> None:
    """Draw the ``--markdown`` and ``--html`` reports asked for and write both or neither."""
    outputs: list[tuple[str | Path, bytes]] = [
        (p, draw().encode()) for p, draw in ((markdown, draw_markdown), (html, draw_html))
        if p is not None]
    write_all(outputs)
    wrote(*(p for p, _ in outputs))


def _fail(exc: TracekitError) -> None:
    _error(str(exc), exc.exit_code)


#: bootstrap defaults, written here as in tracekit/bootstrap.py (importing it would pull in numpy)
_BOOT_RESAMPLES, _BOOT_SEED = 10_000, 0


def _complete_models(ctx, param, incomplete: str) -> list:
    """Shell completion for --model: registry names (a config.json path completes as a file)."""
    from click.shell_completion import CompletionItem

    from tracekit.specs.models import known_models

    names = [n for n in known_models() if n.startswith(incomplete)]
    return [CompletionItem(n) for n in names] or [CompletionItem(incomplete, type="file")]


def _complete_gpus(ctx, param, incomplete: str) -> list:
    """Shell completion for --gpu: the datasheet table's names."""
    from click.shell_completion import CompletionItem

    from tracekit.specs.gpus import known_gpus

    return [CompletionItem(n) for n in known_gpus() if n.lower().startswith(incomplete.lower())]


#: options several commands declare word for word: one declaration, one help text
_STEP_MARKER = click.option("--step-marker", help="Regex naming the annotation around each step.")
_CTX = click.option("--ctx", type=int, help="Context length at the first profiled step.")
_GPU = click.option("--gpu", shell_complete=_complete_gpus, help="GPU name, overriding the trace's device name.")
_BANDWIDTH = click.option("--bandwidth", type=float, help="Peak DRAM bandwidth in GB/s.")
_PLOTLYJS = click.option("--plotlyjs", default="inline", show_default=True, help="inline (opens offline) or cdn (small file).")


# --- explain ---------------------------------------------------------------------------------
@app.command()
@click.argument("trace", required=False, type=click.Path(path_type=Path))
@click.option("--sample", is_flag=True, help="Explain the trace bundled with tracekit.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document (schema tracekit.explain/1).")
@click.option("--markdown", type=click.Path(path_type=Path), help="Write a Markdown summary for an issue.")
@click.option("--html", type=click.Path(path_type=Path), help="Write a self-contained HTML report.")
@_PLOTLYJS
@_STEP_MARKER
@click.option("--model", shell_complete=_complete_models, help="Model name or config.json path (for the floor).")
@_CTX
@_GPU
@_BANDWIDTH
@click.option("--dtype", help="Weight/KV dtype (default: the capture's, else bf16); int8 | fp8 | int4 | nf4 for a weight-only quantized floor, or the layouts capture --quant stores: int8-torchao | fp8-row | int4-tinygemm | nf4-torchao.")
@click.option("--group-size", type=int, help="int4 group size (default 128).")
@click.option("--convention", default="exact", show_default=True, help="Byte convention: exact or all-weights.")
@click.option("--graph-trace", type=click.Path(path_type=Path), help="A trace of the CUDA-graph program (same model, prompt, GPU): the CUDA-Graphs what-if predicts that program, not just these kernels replayed.")
@click.option("--unprofiled-ms", type=float, help="The measured unprofiled ms per decode step (explains the real step).")
@click.option("--baseline", type=click.Path(path_type=Path), help="The bf16 trace of the same model, GPU, context and mode: says how much of a quantized step's byte saving it realises (JSON key quantization).")
@click.option("--verbose", "-v", is_flag=True, help="Say how the trace was read (streamed or whole) on stderr.")
def explain(trace, sample, as_json, markdown, html, plotlyjs, step_marker, model, ctx, gpu,
            bandwidth, dtype, group_size, convention, graph_trace, unprofiled_ms, verbose,
            baseline=None) -> None:
    """Break each decode step into memory floor, kernel excess and launch overhead.

    Reads TRACE (a torch.profiler JSON or .json.gz, or an Nsight Systems .sqlite export), finds the
    decode steps and prints the per-step breakdown, the decomposition latency = floor + kernel
    excess + launch overhead, the what-ifs (CUDA Graphs, at the floor) with their calibration, the
    top kernels and a one-line verdict. A trace from `tracekit capture` needs no flags; for any
    other trace --model and --ctx complete the floor. Numbers are defined in docs/architecture.md.

    \b
    Examples:
      $ tracekit explain --sample
      $ tracekit explain trace.json.gz --json
      $ tracekit explain trace.json.gz --markdown issue.md --html report.html --plotlyjs cdn
      $ tracekit explain trace.json.gz --graph-trace graphs.json.gz
      $ tracekit explain trace.json.gz --model qwen2.5-7b --ctx 2048 --gpu "H100 SXM5"
      $ tracekit explain trace.json.gz --unprofiled-ms 55.0
      $ tracekit explain int4.json.gz --baseline bf16.json.gz   # GPU captures (capture --quant)
    """
    from tracekit.explain import explain as run_explain

    if (trace is None) == (not sample):
        _fail(BadUsage("pass a trace file or --sample (exactly one)"))
    try:
        _check_reports(plotlyjs, (markdown, html), [trace, graph_trace, baseline])
        from tracekit.trace.progress import load_for_cli

        result = run_explain(
            load_for_cli(sample_path() if sample else trace, verbose=verbose),
            step_marker=step_marker, model=model, ctx=ctx,
            gpu=gpu, bandwidth=bandwidth, dtype=dtype, group_size=group_size, convention=convention,
            graph_trace=graph_trace, unprofiled_ms=unprofiled_ms,
            baseline=None if baseline is None else load_for_cli(baseline, verbose=verbose),
        )
        doc = result.to_dict()

        def draw_markdown() -> str:
            from tracekit.report.markdown import render_markdown

            return render_markdown(doc)

        def draw_html() -> str:
            from tracekit.report.html import render_html

            return render_html(doc, result.timeline, plotlyjs=plotlyjs)

        _write_reports(markdown, html, draw_markdown, draw_html)
    except NoStepsError as exc:  # say which file: the error line is all the user sees
        _fail(NoStepsError(f"{sample_path() if sample else trace}: {exc}"))
    except TracekitError as exc:
        _fail(exc)
    if as_json:
        print_json(doc)
    else:
        from tracekit.report.terminal import render

        render(doc)
        if doc.get("quantization"):
            from tracekit.report.quantized import render_quantization

            render_quantization(doc["quantization"])


# --- compare ---------------------------------------------------------------------------------
@app.command()
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document (schema tracekit.compare/1).")
@click.option("--markdown", type=click.Path(path_type=Path), help="Write a Markdown summary for an issue or PR.")
@click.option("--html", type=click.Path(path_type=Path), help="Write a self-contained HTML page (side-by-side waterfalls).")
@_PLOTLYJS
@click.option("--basis", default="auto", show_default=True, help="What the bootstrap resamples: auto (sessions when both sides have >= 2) | sessions | steps.")
@click.option("--resamples", type=int, default=_BOOT_RESAMPLES, show_default=True, help="Bootstrap resamples.")
@click.option("--seed", type=int, default=_BOOT_SEED, show_default=True, help="Bootstrap seed (the same inputs and seed give the same interval).")
@click.option("--model", shell_complete=_complete_models, help="Model name or config.json path, for both sides' floors.")
@click.option("--gpu", shell_complete=_complete_gpus, help="GPU name, overriding the traces' device names.")
@click.option("--dtype", help="Weight dtype for the floor (bf16, int8, fp8, int4, nf4, ...).")
def compare(a, b, as_json, markdown, html, plotlyjs, basis, resamples, seed, model, gpu, dtype) -> None:
    """Speed-up of B over A with a 95% bootstrap CI, and what moved (per-term deltas).

    A and B are each a trace, a directory of traces, a quoted glob ('runs/eager_*.json.gz') or a
    multi-session capture (tracekit capture --sessions N).

    \b
    Examples:
      $ tracekit compare eager.json.gz graphs.json.gz
      $ tracekit compare eager.json.gz graphs.json.gz --json --seed 1
      $ tracekit compare eager.json.gz graphs.json.gz --markdown ab.md --basis steps
    """
    from tracekit.compare import compare as run_compare

    kw = {k: v for k, v in (("model", model), ("gpu", gpu), ("dtype", dtype)) if v is not None}
    try:
        _check_reports(plotlyjs, (markdown, html), [a, b])
        doc = run_compare(a, b, basis=basis, resamples=resamples, seed=seed, **kw).to_dict()

        def draw_markdown() -> str:
            from tracekit.report.compare import render_markdown

            return render_markdown(doc)

        def draw_html() -> str:
            from tracekit.report.compare_html import render_compare_html

            return render_compare_html(doc, plotlyjs=plotlyjs)

        _write_reports(markdown, html, draw_markdown, draw_html)
    except TracekitError as exc:
        _fail(exc)
    if as_json:
        print_json(doc)
    else:
        from tracekit.report.compare import render_terminal

        render_terminal(doc)


# --- annotate --------------------------------------------------------------------------------
@app.command()
@click.argument("trace", type=click.Path(path_type=Path))
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path),
              help="The annotated trace to write (.json.gz, or .json for plain JSON).")
@click.option("--force", is_flag=True, hidden=True, help="Accepted for old scripts: OUTPUT is always replaced.")
@_STEP_MARKER
@click.option("--model", shell_complete=_complete_models, help="Model name or config.json path (adds the floor to each step).")
@_CTX
@_GPU
@_BANDWIDTH
def annotate(trace, output, force, step_marker, model, ctx, gpu, bandwidth) -> None:
    """Write TRACE back with tracekit's findings as tracks Perfetto and chrome://tracing show.

    A process named "tracekit" gains three tracks: one slice per decode step with its breakdown in
    args, one slice per GPU idle gap named by its class (and by the host op for stalls), and a
    GPU busy % counter. The original events are kept byte for byte. Kineto (torch.profiler) JSON
    only.

    \b
    Examples:
      $ tracekit annotate trace.json.gz -o trace.tracekit.json.gz
      $ tracekit annotate trace.json.gz -o seen.json.gz --model qwen2.5-7b --ctx 2048
    """
    from tracekit.annotate import annotate as run_annotate

    try:
        out = run_annotate(trace, output, force=force, step_marker=step_marker, model=model,
                           ctx=ctx, gpu=gpu, bandwidth=bandwidth)
    except TracekitError as exc:
        _fail(exc)
    wrote(f"{out}: open it in https://ui.perfetto.dev or chrome://tracing")


# --- floor -----------------------------------------------------------------------------------
@app.command()
@click.option("--model", shell_complete=_complete_models, required=True, help="Model name or config.json path.")
@click.option("--ctx", type=int, default=2048, show_default=True, help="Context length (tokens in the KV cache).")
@click.option("--gpu", shell_complete=_complete_gpus, help="One GPU (default: every known GPU).")
@click.option("--dtype", default="bf16", show_default=True, help="bf16 | fp16 | fp32, or a weight-only format: int8 | fp8 | int4 | nf4, or torchao's int8-torchao | fp8-row | int4-tinygemm | nf4-torchao (scales, zeros and padding counted; KV stays bf16).")
@click.option("--group-size", type=int, help="int4 group size (default 128): one fp16 scale + 4-bit zero per group.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows.")
def floor(model, ctx, gpu, dtype, group_size, as_json) -> None:
    """The analytic memory floor of one decode step — no trace needed.

    Bytes one decode step must move (weights, KV cache read at --ctx, one token's K/V written) ÷
    each GPU's datasheet peak bandwidth, in both conventions: exact, and the study's all weights +
    KV (W + K).

    \b
    Examples:
      $ tracekit floor --model qwen2.5-7b --ctx 2048
      $ tracekit floor --model llama-3.1-8b --ctx 8192 --gpu "H100 SXM5" --json
      $ tracekit floor --model qwen2.5-7b --dtype int4 --gpu L4
    """
    from tracekit.floor import floor_table
    from tracekit.specs.gpus import get_gpu
    from tracekit.specs.models import get_model
    from tracekit.specs.quant import with_group_size

    try:
        from tracekit.explain import check_ctx

        check_ctx(ctx)
        dtype = with_group_size(dtype, group_size)
        spec = get_model(model)
        rows = floor_table(spec, ctx, gpus=[get_gpu(gpu)] if gpu else None, dtype=dtype)
    except TracekitError as exc:
        _fail(exc)
    if as_json:
        print_json(rows)
        return
    from tracekit.report.terminal import render_floor

    render_floor(spec, ctx, dtype, rows)


# --- capture ---------------------------------------------------------------------------------
# The capture options map 1:1 onto tracekit.capture.CaptureOptions,
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
@click.option("--attention", default=_CAP.attention, show_default=True, help="sdpa (transformers' default: PyTorch picks the SDPA backend, cuDNN on Hopper) | sdpa-flash | sdpa-efficient | sdpa-cudnn | sdpa-math (force one SDPA backend) | eager (matmul + softmax).")
@click.option("--quant", default=_CAP.quant, show_default=True, help="Quantize the decoder's linear weights with torchao: none | int8 | int4 (tile-packed, tinygemm; CUDA) | fp8 (weight-only) | fp8-dynamic | nf4 (torchao NF4). The floor then counts the scheme's stored bytes.")
@click.option("--group-size", "group_size", type=int, help="--quant int4 group size: 32 | 64 | 128 (default) | 256.")
@click.option("--sessions", type=int, default=_CAP.sessions, show_default=True, help="Fresh processes, each timing its own unprofiled steps (for A/B confidence intervals).")
@click.option("--profile-session", default="0", show_default=True, help="Which session (0-based) also runs the profiled window, or 'none'.")
@click.option("--output", "-o", type=click.Path(path_type=Path), help="Trace to write (.json.gz); default MODEL_ctxN_MODE.json.gz here.")
@click.option("--tp", type=int, default=_CAP.tp, show_default=True, help="Tensor-parallel ranks: runs this command under torchrun with HF's tp_plan='auto' (one GPU per rank; gloo on --device cpu) and writes OUTPUT.rankR.json.gz per rank (read them with tracekit ranks).")
@click.option("--cpu-affinity", default=_CAP.cpu_affinity, show_default=True, help="Where each capture process may run: none (the OS decides) | gpu (the CPUs local to the GPU, from sysfs) | a CPU list such as 0-7,16. Either way the trace records where the launching thread ran.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display (the summary is still printed).")
def capture(model, weights, ctx, mode, steps, warmup, profile_steps, device, dtype, profiler, nsys,
            nsys_kineto, seed, attention, quant, group_size, sessions, profile_session, tp, output,
            cpu_affinity, quiet) -> None:
    """Run batch-1 decode under the profiler and write a trace that explain reads with no flags.

    The unprofiled steps are timed with CUDA events first (the ground truth), then a short window
    is profiled with one `tracekit.step#i` range per step; the trace carries the model, context,
    GPU, versions and timings, so `tracekit explain` needs no flags. Needs the capture extra
    (torch, transformers); --device cpu runs small models anywhere.

    \b
    Examples ("# GPU": needs an NVIDIA GPU):
      $ tracekit capture -m tiny --device cpu --ctx 32 --steps 3 --profile-steps 2 -o tiny.json.gz
      $ tracekit capture -m qwen2.5-7b --ctx 2048 --mode cuda-graphs -o graphs.json.gz   # GPU
      $ tracekit capture -m qwen2.5-7b --attention sdpa-flash --sessions 10 -o flash.json.gz  # GPU
      $ tracekit capture -m qwen2.5-7b --quant int4 --mode compile -o int4.json.gz  # GPU
      $ tracekit capture -m qwen2.5-7b --ctx 2048 --tp 2 -o tp2.json.gz   # GPU: 2 of them
    """
    from tracekit.capture import run_capture, summary_rows
    from tracekit.capture.progress import Progress, RichProgress

    if profile_session.strip().lower() == "none":
        profile_index = None
    elif re.fullmatch(r"[0-9]{1,6}", profile_session.strip()):  # not '²', which isdigit() takes
        profile_index = int(profile_session)
    else:
        _fail(BadUsage(f"--profile-session must be a session index (0, 1, ...) or 'none', "
                       f"not {profile_session!r}"))
    opts = CaptureOptions(
        model=model, weights=weights, ctx=ctx, mode=mode, steps=steps, warmup=warmup,
        profile_steps=profile_steps, device=device, dtype=dtype, profiler=profiler, nsys=nsys,
        nsys_kineto=nsys_kineto, seed=seed, attention=attention, quant=quant,
        group_size=group_size, sessions=sessions,
        profile_session=profile_index, output=output, tp=tp, cpu_affinity=cpu_affinity,
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
    wrote(result.path)


# --- sweep -----------------------------------------------------------------------------------
@app.command()
@click.argument("recipe", type=click.Path(path_type=Path))
@click.option("--out", "-o", help="Output folder (traces/, parts/, results.parquet), or an fsspec URL with --executor ray|slurm; default sweeps/RECIPE-NAME.")
@click.option("--executor", type=click.Choice(["local", "ray", "slurm"]), default="local", show_default=True, help="Where the cells run: this machine, one Ray task per cell, or a Slurm array (submitit). ray and slurm need pip install 'tracekit[cluster]'.")
@click.option("--budget-s", type=float, help="Device-time budget in seconds (overrides the recipe's [sweep] budget_s).")
@click.option("--cell", help="Run only this cell (id or 0-based index) in this process: one job of a fanned-out sweep.")
@click.option("--list", "list_cells", is_flag=True, help="List the cells and whether each is done; run nothing.")
@click.option("--retry-failed", is_flag=True, help="Run again the cells whose capture failed in an earlier run.")
@click.option("--rows-only", is_flag=True, help="Capture nothing: write the rows of cells captured already (traces copied from a GPU box).")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
def sweep(recipe, out, executor, budget_s, cell, list_cells, retry_failed, rows_only, quiet) -> None:
    """Run a model x ctx x mode x attention matrix; resumable, one Parquet row per cell.

    Cells run on device = "cuda" unless the recipe says device = "cpu" (tiny models); where the
    cells to capture cannot run (no CUDA device, torch not installed) the sweep stops before the
    first cell with one error.

    \b
    Examples ("# GPU": needs an NVIDIA GPU):
      $ tracekit sweep capture/paper_matrix.toml --list
      $ tracekit sweep capture/paper_matrix.toml --out runs/h100 --budget-s 540   # GPU
      $ tracekit sweep capture/paper_matrix.toml --out runs/h100 --rows-only

    On a cluster, --executor ray (a Ray task per cell) or --executor slurm (a submitit job
    array), with --out a shared folder or an fsspec URL; docs/sweep.md has the commands.
    """
    from tracekit.sweep import find_cell, is_done, load_recipe, run_cell, run_sweep, trace_path

    try:
        if budget_s is not None and budget_s <= 0:
            raise BadUsage(f"--budget-s must be a positive number of seconds, got {budget_s}")
        rec = load_recipe(recipe)
        out = out or str(Path("sweeps") / recipe.name.removesuffix(".toml"))
        if list_cells and "://" in out:  # a sweep's parts in object storage
            from tracekit.executors import done_cells

            done = done_cells(out)
            for i, c in enumerate(rec.cells):
                click.echo(f"{i:3d}  {'done' if c.id in done else 'pending':<8}  {c.id}")
            return
        if executor != "local" and not (list_cells or cell is not None):
            from tracekit.executors import run_sweep_with

            if budget_s is not None or rows_only:
                raise BadUsage(f"--executor {executor} runs every unfinished cell; --budget-s and "
                               "--rows-only belong to --executor local")
            res = run_sweep_with(executor, rec, out, say=(lambda _m: None) if quiet else click.echo)
            out = Path(out) if "://" not in out else out
        elif "://" in out:
            raise BadUsage(f"--out {out}: a URL needs --executor ray or slurm (local sweeps write "
                           "to a folder)")
        else:
            out = Path(out)
        if list_cells:
            for i, c in enumerate(rec.cells):
                state = ("done" if is_done(out, c) else "captured" if trace_path(out, c).is_file()
                         else "pending")
                click.echo(f"{i:3d}  {state:<8}  {c.id}")
            return
        if cell is not None:
            from tracekit.capture.progress import Progress, RichProgress

            one = find_cell(rec, cell)
            part = run_cell(one, out, progress=Progress() if quiet else RichProgress())
            click.echo(f"wrote {part}" if part else
                       f"captured {trace_path(out, one)}; its row is written where polars is installed")
            return
        if executor == "local":
            res = run_sweep(rec, out, budget_s=budget_s, retry_failed=retry_failed,
                            rows_only=rows_only, say=(lambda _m: None) if quiet else click.echo)
    except TracekitError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        click.echo("Error: interrupted; finished cells are kept, run the same command to continue",
                   err=True)
        sys.exit(130)
    click.echo(f"{len(res.skipped) + len(res.done)} of {len(rec.cells)} cells done "
               f"({len(res.done)} now); results: {res.results or 'not written here (no polars)'}")
    if res.captured:
        click.echo(f"{len(res.captured)} cells captured, rows pending: run the same command where "
                   "polars is installed (with OUT copied there) to write them")
    if res.pending:
        click.echo(f"{len(res.pending)} cells left for lack of budget: run the same command to continue")
    if res.uncaptured:
        click.echo(f"{len(res.uncaptured)} cells not captured yet: run the same command without "
                   "--rows-only on a GPU box to capture them")
    if res.failed:
        click.echo(f"{len(res.failed)} cells failed (details in {out}/sweep.log):", err=True)
        for cid, why in res.failed.items():
            click.echo(f"  {cid}: {why}", err=True)
        sys.exit(1)


# --- ranks -----------------------------------------------------------------------------------
@app.command()
@click.argument("traces", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the JSON document (schema tracekit.ranks/1).")
@click.option("--tp", type=int, help="Tensor-parallel degree for the floor (default: the number of traces).")
@click.option("--model", shell_complete=_complete_models, help="Model name or config.json path (for the floor).")
@_CTX
@click.option("--gpu", shell_complete=_complete_gpus, help="GPU name, overriding the traces' device name.")
@_BANDWIDTH
@click.option("--dtype", help="Weight/KV dtype (default: the capture's, else bf16).")
@_STEP_MARKER
def ranks(traces, as_json, tp, model, ctx, gpu, bandwidth, dtype, step_marker) -> None:
    """Explain a multi-rank step (tensor parallel): one trace per rank, aligned by collectives.

    For each step: every rank's latency, GPU busy and communication time, how long each rank
    waited in collectives for the others, and the rank that bounds the step (the one the others
    waited for). With a model, a TP-aware floor (each rank streams its shard).

    \b
    Examples:
      $ tracekit ranks rank0.json.gz rank1.json.gz
      $ tracekit ranks rank0.json.gz rank1.json.gz --model qwen2.5-7b --ctx 2048 --gpu h100 --json
    """
    from tracekit.ranks import explain_ranks

    if tp is not None and tp < 1:
        _fail(BadUsage(f"--tp must be at least 1, got {tp}"))
    try:
        doc = explain_ranks(list(traces), model=model, ctx=ctx, tp=tp, gpu=gpu,
                            bandwidth_gbps=bandwidth, dtype=dtype, step_marker=step_marker)
    except TracekitError as exc:
        _fail(exc)
    if as_json:
        print_json(doc)
        return
    from tracekit.report.ranks import render_ranks

    click.echo(render_ranks(doc))


# --- batch -----------------------------------------------------------------------------------
@app.command()
@click.argument("traces", nargs=-1, required=True)
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Folder for traces.parquet, steps.parquet and the resumable parts/.")
@click.option("--jobs", "-j", type=int, help="Worker processes (default: one per core).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True, help="local: this machine's cores; ray: tasks on a Ray cluster (pip install 'tracekit[cluster]').")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final line.")
def batch(traces, out, jobs, executor, quiet) -> None:
    """Explain many traces (files, folders, globs) into two Parquet tables; resumable.

    DIR/traces.parquet has one row per trace (summary, decomposition, verdict, or its Error:
    line); DIR/steps.parquet one row per step. A failed trace is a row, not the end of the
    batch; run the same command again to add new traces (the done ones are skipped).

    \b
    Examples:
      $ tracekit batch eager.json.gz graphs.json.gz --out fleet
      $ tracekit batch . --out fleet --jobs 2

    Folders are searched recursively; quote a glob ('runs/**/*.json.gz') to let tracekit
    expand it. --executor ray runs the traces as Ray tasks on a cluster.
    """
    from tracekit.batch import run_batch

    try:
        res = run_batch(traces, out, jobs=jobs, executor=executor,
                        say=(lambda _m: None) if quiet else (lambda m: click.echo(m, err=True)))
    except TracekitError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        click.echo("Error: interrupted; the traces explained so far are kept, run the same "
                   "command to continue", err=True)
        sys.exit(130)
    click.echo(f"{res['ok'] + res['error']} traces explained now ({res['error']} failed), "
               f"{res['done_before']} before; {res['traces']} rows in {res['traces_table']}, their "
               f"steps in {res['steps_table']}")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI on ``argv`` (default: the command line); ends in ``SystemExit``. It is the
    ``tracekit`` command and ``python -m tracekit``."""
    app.main(args=argv, prog_name="tracekit")


#: the name pyproject.toml's console script had (installs made before it named main)
entry = main


if __name__ == "__main__":
    main()
