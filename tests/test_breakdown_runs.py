"""breakdown measures windows in bounded runs (memory at 1 GB of trace); the runs must not change
a single number: every step row, every gap and one step's timeline equal the one-run result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tracekit import breakdown
from tracekit.steps import detect_steps
from tracekit.trace import load

SAMPLES = Path(__file__).resolve().parents[1] / "sample_traces"


@pytest.mark.parametrize("name", ["h100/qwen2.5-7b_ctx2048_eager.json.gz",
                                  "plain_qwen2.5-7b_ctx2048_graph_replay.json.gz"])
def test_runs_of_windows_give_the_one_run_result(name, monkeypatch):
    trace = load(SAMPLES / name)

    def measure():
        steps = detect_steps(trace)  # fresh: the merged intervals are cached per Steps
        decode = [r["step"] for r in breakdown.step_records(trace, steps) if r["kind"] == "decode"]
        return (breakdown.step_records(trace, steps), breakdown.gap_columns(trace, steps),
                breakdown.step_gaps(trace, steps, decode[len(decode) // 2]))

    one = measure()
    monkeypatch.setattr(breakdown, "_PAIRS_PER_RUN", 7)  # hundreds of runs on these traces
    runs = measure()
    assert runs[0] == one[0]
    assert one[1].keys() == runs[1].keys()
    for k in one[1]:
        assert np.array_equal(one[1][k], runs[1][k]), k
    assert runs[2] == one[2]
    assert one[1]["step"].size > 100  # the gaps are many: the runs cut through them


def test_gap_tuples_of_many_windows_keep_their_window_index(monkeypatch):
    """Gaps as tuples over many windows, measured in runs: each tuple's window index counts from
    the first window of all, not of its run, exactly as in one run."""
    trace = load(SAMPLES / "h100/qwen2.5-7b_ctx2048_eager.json.gz")

    def measure():
        steps = detect_steps(trace)
        _, t0, nxt, _, timed = breakdown._windows_of(steps)
        return breakdown._windows(steps).measure(t0[timed], nxt[timed],
                                                 breakdown._sync_intervals(trace), with_gaps=True)

    one = measure()
    monkeypatch.setattr(breakdown, "_PAIRS_PER_RUN", 7)
    runs = measure()
    assert len({g[3] for g in one["gaps"]}) > 5  # gaps in several windows, so in several runs
    assert runs["gaps"] == one["gaps"]
    assert all(np.array_equal(x, y) for x, y in zip(runs["gap_arrays"], one["gap_arrays"]))
