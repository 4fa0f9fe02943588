"""Types of the compiled pass, tracekit/trace/_columns.c (an optional C extension)."""

from typing import Any

def scan(events: list[Any], spec: Any, cats: dict[str, Any], api_names: dict[str, Any],
         codes: Any, /) -> tuple[int, dict[str, int], int, int, list[Any]] | None:
    """One slice's events into the columns of tracekit's tables (no_ts, unknown categories,
    no_dur, bad_args, the tables), or None where the Python builder must read it."""
