"""Reading a big trace from the command line: a progress bar on a terminal, notes on request.

The bar (rich, on stderr) appears only when stderr is a terminal and the input is big enough to
take a moment (:data:`BAR_FROM_BYTES` on disk, or any pipe); it shows bytes read of the file's
size and disappears when reading ends. ``verbose`` prints what the reader did (streamed in N
slices, or decoded whole and why) as ``tracekit: …`` lines on stderr.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tracekit.trace import load
from tracekit.trace.model import Trace

#: compressed size from which reading takes long enough to show a bar (~1 s here)
BAR_FROM_BYTES = 16 << 20


def load_for_cli(path: str | Path, *, verbose: bool = False) -> Trace:
    """:func:`tracekit.trace.load` with a progress bar on a terminal and ``--verbose`` notes."""
    bar = None
    if sys.stderr is not None and sys.stderr.isatty():
        try:
            size = os.stat(path).st_size if str(path) != "-" else None
        except OSError:
            size = None
        if size is None or size >= BAR_FROM_BYTES:
            bar = _Bar(size, str(path))
    try:
        trace = load(path, progress=bar.update if bar else None)
    finally:
        if bar is not None:
            bar.close()
    if verbose:
        for note in trace.notes:
            print(f"tracekit: {note}", file=sys.stderr)
    return trace


class _Bar:
    def __init__(self, total: int | None, name: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(TextColumn("reading"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeElapsedColumn(),
                                 console=Console(stderr=True), transient=True)
        self.task = self.progress.add_task("read", total=total)
        self.progress.start()

    def update(self, done: int, total: int | None) -> None:
        self.progress.update(self.task, completed=done, total=total)

    def close(self) -> None:
        self.progress.stop()
