"""The vectorized helpers under step membership and host attribution, against plain Python.

``first_row`` replaces a ``unique(keep="first")`` + left join; ``_parents`` replaces a scan
with a stack over a thread's frames. Each is checked on random inputs (ties, nesting, partial
overlaps, empty tables) against the straightforward loop it replaced.
"""

from __future__ import annotations

import numpy as np
import pytest

from tracekit.host import _parents
from tracekit.steps import first_row


def _stack_scan(st: list[int], en: list[int]) -> list[int]:
    parent, stack = [-1] * len(st), []
    for i, s in enumerate(st):
        while stack and en[stack[-1]] <= s:
            stack.pop()
        if stack:
            parent[i] = stack[-1]
        stack.append(i)
    return parent


@pytest.mark.parametrize("seed", range(20))
def test_parents_match_a_stack_scan(seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        n = int(rng.integers(0, 120))
        st = np.sort(rng.integers(0, 200, n))
        en = st + rng.integers(0, int(rng.integers(1, 80)), n)
        order = np.lexsort((-en, st))
        st, en = st[order], en[order]
        assert _parents(st, en).tolist() == _stack_scan(st.tolist(), en.tolist())


@pytest.mark.parametrize("seed", range(10))
def test_first_row_is_the_first_valid_match(seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        n, m = int(rng.integers(0, 40)), int(rng.integers(0, 40))
        keys = rng.integers(0, 15, n)
        valid = rng.random(n) < 0.8
        query = rng.integers(-2, 18, m)
        first: dict[int, int] = {}
        for i, (k, ok) in enumerate(zip(keys.tolist(), valid.tolist())):
            if ok:
                first.setdefault(k, i)
        want = [first.get(q, -1) for q in query.tolist()]
        assert first_row(keys, valid, query).tolist() == want
