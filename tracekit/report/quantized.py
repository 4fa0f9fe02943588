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
    for row in quantization_rows(q):
        t.add_row(row[0] if row[0] in ("step ms", "floor ms", "linear path GB/s") else f"  {row[0]}",
                  *row[1:])
    console.print(t)
    console.print(f"[bold]Quantization:[/bold] {q['verdict']}")
