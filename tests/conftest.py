import functools
import gc
import os
import sys
from pathlib import Path

import pytest

# Bytecode caching on, for this process and the ~150 Python processes the suite starts (CLI runs,
# captures, sweeps, the hostile corpus's children): where PYTHONDONTWRITEBYTECODE is set, as on
# this project's machines, each of them would compile tracekit (and pytest each test module's
# rewritten asserts) from source again
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# Fewer cyclic-garbage collections in the test processes: the oracles json.load whole traces
# (hundreds of thousands of dicts) in workers that already hold polars, hypothesis and cached
# explanations, and at the default thresholds (700, 10, 10) the collector walks that heap again and
# again while they build. Not-slow subset on the 2-core box: 2:13 → 2:01 (three runs each).
# tracekit itself is unaffected (explain of a committed trace: same time at either setting).
gc.set_threshold(100_000, 50, 100)

# tests import their shared helpers (helpers.py, synth.py) by name
sys.path.insert(0, str(Path(__file__).parent))

#: fixtures that run a model on the CPU (torch, transformers; a capture, a sweep of captures, a
#: quantized checkpoint): every test that uses one is ``slow``, so that ``-m "not slow"`` (the
#: edit-test loop over the analysis) never imports torch
MODEL_FIXTURES = {"tiny_trace", "two_sessions_run", "swept", "captures", "small_config"}


def pytest_collection_modifyitems(items):
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def explained():
    """``explained(path)``: ``explain(path)`` of a committed trace with no flags, computed once per
    session and shared by the tests that read it (read only: a test must not change it)."""
    from tracekit.explain import explain

    @functools.cache
    def one(path: str):
        return explain(path)

    return lambda path: one(str(Path(path).resolve()))
