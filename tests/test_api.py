"""The Python API a notebook user reaches for: ``tracekit.load``, ``tracekit.explain`` and the
Explanation's DataFrames, reports and figures — checked against json.load oracles and the CLI."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import plotly.graph_objects as go
import polars as pl
import pytest
from click.testing import CliRunner
from synth import decode_steps, write_trace

import tracekit
from tracekit.cli import app
from tracekit.errors import BadInput

ROOT = Path(__file__).resolve().parents[1]
EAGER = ROOT / "sample_traces" / "qwen2.5-7b_ctx2048_eager.json.gz"
EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def sample():
    return tracekit.explain(tracekit.sample_path())


def test_import_tracekit_loads_no_analysis_stack():
    code = ("import sys, tracekit; print(tracekit.__version__); "
            "print(sorted(m for m in ('polars', 'numpy', 'plotly', 'click', 'rich', 'msgspec') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    version, loaded = out.stdout.splitlines()
    assert version == tracekit.__version__ and loaded == "[]"


def test_explain_is_callable_and_still_the_module():
    import tracekit.explain as module  # importing the submodule must not shadow the function

    assert tracekit.explain is module and module.SCHEMA == "tracekit.explain/1"
    assert callable(tracekit.explain)
    assert "step_marker" in str(__import__("inspect").signature(tracekit.explain))
    with pytest.raises(TypeError):
        tracekit.explain(tracekit.sample_path(), no_such_option=1)


def test_api_document_equals_the_cli_json(sample):
    r = CliRunner().invoke(app, ["explain", "--sample", "--json"])
    assert r.exit_code == 0
    assert json.loads(r.output) == json.loads(json.dumps(sample.to_dict()))


def test_explain_takes_a_loaded_trace_and_cli_options(tmp_path):
    path = write_trace(tmp_path / "t.json.gz", decode_steps(5, kernel_us=2))
    trace = tracekit.load(path)
    assert isinstance(trace, tracekit.Trace)
    a = tracekit.explain(trace, model="tiny", ctx=100)
    b = tracekit.explain(path, model="tiny", ctx=100)
    assert a.to_dict()["decomposition"] == b.to_dict()["decomposition"]
    assert a.model["name"] == "tiny" and a.trace is trace
    with pytest.raises(BadInput, match="unknown table"):
        a.to_pandas("nope")


def _oracle_gaps(events: list[dict]) -> list[tuple]:
    """(step, start µs, duration µs, op that ended it) from the raw events: kernels in time order,
    a gap wherever one starts after everything before it ended; the gap belongs to the step of
    the op before it (tail gaps run up to the next step's first op)."""
    steps = sorted((float(e["ts"]), float(e["ts"]) + float(e["dur"]), int(e["name"].split("#")[1]))
                   for e in events if e["cat"] == "user_annotation")
    kernels = sorted((float(e["ts"]), float(e["ts"]) + float(e["dur"]), e["name"])
                     for e in events if e["cat"] == "kernel")

    def step_of(ts):
        return next(s for a, b, s in steps if a <= ts <= b)

    out, end = [], kernels[0][1]
    for (ts0, _, _), (ts, te, name) in zip(kernels, kernels[1:]):
        if ts > end:
            out.append((step_of(ts0), end, ts - end, name))
        end = max(end, te)
    return out


def test_gaps_match_an_independent_computation(tmp_path):
    events = decode_steps(4, kernel_us=2, names=["embed", "gemm", "norm"])
    events = json.loads(write_trace(tmp_path / "g.json", events, gz=False).read_text())["traceEvents"]
    first = min(float(e["ts"]) for e in events if e["cat"] == "kernel")
    e = tracekit.explain(tmp_path / "g.json")
    got = [(r["step"], r["start_ns"], r["duration_us"], r["ended_by"])
           for r in e.gaps.sort("start_ns").iter_rows(named=True)]
    want = _oracle_gaps(events)
    assert len(got) == len(want) == 4 * 3 - 1  # two inside each step, a tail gap between steps
    for (s, start_ns, dur, op), (ws, wstart, wdur, wop) in zip(got, want):
        assert (s, op) == (ws, wop)
        assert dur == pytest.approx(wdur, abs=1e-3)
        assert (start_ns - e.trace.gpu_ops["start_ns"].min()) / 1e3 == pytest.approx(
            wstart - first, abs=1e-3)
    assert e.gaps["class"].unique().to_list() == ["host_bound"]  # host-bound by construction
    assert e.gaps["host_op"].null_count() == e.gaps.height


def test_gaps_add_up_to_the_idle_time_of_a_real_trace(sample):
    """Idle over the timed steps, from json.load: the window from the first kernel of step 0 to
    the first kernel of the last step (each step starts with its embedding lookup), minus the
    union of every GPU op inside it."""
    doc = json.loads(gzip.decompress(tracekit.sample_path().read_bytes()))
    ops = sorted((float(e["ts"]), float(e["ts"]) + float(e["dur"]), e["name"])
                 for e in doc["traceEvents"] if e.get("cat") in ("kernel", "gpu_memset", "gpu_memcpy"))
    starts = [ts for ts, _, n in ops if "indexSelect" in n]
    lo, hi = starts[0], starts[-1]
    busy, cur_a, cur_b = 0.0, None, None
    for a, b, _ in ops:
        a, b = max(a, lo), min(b, hi)
        if b <= a:
            continue
        if cur_b is None or a > cur_b:
            busy += (cur_b - cur_a) if cur_b is not None else 0.0
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    busy += cur_b - cur_a
    idle_us = (hi - lo) - busy
    timed = sample.steps.filter(pl.col("latency_ms").is_not_null())["step"]
    g = sample.gaps.filter(pl.col("step").is_in(timed.implode()))
    assert g["duration_us"].sum() == pytest.approx(idle_us, rel=1e-6)
    assert len(starts) == sample.steps.height


def test_step_and_category_frames(sample):
    doc = sample.to_dict()
    st = sample.steps
    assert st.height == doc["source"]["steps_found"]
    assert st["kernels"].dtype == pl.Int64
    idle = sum(st[f"idle_{c}_ms"] for c in ("host_bound", "launch_latency", "sync", "other"))
    assert (idle - st["idle_ms"]).abs().max() < 1e-9
    assert sample.categories["category"].to_list() == [
        c["category"] for c in doc["kernels_by_category"]]
    k = sample.kernels
    assert k.height > len(doc["top_kernels"])  # every kernel, not only the top ten
    assert k.head(len(doc["top_kernels"]))["name"].to_list() == [
        t["name"] for t in doc["top_kernels"]]
    # calls per step over all kernels = GPU ops per decode step
    assert k["calls_per_step"].sum() == pytest.approx(
        sum(doc["summary"][c] for c in ("kernels", "memcpys", "memsets")))


def test_to_pandas_without_pyarrow(sample):
    pd = pytest.importorskip("pandas")
    frames = sample.to_pandas()
    assert set(frames) == {"steps", "gaps", "kernels", "categories"}
    gaps = frames["gaps"]
    assert isinstance(gaps, pd.DataFrame) and list(gaps.columns) == sample.gaps.columns
    assert len(gaps) == sample.gaps.height
    assert gaps["duration_us"].sum() == pytest.approx(sample.gaps["duration_us"].sum())


def test_reports_equal_the_cli_files(sample, tmp_path):
    out = tmp_path / "api.html"
    assert sample.to_html(out) == out  # the path, not the 5 MB page a notebook would echo
    page = sample.to_html()
    assert out.read_text() == page
    cli_html, cli_md = tmp_path / "cli.html", tmp_path / "cli.md"
    r = CliRunner().invoke(app, ["explain", "--sample", "--html", str(cli_html), "--markdown",
                                 str(cli_md)])
    assert r.exit_code == 0
    assert cli_html.read_text() == page
    assert cli_md.read_text() == sample.to_markdown()


def test_figures_draw_the_numbers(sample):
    figs = sample.figures()
    assert set(figs) == {"waterfall", "steps", "timeline"}
    assert all(isinstance(f, go.Figure) for f in figs.values())
    # the timeline draws every GPU op of its step once
    tl = sample.timeline
    drawn = sum(len(t.x) for t in figs["timeline"].data if not t.name.startswith("idle"))
    assert drawn == len(tl["ops"])
    # the step bars stack to each timed decode step's latency
    bars = figs["steps"].data
    timed = sample.steps.filter(pl.col("latency_ms").is_not_null())
    for i, lat in enumerate(timed["latency_ms"]):
        assert sum(b.y[i] for b in bars) == pytest.approx(lat, rel=1e-9)


def test_notebook_repr_is_the_compact_report_and_escapes(sample):
    page = sample._repr_html_()
    assert "<script" not in page and "plotly" not in page.lower()
    assert sample.verdict.split(":")[0] in page
    lat = sample.to_dict()["decomposition"]["latency_ms"]
    assert f"{lat:.3f}" in page
    import copy

    evil = copy.copy(sample)
    evil.verdict = EVIL
    assert EVIL not in evil._repr_html_() and "&lt;script&gt;" in evil._repr_html_()
    assert repr(sample).startswith("<Explanation qwen2.5-7b on NVIDIA H100 80GB HBM3: 10 decode steps")


def test_the_example_notebook_runs_on_a_committed_trace(tmp_path):
    script = ROOT / "docs" / "examples" / "explain_in_a_notebook.py"
    assert "# %%" in script.read_text()
    p = subprocess.run([sys.executable, str(script), str(EAGER)], capture_output=True, text=True,
                       cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr
    assert tracekit.explain(EAGER).verdict in p.stdout
    assert (tmp_path / "decode_report.html").stat().st_size > 10_000


def test_an_op_running_into_the_next_step_never_makes_busy_negative(tmp_path):
    """Step 0 launches a long op on a second stream that starts after step 1's first op: the step
    window ends at step 1's first op, so step 0's busy time is the union clipped to it."""
    from synth import annotation, kernel, launch

    ev = [annotation("step#0", 0, 99), annotation("step#1", 100, 99), annotation("step#2", 200, 99)]
    ev += [launch("cudaLaunchKernel", 1, 2, 1), kernel("a", 4, 6, 1),
           launch("cudaLaunchKernel", 3, 2, 2), kernel("late", 120, 50, 2, stream=8)]
    for i, t in ((3, 101), (4, 201)):
        ev += [launch("cudaLaunchKernel", t, 2, i), kernel("b", t + 3, 6, i)]
    e = tracekit.explain(write_trace(tmp_path / "o.json.gz", ev))
    s0 = e.steps.row(0, named=True)
    assert s0["latency_ms"] == pytest.approx(0.100)  # 4 µs → 104 µs
    assert s0["gpu_busy_ms"] == pytest.approx(0.006)  # "a" only: "late" starts after 104 µs
    assert e.gaps.filter(pl.col("step") == 0)["duration_us"].sum() == pytest.approx(94.0)
