"""What one capture wrote, as :func:`tracekit.capture.run_capture` returns it.

Its own module because every way of capturing makes one: in this process
(:mod:`tracekit.capture.run`), under Nsight Systems (:mod:`tracekit.capture.nsys`) and as N
child sessions (:mod:`tracekit.capture.sessions`); ``run`` calls the other two.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class CaptureResult:
    """What a capture wrote: the trace, its metadata, and any side files (Nsight reports)."""

    path: Path | None  # None for a session that only timed (see CaptureOptions.profile)
    meta: dict
    bytes: int
    files: dict[str, Path] = field(default_factory=dict)
