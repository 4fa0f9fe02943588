"""tracekit's exceptions. The CLI turns each into one line, ``Error: <message>``, and an exit code.

Messages name what was wrong and how to fix it: they are the whole user interface of a failure.
"""

from __future__ import annotations


class TracekitError(Exception):
    """Base class; ``exit_code`` is what the CLI returns."""

    exit_code = 1


class BadInput(TracekitError):
    """The input (a trace, a model name, a config file) is unusable."""


class TraceFormatError(BadInput):
    """The file is not a trace tracekit can read (not JSON, truncated, not a profiler trace)."""


class NoStepsError(BadInput):
    """No decode steps could be found in the trace."""


class BadUsage(TracekitError):
    """The command line itself is wrong (conflicting or missing options)."""

    exit_code = 2


class CaptureError(TracekitError):
    """Capture could not run (no GPU, out of memory, missing profiler)."""


class Terminated(BaseException):
    """SIGTERM, raised where the program is (the CLI's handler) so that cleanup runs."""
