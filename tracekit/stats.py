"""Small statistics over plain lists, shared by the stages that summarize per-step numbers.

``median`` skips unknown values (None) and says None when nothing is left, which
``statistics.median`` would refuse; explain.py summarizes steps with it, unprofiled.py the
timed unprofiled steps.

    >>> median([3.0, None, 1.0, 2.0, 4.0])
    2.5
    >>> median([3, 1, 2, 4], low=True)
    2
"""

from __future__ import annotations

from collections.abc import Iterable


def median(xs: Iterable[float | None], *, low: bool = False) -> float | None:
    """The median of the known values, None when there are none; ``low``: the lower middle value
    of an even count (an observed value, so a median count stays an integer)."""
    s = sorted(x for x in xs if x is not None)
    if not s:
        return None
    n = len(s)
    if n % 2 or low:
        return s[(n - 1) // 2]
    return (s[n // 2 - 1] + s[n // 2]) / 2
