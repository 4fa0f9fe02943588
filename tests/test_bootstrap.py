"""The bootstrap against known truth: synthetic sessions drawn from distributions whose true
latency ratio is known, and the arithmetic of the point estimates against plain ``statistics``."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from tracekit.bootstrap import expanded_tail, latency_ci, ratio_ci


def _arm(rng, mu: float, sessions: int, steps: int, between: float, within: float):
    """Sessions whose medians are centred on ``mu``: a per-session level (normal across sessions)
    plus symmetric step noise, so the expected session median is exactly ``mu``."""
    return [list(mu * (1 + between * rng.standard_normal())
                 + mu * within * rng.standard_normal(steps)) for _ in range(sessions)]


@pytest.mark.parametrize("sessions", [10, 5])
def test_sessions_interval_covers_the_true_ratio_about_95_percent(sessions):
    rng = np.random.default_rng(2026)
    true = 12.0 / 9.6
    hits = 0
    for rep in range(200):
        a = _arm(rng, 12.0, sessions, 30, between=0.03, within=0.01)
        b = _arm(rng, 9.6, sessions, 30, between=0.01, within=0.004)
        iv = ratio_ci(a, b, seed=rep)
        assert iv.basis == "sessions" and iv.n == sessions
        hits += iv.low <= true <= iv.high
    # binomial sd of a 95 % coverage over 200 trials is 1.5 points; a plain percentile interval
    # covers ~93 % at 10 sessions and ~85 % at 5, which the lower bound rejects for 5
    assert 0.90 <= hits / 200 <= 0.99, hits


def test_steps_interval_covers_the_true_ratio():
    rng = np.random.default_rng(7)
    hits = 0
    for rep in range(200):
        a = [list(rng.lognormal(np.log(20.0), 0.05, 30))]  # median exactly 20
        b = [list(rng.lognormal(np.log(8.0), 0.02, 30))]  # median exactly 8
        iv = ratio_ci(a, b, seed=rep)
        assert iv.basis == "steps"
        hits += iv.low <= 2.5 <= iv.high
    assert 0.90 <= hits / 200 <= 0.995, hits


def test_point_estimates_match_plain_statistics():
    a = [[10.0, 11.0, 12.0], [20.0, 21.0, 19.0, 22.0]]
    b = [[5.0, 5.5, 6.0], [4.0, 4.2, 4.1]]
    iv = ratio_ci(a, b)
    want = statistics.mean([11.0, 20.5]) / statistics.mean([5.5, 4.1])
    assert iv.value == pytest.approx(want, rel=1e-15)
    assert iv.low <= iv.value <= iv.high
    iv = ratio_ci(a, b, basis="steps")
    assert iv.value == pytest.approx(statistics.median(a[0] + a[1]) / statistics.median(b[0] + b[1]))
    one = latency_ci([[3.0, 1.0, 2.0, 10.0]])
    assert (one.value, one.basis, one.n) == (2.5, "steps", 4)


def test_same_seed_same_interval_and_identical_arms_bracket_one():
    rng = np.random.default_rng(1)
    a = _arm(rng, 10.0, 6, 20, 0.02, 0.01)
    assert ratio_ci(a, a, seed=3) == ratio_ci(a, a, seed=3)
    iv = ratio_ci(a, a)
    assert iv.value == 1.0 and iv.low < 1.0 < iv.high


def test_expanded_tail_matches_hesterberg():
    # Φ(−sqrt(n/(n−1)) · t_{0.975, n−1}); for n = 10: t = 2.2622, × 1.0541 = 2.3845 → 0.00855
    assert expanded_tail(10) == pytest.approx(0.00855, abs=2e-5)
    assert expanded_tail(1000) == pytest.approx(0.025, abs=2e-4)  # large n: the plain 2.5 %


def test_degenerate_inputs():
    with pytest.raises(ValueError, match="side B has no step timings"):
        ratio_ci([[1.0]], [])
    with pytest.raises(ValueError, match="at least two sessions"):
        ratio_ci([[1.0, 2.0]], [[1.0], [2.0]], basis="sessions")
    iv = ratio_ci([[4.0]], [[2.0]])
    assert (iv.value, iv.low, iv.high) == (2.0, None, None)
