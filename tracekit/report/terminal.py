"""Render an explanation for a terminal (rich). Renders only: every number comes from the dict."""

from __future__ import annotations

from typing import cast

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tracekit.contract import ExplainDoc
from tracekit.report.console import piped_width, report_console
from tracekit.report.safe import clean, clean_text
from tracekit.report.text import (
    capture_rows,
    category_rows,
    context_line,
    decomposition_rows,
    fmt,
    gpu_label,
    has_bytes,
    stall_rows,
    step_summary_rows,
    top_kernel_rows,
    unprofiled_lead,
    unprofiled_rows,
    unprofiled_whatif_text,
    whatif_basis,
    whatif_rows,
)


def render(d: ExplainDoc, console: Console | None = None) -> None:
    """Print the compact summary of an ``Explanation.to_dict()`` document.

    Laid out for terminals from 80 columns up: section headings are lines of their own (a table
    title would wrap with its table), long names are cut with "…" rather than wrapped.
    """
    width = console.width if console is not None else piped_width() or Console().width
    group = _group(clean(d), width)  # no control or bidi character from the trace
    report_console([group], console).print(group)


def _heading(title: str) -> Text:
    return Text(title, style="bold")


def _group(d: ExplainDoc, width: int = 120) -> Group:
    parts: list = [_head(d)]
    parts += _capture(d)
    parts += [_heading("Per decode step (median, min–max)"), _steps_table(d)]
    dec = d["decomposition"]
    parts += [_heading(f"Decomposition ({dec['basis']}, {dec['convention']} bytes)"),
              _decomposition_table(d)]
    parts += _host_parts(d)
    parts += _unprofiled_parts(d)
    # text.py's what-if and unprofiled rows still take a plain dict
    parts += [_heading("What-ifs"), Text(whatif_basis(cast(dict, d))), _whatif_table(d)]
    w = d["whatif"]
    if w.get("note"):
        parts.append(Text(f"what-if: {w['note']}", style="dim"))
    if d.get("floor", {}).get("missing"):
        parts.append(Text(f"floor: {d['floor']['missing']}", style="dim"))
    parts += _categories(d)
    parts += _top_kernels(d, width)
    parts.append(Panel(escape(d["verdict"]), title="verdict", expand=False))
    for msg in d.get("warnings") or []:
        parts.append(Text.assemble(("warning: ", "yellow"), msg))
    return Group(*parts)


def _head(d: ExplainDoc) -> Text:
    src = d["source"]
    t = Text(str(src.get("file")), style="bold", overflow="fold")
    t.append(f"\n{src.get('format')} trace · GPU: {gpu_label(d)}", style="")
    t.append(f"\nsteps: {src['decode_steps']} decode of {src['steps_found']} found, by "
             f"{src['detection_method']} — {src['detection_detail']}")
    if src.get("step_contents"):
        t.append(f"\n{src['step_contents']}")
    ctx = context_line(d)
    if ctx:
        t.append(f"\ncontext: {ctx}")
    return t


def _capture(d: ExplainDoc) -> list:
    rows = capture_rows(d)
    if not rows:
        return []
    t = Table.grid(padding=(0, 2))
    t.add_column(style="dim", no_wrap=True)
    t.add_column(overflow="fold")
    for label, value in rows:
        if label not in ("context",):  # said in the head already
            t.add_row(label, value)
    return [_heading(f"Capture ({(d['source'].get('capture') or {}).get('mode')})"), t]


def _steps_table(d: ExplainDoc) -> Table:
    steps = Table()
    steps.add_column("metric")
    steps.add_column("median", justify="right")
    steps.add_column("min–max", justify="right")
    for row in step_summary_rows(d):
        steps.add_row(*row)
    return steps


def _decomposition_table(d: ExplainDoc) -> Table:
    dt = Table()
    dt.add_column("term")
    dt.add_column("ms", justify="right")
    dt.add_column("share", justify="right")
    for role, (label, *cells) in decomposition_rows(d):
        dt.add_row({"sub": f"  {escape(label)}", "total": f"[bold]{label}[/]"}.get(role, label), *cells)
    return dt


def _whatif_table(d: ExplainDoc) -> Table:
    """Each what-if with the model and calibration behind it, in the same row."""
    wt = Table()
    wt.add_column("scenario", no_wrap=True)
    wt.add_column("ms/step", justify="right", no_wrap=True)
    wt.add_column("speed-up", justify="right", no_wrap=True)
    wt.add_column("model and calibration", overflow="fold")
    # text.py's what-if and unprofiled rows still take a plain dict
    for row in whatif_rows(cast(dict, d)):
        wt.add_row(*[escape(c) for c in row])
    return wt


def _categories(d: ExplainDoc) -> list:
    rows = category_rows(d)
    if not rows:
        return []
    with_bytes = has_bytes(rows)
    kt = Table()
    for col in ("category", "ms", "share", "ops") + (("bytes/step",) if with_bytes else ()):
        kt.add_column(col, justify="left" if col in ("category", "bytes/step") else "right")
    for r in rows[:8]:
        kt.add_row(*[escape(c) for c in r[:5 if with_bytes else 4]])
    return [_heading("Kernel categories (per decode step; time is the sum of op durations)"), kt]


