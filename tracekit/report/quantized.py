"""The ``quantization`` section (``explain --baseline``) in the terminal: a table of kernel time by
category against the bf16 step, the linear path's achieved bandwidth, and the verdict. Lays out
what :mod:`tracekit.quantized` computed; computes nothing."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def _ms(v) -> str:
    return "—" if v is None else f"{v:.3f}"


def _gb(v) -> str:
    return "—" if v is None else f"{v:.0f}"


def render_quantization(q: dict, console: Console | None = None) -> None:
    console = console or Console()
    t = Table(title=f"Quantized step vs baseline ({q['dtype']} vs {q['baseline_dtype']}, "
                    f"{q['basis']} steps)")
    t.add_column("")
    t.add_column(q["baseline_dtype"], justify="right")
    t.add_column(q["dtype"], justify="right")
    t.add_column("change", justify="right")
    t.add_row("step ms", _ms(q["baseline_step_ms"]), _ms(q["step_ms"]),
              _ms(q["step_ms"] - q["baseline_step_ms"]) if q["step_ms"] and q["baseline_step_ms"]
              else "—")
    t.add_row("floor ms", _ms(q["baseline_floor_ms"]), _ms(q["floor_ms"]),
              _ms(-q["floor_saving_ms"]) if q["floor_saving_ms"] is not None else "—")
    for c in q["categories"]:
        t.add_row(f"  {c['category']} ms", _ms(c["baseline_ms_per_step"]), _ms(c["ms_per_step"]),
                  f"{c['delta_ms']:+.3f}")
    lin, base = q["linear"], q["baseline_linear"]
    t.add_row("linear path GB/s", _gb(base["achieved_gbps"]), _gb(lin["achieved_gbps"]),
              "—" if q["bandwidth_ratio"] is None else f"{q['bandwidth_ratio']:.0%}")
    console.print(t)
    console.print(f"[bold]Quantization:[/bold] {q['verdict']}")
