"""Render an explanation for a terminal (rich). Renders only: every number comes from the dict."""

from __future__ import annotations

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from tracekit.report.safe import clean, clean_text


def _f(v, fmt: str = "{:.3f}") -> str:
    return "—" if v is None else fmt.format(v)


def _rng(summary: dict, key: str, fmt: str = "{:.3f}") -> str:
    r = (summary.get("range") or {}).get(key)
    return f"{fmt.format(r[0])}–{fmt.format(r[1])}" if r else "—"


def render(d: dict, console: Console | None = None) -> None:
    """Print the compact summary of an ``Explanation.to_dict()`` document."""
    console = console or Console()
    console.print(_group(clean(d)))  # no control or bidi character from the trace reaches the tty


def _group(d: dict) -> Group:
    src, s, dec, w = d["source"], d["summary"], d["decomposition"], d["whatif"]
    head = (
        f"[bold]{escape(str(src.get('file')))}[/]  ({escape(str(src.get('format')))}, "
        f"GPU: {escape(str(d['gpu'].get('name')))})\n"
        f"steps: {src['decode_steps']} decode of {src['steps_found']} found, "
        f"by {escape(src['detection_method'])} — {escape(src['detection_detail'])}"
    )
    steps = Table(title="Per decode step (median, min–max)", title_justify="left")
    steps.add_column("metric")
    steps.add_column("median", justify="right")
    steps.add_column("min–max", justify="right")
    for label, key, fmt in [
        ("latency ms", "latency_ms", "{:.3f}"), ("GPU busy ms", "gpu_busy_ms", "{:.3f}"),
        ("idle ms", "idle_ms", "{:.3f}"), ("kernels", "kernels", "{:.0f}"),
        ("launches", "launches", "{:.0f}"),
    ]:
        steps.add_row(label, _f(s.get(key), fmt), _rng(s, key, fmt))
    steps.add_row("graph launches", _f(s.get("graph_launches"), "{:.0f}"), "")
    steps.add_row("host ms in launch calls", _f(s.get("launch_host_ms")), "")
    steps.add_row("tokens/s", _f(s.get("tokens_per_s"), "{:.1f}"), "")

    dt = Table(title=f"Decomposition ({escape(dec['basis'])}, {escape(dec['convention'])} bytes)",
               title_justify="left")
    dt.add_column("term")
    dt.add_column("ms", justify="right")
    dt.add_column("share", justify="right")
    lat = dec.get("latency_ms")

    def share(v):
        return "—" if v is None or not lat else f"{v / lat:.0%}"

    dt.add_row("memory floor", _f(dec.get("floor_ms")), share(dec.get("floor_ms")))
    dt.add_row("kernel excess", _f(dec.get("kernel_excess_ms")), share(dec.get("kernel_excess_ms")))
    dt.add_row("launch overhead", _f(dec.get("launch_overhead_ms")),
               share(dec.get("launch_overhead_ms")))
    for c, v in (dec.get("launch_overhead_by_class_ms") or {}).items():
        if v:
            dt.add_row(f"  {c}", _f(v), share(v))
    dt.add_row("[bold]latency[/]", _f(lat), "100%" if lat else "—")

    parts = [head, steps, dt]
    cap = src.get("capture") or {}
    timing = cap.get("timing") or {}
    if timing.get("median_ms") is not None:
        parts.insert(1, (
            f"capture ({escape(str(cap.get('mode')))}): unprofiled {timing['median_ms']:.3f} ms/step "
            f"(median of {timing.get('steps')}; p10 {_f(timing.get('p10_ms'))}, p90 "
            f"{_f(timing.get('p90_ms'))}), profiler overhead "
            f"{_f(cap.get('profiler_overhead_ratio'), '{:.2f}×')}"))
    wt = Table(title="What-ifs", title_justify="left")
    wt.add_column("scenario")
    wt.add_column("ms/step", justify="right")
    wt.add_column("speed-up", justify="right")
    wt.add_row("CUDA Graphs", _f(w.get("cuda_graphs_ms")), _f(w.get("cuda_graphs_speedup"), "{:.2f}×"))
    wt.add_row("at the memory floor", _f(w.get("at_floor_ms")), _f(w.get("at_floor_speedup"), "{:.2f}×"))
    parts.append(wt)
    if w.get("note"):
        parts.append(f"[dim]what-if: {escape(w['note'])}[/]")
    if d.get("floor", {}).get("missing"):
        parts.append(f"[dim]floor: {escape(d['floor']['missing'])}[/]")

    if d.get("kernels_by_category"):
        kt = Table(title="Kernel categories (per decode step)", title_justify="left")
        for col in ("category", "ms", "share", "ops"):
            kt.add_column(col, justify="left" if col == "category" else "right")
        for k in d["kernels_by_category"][:8]:
            kt.add_row(escape(k["category"]), _f(k["ms_per_step"]), _f(k["share"], "{:.0%}"),
                       _f(k["ops_per_step"], "{:.0f}"))
        parts.append(kt)
    parts.append(Panel(escape(d["verdict"]), title="verdict", expand=False))
    for msg in d.get("warnings") or []:
        parts.append(f"[yellow]warning:[/] {escape(msg)}")
    return Group(*parts)


def render_floor(spec, ctx: int, dtype: str, rows: list[dict], console: Console | None = None) -> None:
    """The analytic floor table (``tracekit floor``)."""
    console = console or Console()
    t = Table(title=f"Memory floor of one decode step: {escape(clean_text(spec.name))}, ctx {ctx}, {escape(dtype)}",
              title_justify="left")
    for col in ("GPU", "peak GB/s", "exact GB", "floor ms (exact)", "all-weights GB",
                "floor ms (W+K)", "max tok/s"):
        t.add_column(col, justify="left" if col == "GPU" else "right")
    for r in rows:
        t.add_row(escape(r["gpu"]), f"{r['peak_gbps']:g}", f"{r['bytes_exact'] / 1e9:.2f}",
                  f"{r['floor_exact_ms']:.2f}", f"{r['bytes_all_weights'] / 1e9:.2f}",
                  f"{r['floor_all_weights_ms']:.2f}", f"{r['max_tokens_per_s']:.0f}")
    console.print(t)
    console.print("[dim]exact: weights read (one embedding row, lm_head in full) + KV read + KV "
                  "written; W+K: the study's all weights + KV. Datasheet peak bandwidth.[/]")
