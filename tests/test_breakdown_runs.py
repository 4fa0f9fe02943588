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


def test_every_step_counts_all_gpu_work_inside_its_window_the_last_included(tmp_path):
    """One definition of GPU busy for every step (issue 22): the union of *all* GPU op intervals
    clipped to the step's window. Step 2 launches a long kernel on another stream that runs on into
    the last step's window: it is busy there too, not idle because it belongs to step 2."""
    from helpers import merge_intervals
    from synth import BASE_US, decode_steps, kernel, launch, write_trace

    events = decode_steps(4, kernels_per_step=3, kernel_us=2)
    events += [launch("cudaLaunchKernel", 220, 2, 900), kernel("long", 250, 61, 900, stream=9)]
    path = write_trace(tmp_path / "t.json.gz", events)
    trace = load(path)
    rows = breakdown.step_records(trace, detect_steps(trace))

    # the oracle, from the events alone: every kernel's [start, end) in µs after BASE_US
    spans = [(float(e["ts"]) - BASE_US, float(e["ts"]) - BASE_US + float(e["dur"]))
             for e in events if e["cat"] == "kernel"]
    own_last = [s for s in spans if 300 <= s[0] < 400]  # the last step's three kernels

    def busy_us(lo: float, hi: float) -> float:
        clipped = [(max(a, lo), min(b, hi)) for a, b in spans if min(b, hi) > max(a, lo)]
        return sum(b - a for a, b in merge_intervals(clipped))

    last_lo, last_hi = min(a for a, _ in own_last), max(b for _, b in own_last)
    assert rows[3]["gpu_busy_ns"] == pytest.approx(busy_us(last_lo, last_hi) * 1000)
    assert rows[3]["gpu_busy_ns"] > sum(b - a for a, b in own_last) * 1000  # the long op counts
    assert rows[2]["gpu_busy_ns"] == pytest.approx(busy_us(204, 304) * 1000)
    # the steps' windows tile the trace: their busy adds up to the trace's busy time
    assert sum(r["gpu_busy_ns"] for r in rows) == pytest.approx(busy_us(4, last_hi) * 1000)
