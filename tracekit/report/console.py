"""The console the terminal reports print to, at a width that suits where the output goes.

On a terminal rich uses the terminal's width. Piped (``tracekit floor | less``, ``> report.txt``)
rich falls back to 80 columns unless ``COLUMNS`` is in the environment, and at 80 the floor and
stall tables wrap every GPU name and cause over several lines. So when stdout is not a terminal:
the ``COLUMNS`` the user set wins; else the width is what the report's widest table needs (at
least 80, at most :data:`PIPED_MAX`), and only prose wraps.

    >>> console = report_console([table])   # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable

from rich.console import Console, Group
from rich.measure import Measurement
from rich.table import Table

#: the widest a piped report gets without COLUMNS (a pager scrolls sideways beyond it)
PIPED_MAX = 160
#: the narrowest: the layout is made for 80 columns and up
PIPED_MIN = 80


def piped_width() -> int | None:
    """The width a report laid out before it is measured may assume: the terminal's or COLUMNS'
    (None: rich knows it), else :data:`PIPED_MAX`."""
    c = Console()
    return None if c.is_terminal or os.environ.get("COLUMNS") else PIPED_MAX


def _tables(renderables: Iterable) -> Iterable[Table]:
    for r in renderables:
        if isinstance(r, Table):
            yield r
        elif isinstance(r, Group):
            yield from _tables(r.renderables)


def report_console(renderables: Iterable, console: Console | None = None) -> Console:
    """``console`` if given; else stdout's console, as wide as the tables need when piped."""
    if console is not None:
        return console
    c = Console()
    if c.is_terminal or os.environ.get("COLUMNS"):
        return c
    probe = Console(width=PIPED_MAX, file=io.StringIO())
    need = max((Measurement.get(probe, probe.options, t).maximum for t in _tables(renderables)),
               default=PIPED_MIN)
    return Console(width=max(PIPED_MIN, min(PIPED_MAX, need)))
