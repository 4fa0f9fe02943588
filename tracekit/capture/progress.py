"""Progress of a capture's phases, on stderr, with rich; silent with ``--quiet``.

Slow phases (building a 7B model, compiling, writing a 50 MB trace) get a spinner. The timed and
profiled windows do **not**: a live display redraws from a background thread, and on a
host-bound eager decode loop that thread competes with the loop for the GIL and shows up in the
very numbers being measured. Those phases print one line before they start instead.

    tracekit capture --model qwen2.5-7b --quiet
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class Progress:
    """No output at all; the base for :class:`RichProgress` and what ``--quiet`` uses."""

    @contextmanager
    def phase(self, text: str, *, live: bool = True) -> Iterator[None]:
        yield

    def note(self, text: str) -> None:
        pass


class RichProgress(Progress):
    """A spinner per slow phase, a ✓ line with its duration when it ends."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)

    @contextmanager
    def phase(self, text: str, *, live: bool = True) -> Iterator[None]:
        t0 = time.perf_counter()
        if live:
            with self.console.status(text + "…"):
                yield
        else:
            self.console.print(f"  {text}…", style="dim")
            yield
        self.console.print(f"[green]✓[/green] {text} [dim]({time.perf_counter() - t0:.1f} s)[/dim]")

    def note(self, text: str) -> None:
        self.console.print(f"  {text}", style="dim")
