"""tracekit/stats.py: the median explain.py and unprofiled.py share, against the standard library."""

from __future__ import annotations

import statistics

from hypothesis import given
from hypothesis import strategies as st

from tracekit.stats import median

_VALUES = st.lists(st.one_of(st.none(), st.integers(-10**6, 10**6),
                             st.floats(-1e6, 1e6, allow_nan=False)), max_size=30)


@given(_VALUES)
def test_median_skips_unknown_values_like_statistics_median(xs) -> None:
    known = [x for x in xs if x is not None]
    expected = statistics.median(known) if known else None
    assert median(xs) == expected


@given(_VALUES)
def test_low_median_is_an_observed_value_like_statistics_median_low(xs) -> None:
    known = [x for x in xs if x is not None]
    got = median(xs, low=True)
    assert got == (statistics.median_low(known) if known else None)
    assert got is None or got in known


def test_median_of_nothing_known_is_none() -> None:
    assert median([]) is None
    assert median([None, None]) is None
