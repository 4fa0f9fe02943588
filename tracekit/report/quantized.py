"""The ``quantization`` section (``explain --baseline``) in the terminal: a table of kernel time by
category against the bf16 step, the linear path's achieved bandwidth, and the verdict. Lays out
what :mod:`tracekit.quantized` computed; computes nothing."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tracekit.report.text import quantization_rows


def render_quantization(q: dict, console: Console | None = None) -> None:
    console = console or Console()
    t = Table(title=f"Quantized step vs baseline ({q['dtype']} vs {q['baseline_dtype']}, "
                    f"{q['basis']} steps)")
    t.add_column("")
    t.add_column(q["baseline_dtype"], justify="right")
    t.add_column(q["dtype"], justify="right")
    t.add_column("change", justify="right")
    rows = quantization_rows(q)
    for i, (label, *cells) in enumerate(rows):  # the kernel categories sit between floor and bandwidth
        t.add_row(f"  {label}" if 2 <= i < len(rows) - 1 else label, *cells)
    console.print(t)
    console.print(f"[bold]Quantization:[/bold] {q['verdict']}")