def _top_kernels(d: ExplainDoc, width: int, n: int = 8) -> list:
    top = top_kernel_rows(d, n)
    if not top:
        return []
    t = Table()
    # the other columns and the borders take 50 characters; the name gets the rest, cut with "…"
    t.add_column("kernel", overflow="ellipsis", no_wrap=True, max_width=max(16, width - 50))
    t.add_column("category", no_wrap=True)
    t.add_column("ms/step", justify="right", no_wrap=True)
    t.add_column("calls", justify="right", no_wrap=True)
    t.add_column("median µs", justify="right", no_wrap=True)
    for name, _kind, *cells in top:
        t.add_row(*[escape(c) for c in (name, *cells)])
    return [_heading(f"Top {len(top)} kernels (per decode step)"), t]


def _host_parts(d: ExplainDoc) -> list:
    """Launch issue vs stalls: what the host was doing while the GPU waited."""
    h = d.get("host")
    if not h:
        return []
    per = f" ({h['us_per_launch']:.1f} µs of host time per launch)" if h.get("us_per_launch") else ""
    out: list = [_heading("Host (what the launching thread did while the GPU waited)"),
                 Text(f"launch issue {fmt(h.get('launch_issue_ms'))} ms{per}, stalls "
                      f"{fmt(h.get('stall_ms'))} ms per step (profiled; medians over the steps)")]
    if h.get("stalls"):
        out.append(_heading("Host stalls (one CPU op held the launching thread)"))
        t = Table()
        for col in ("op", "mean ms/step", "per step", "share", "where", "cause → advice"):
            t.add_column(col, justify="right" if col in ("mean ms/step", "per step", "share") else "left",
                         overflow="fold")
        for st, cells in zip(h["stalls"], stall_rows(d, 5)):
            cause = st.get("short_cause")
            why = (f"{escape(cause)} → {escape(st['short_advice'] or '')}"
                   if cause else "unknown cause")
            t.add_row(*[escape(c) for c in cells], why)
        out.append(t)
    return out


def _unprofiled_parts(d: ExplainDoc) -> list:
    """The real step: profiled vs unprofiled latency and the unprofiled decomposition."""
    u = d.get("unprofiled")
    if not u:
        return []
    head = _heading("The real step (unprofiled)")
    t = Table()
    t.add_column("term")
    t.add_column("profiled ms", justify="right")
    t.add_column("unprofiled ms", justify="right")
    # text.py's what-if and unprofiled rows still take a plain dict
    for role, (label, *cells) in unprofiled_rows(cast(dict, d)):
        t.add_row({"sub": f"  {label}", "total": f"[bold]{label}[/]"}.get(role, label), *cells)
    out: list = [head, Text(unprofiled_lead(cast(dict, d))), t]
    what = unprofiled_whatif_text(cast(dict, d))
    if what:
        out.append(Text(what))
    note = u.get("model") or u.get("calibration")
    if note:
        out.append(Text(f"split model: {note}", style="dim"))
    return out


def render_floor(spec, ctx: int, dtype: str, rows: list[dict], console: Console | None = None) -> None:
    """The analytic floor table (``tracekit floor``)."""
    t = Table(title=f"Memory floor of one decode step: {escape(clean_text(spec.name))}, ctx {ctx}, {escape(dtype)}",
              title_justify="left")
    for col in ("GPU", "peak GB/s", "exact GB", "floor ms (exact)", "all-weights GB",
                "floor ms (W+K)", "max tok/s"):
        t.add_column(col, justify="left" if col == "GPU" else "right")
    for r in rows:
        t.add_row(escape(r["gpu"]), f"{r['peak_gbps']:g}", f"{r['bytes_exact'] / 1e9:.2f}",
                  f"{r['floor_exact_ms']:.2f}", f"{r['bytes_all_weights'] / 1e9:.2f}",
                  f"{r['floor_all_weights_ms']:.2f}", f"{r['max_tokens_per_s']:.0f}")
    console = report_console([t], console)
    console.print(t)
    console.print("[dim]exact: weights read (one embedding row, lm_head in full) + KV read + KV "
                  "written; W+K: the study's all weights + KV. Datasheet peak bandwidth.[/]")
    ref = next((r["study_reference"] for r in rows if r.get("study_reference")), None)
    if ref:
        _render_reference(ref, console)


def _render_reference(ref: list[dict], console: Console) -> None:
    """The study's measured L4 decode paths against the floor of each path's weight format."""
    t = Table(title=f"Reference rows — the study's measured decode paths on {escape(ref[0]['gpu'])} "
                    f"(Qwen-2.5-7B, ctx {ref[0]['ctx']})", title_justify="left")
    for col in ("path", "ms/step", "R_floor", "R (W+K)", "vs bf16", "floor allows"):
        t.add_column(col, justify="left" if col == "path" else "right")
    for r in ref:
        t.add_row(f"{escape(r['path'])} ({escape(r['dtype'])})", f"{r['ms_per_step']:.2f}",
                  f"{r['r_floor_exact']:.0%}", f"{r['r_floor_all_weights']:.0%}",
                  f"{r['speedup_vs_bf16']:.2f}×", f"{r['floor_speedup_vs_bf16']:.2f}×")
    console.print(t)
    console.print("[dim]R_floor: floor of the path's own weight format (exact bytes; W+K: the study's "
                  "all weights + KV) ÷ ms/step; vs bf16: the speed-up the path achieved; floor "
                  "allows: bf16 floor ÷ its floor. Quantized paths keep the embedding, lm_head and "
                  "KV cache in bf16; int4 = group 128 with fp16 scales and 4-bit zeros, nf4 = bitsandbytes blocks of 64 with "
                  "double-quantized absmax. R_floor above 100% means the step beat that floor.[/]")
