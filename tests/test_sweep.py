"""``tracekit sweep``: recipes and their errors, and end to end on the CPU with the tiny model —
rows against the captures' own metadata, resume, the budget, and a sweep killed mid-cell."""

from __future__ import annotations

import gzip
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from helpers import error_line, run, write_capture

from tracekit.errors import BadInput
from tracekit.sweep import cell_id, load_recipe, read_results, row_from_capture

ROOT = Path(__file__).resolve().parents[1]
ISSUE_COLUMNS = ["gpu", "model", "ctx", "mode", "attention", "sessions", "median_ms", "p10_ms",
                 "p90_ms", "ci_low_ms", "ci_high_ms", "floor_ms", "floor_all_weights_ms",
                 "r_floor", "tokens_per_s", "gpu_busy_ms", "launch_overhead_ms", "stall_ms",
                 "profiler_overhead", "versions"]
CPU = """
[sweep]
min_start_s = 5
[defaults]
device = "cpu"
steps = {steps}
warmup = 1
profile_steps = 3
[[matrix]]
model = "tiny"
ctx = {ctx}
"""


def recipe(tmp: Path, text: str, name: str = "r.toml") -> Path:
    p = tmp / name
    p.write_text(text)
    return p


def _meta(path: Path) -> dict:
    with gzip.open(path, "rt") as f:
        return json.load(f)["tracekit"]


# --- recipes -----------------------------------------------------------------------------------
def test_matrix_expands_in_order_and_ids_name_the_cell(tmp_path):
    r = load_recipe(ROOT / "capture" / "paper_matrix.toml")
    grid = [c for c in r.cells if c.options.get("sessions", 1) == 1]
    assert len(grid) == 3 * 4 * 2  # the study's 24 cells per GPU
    assert {(c.options["model"], c.options["ctx"], c.options["mode"]) for c in grid} == {
        (m, x, mode) for m in ("qwen2.5-7b", "llama-3.1-8b", "mistral-7b")
        for x in (2048, 4096, 8192, 16384) for mode in ("eager", "cuda-graphs")}
    assert all(c.options["ctx"] == 2048 for c in r.cells[:9])  # ctx 2048 (and the A/B) first
    ab = [c for c in r.cells if c.options.get("sessions") == 10]
    assert sorted((c.options["mode"], c.options["attention"]) for c in ab) == [
        ("cuda-graphs", "sdpa"), ("eager", "sdpa"), ("eager", "sdpa-flash")]
    assert r.cells[0].id == "qwen2.5-7b_ctx2048_eager_sdpa_s1"
    assert len({c.id for c in r.cells}) == len(r.cells)
    assert cell_id({"model": "tiny", "ctx": 8, "steps": 3}) != cell_id({"model": "tiny", "ctx": 8})


@pytest.mark.parametrize(("text", "needle"), [
    ('[[matrix]]\nmodel = ["qwen2.5-7b", "gpt-9"]\nctx = 2048\n',
     "matrix[0].model: unknown model 'gpt-9'; known: qwen2.5-7b"),
    ('[[matrix]]\nmodel = "tiny"\nctx = [64, -5]\n', "matrix[0].ctx: must be a positive integer, got -5"),
    ('[defaults]\nctx = 64\n[[matrix]]\nmode = "eager"\n', "matrix[0]: missing key 'model'"),
    ('[[matrix]]\nmodel = "tiny"\n', "matrix[0]: missing key 'ctx'"),
    ("[sweep]\nbudget_s = 10\n", "missing key 'matrix'"),
    ('[[matrix]]\nmodel = "tiny"\nctx = 64\nstepz = 3\n', "matrix[0].stepz: unknown key"),
    ('[[matrix]]\nmodel = "tiny"\nctx = 64\nmode = "fast"\n', "matrix[0]: unknown --mode 'fast'"),
    ("[sweep]\nbudget_s = -1\n[[matrix]]\nmodel='tiny'\nctx=8\n", "sweep.budget_s: must be a positive"),
    ("[[matrix]\n", "not valid TOML"),
])
def test_bad_recipes_name_the_file_and_the_key(tmp_path, text, needle):
    p = recipe(tmp_path, text)
    r = run("sweep", p, "--out", tmp_path / "out")
    assert r.exit_code == 1
    line = error_line(r)
    assert line.startswith(f"Error: {p}: ") and needle in line, line
    assert not (tmp_path / "out").exists()


def test_missing_recipe():
    r = run("sweep", "nope.toml")
    assert r.exit_code == 1 and error_line(r) == "Error: nope.toml does not exist"


# --- end to end on the CPU ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    tmp = tmp_path_factory.mktemp("sweep")
    rec = recipe(tmp, CPU.format(steps=4, ctx="[32, 48]"))
    r = run("sweep", rec, "--out", tmp / "out")
    assert r.exit_code == 0, r.output
    return tmp, rec, tmp / "out", r.output


def test_rows_match_each_captures_metadata(swept):
    _, rec, out, _ = swept
    df = pl.read_parquet(out / "results.parquet")
    assert df.columns[: len(ISSUE_COLUMNS)] == ISSUE_COLUMNS
    assert df.height == 2 and sorted(df["ctx"].to_list()) == [32, 48]
    for row in df.iter_rows(named=True):
        meta = _meta(out / row["trace"])
        ms = meta["timing"]["unprofiled_ms"]
        assert row["median_ms"] == pytest.approx(statistics.median(ms), rel=1e-12)
        assert row["p10_ms"] == pytest.approx(meta["timing"]["p10_ms"], abs=1e-6)
        assert row["p90_ms"] == pytest.approx(meta["timing"]["p90_ms"], abs=1e-6)
        assert row["ci_low_ms"] <= row["median_ms"] <= row["ci_high_ms"]
        assert row["tokens_per_s"] == pytest.approx(1e3 / statistics.median(ms), rel=1e-12)
        assert row["session_steps_ms"] == [ms]
        assert (row["gpu"], row["model"], row["mode"], row["attention"], row["sessions"]) == (
            "cpu", "tiny", "eager", "sdpa", 1)
        assert row["floor_ms"] is None  # a CPU has no datasheet DRAM bandwidth
        assert json.loads(row["versions"])["torch"] == meta["versions"]["torch"]
    assert read_results(out).equals(df)


def test_resume_redoes_nothing(swept):
    _, rec, out, _ = swept
    parts = {p.name: p.stat().st_mtime_ns for p in (out / "parts").iterdir()}
    r = run("sweep", rec, "--out", out)
    assert r.exit_code == 0, r.output
    assert "2 cells: 2 done before, 0 to run" in r.output
    assert {p.name: p.stat().st_mtime_ns for p in (out / "parts").iterdir()} == parts
    listing = run("sweep", rec, "--out", out, "--list").output
    assert listing.count("done") == 2


def test_budget_stops_a_cell_and_leaves_the_table_valid(swept, tmp_path):
    _, _, out, _ = swept
    rec = recipe(tmp_path, CPU.format(steps=100000, ctx="64"))
    # beside finished eager cells, a budget shorter than they took does not even start it (the
    # budget comes from the cells' own logged times, so a fast or a loaded machine both hold)
    logged = [json.loads(ln) for ln in (out / "cells.jsonl").read_text().splitlines()]
    took = max(r["seconds"] for r in logged if r.get("mode") == "eager")
    r = run("sweep", rec, "--out", out, "--budget-s", f"{max(0.5, took - 1):.1f}")
    assert r.exit_code == 0 and "not started" in r.output
    assert "1 cells left for lack of budget" in r.output
    # in a fresh folder it starts, cannot finish in the budget, is stopped and leaves no part
    fresh = tmp_path / "fresh"
    r = run("sweep", rec, "--out", fresh, "--budget-s", "8")
    assert r.exit_code == 1
    assert "stopped at the time limit" in r.output
    assert list((fresh / "parts").iterdir()) == []
    assert pl.read_parquet(fresh / "results.parquet").columns == read_results(out).columns
    assert [p.name for p in (fresh / "traces").iterdir() if not p.name.startswith(".")] == []
    assert read_results(out).height == 2


def test_captured_cells_get_their_rows_where_polars_is(swept, tmp_path, monkeypatch):
    import shutil

    import tracekit.sweep as sw

    _, rec, out, _ = swept
    box = tmp_path / "gpu_box"
    shutil.copytree(out / "traces", box / "traces")  # what a GPU box without polars leaves
    monkeypatch.setattr(sw, "missing_row_module", lambda: "polars")
    res = sw.run_sweep(load_recipe(rec), box, say=lambda m: None)
    assert len(res.captured) == 2 and res.results is None and res.failed == {}
    assert list((box / "parts").iterdir()) == []
    assert run("sweep", rec, "--out", box, "--list").output.count("captured") == 2
    monkeypatch.undo()
    r = run("sweep", rec, "--out", box)  # back where polars is: rows from the traces, no capture
    assert r.exit_code == 0, r.output
    assert r.output.count("row written from its capture") == 2 and "running" not in r.output
    cols = ["cell", "median_ms", "p10_ms", "session_steps_ms"]
    assert read_results(box).select(cols).equals(read_results(out).select(cols))


def test_rows_from_captures_made_after_a_failure(swept, tmp_path):
    """As on the H100: a cell failed (its failure is logged), was captured again by a rerun with
    ``--cell`` elsewhere, and its trace copied in; the rows must come from the traces, not a
    traceback over the failure record that carries no seconds."""
    import shutil

    _, rec, out, _ = swept
    box = tmp_path / "merged"
    shutil.copytree(out / "traces", box / "traces")
    first = load_recipe(rec).cells[0].id
    (box / "cells.jsonl").write_text(json.dumps({"cell": first, "failed": "exit 1: boom"}) + "\n"
                                     + "42\n" + '{"cell": "x", "seconds": "soon"}\n')
    r = run("sweep", rec, "--out", box)
    assert r.exit_code == 0, r.output
    assert r.output.count("row written from its capture") == 2 and "running" not in r.output
    assert read_results(box).height == 2


def _processes_with(text: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if text in (d / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
def test_sweep_killed_mid_cell_then_resumed(swept, tmp_path):
    _, _, out, _ = swept
    rec = recipe(tmp_path, CPU.format(steps=4, ctx="[32, 48, 40]"))
    cell = load_recipe(rec).cells[2]
    sweep = subprocess.Popen([sys.executable, "-m", "tracekit.cli", "sweep", str(rec), "--out",
                              str(out), "--quiet"], env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    while not _processes_with(f"--cell\0{cell.id}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_with(f"--cell\0{cell.id}"), "the cell never started"
    time.sleep(1.0)
    sweep.send_signal(signal.SIGKILL)  # the sweep dies mid-cell, no chance to clean up
    sweep.wait()
    deadline = time.monotonic() + 60  # the cell's process gets SIGTERM from the kernel
    while _processes_with(f"--cell\0{cell.id}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_with(f"--cell\0{cell.id}")
    assert read_results(out).height == 2  # the table is valid and the cell unfinished
    assert pl.read_parquet(out / "results.parquet").height == 2
    assert not (out / "parts" / f"{cell.id}.parquet").exists()
    r = run("sweep", rec, "--out", out)
    assert r.exit_code == 0, r.output
    assert "3 cells: 2 done before, 1 to run" in r.output
    assert pl.read_parquet(out / "results.parquet").height == 3


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc (Linux)")
def test_sweep_terminated_mid_cell_says_so_and_keeps_the_table(swept, tmp_path):
    """SIGTERM (a scheduler, a device lease ending) mid-cell: the cell is stopped, the finished
    cells and the table stay, and the sweep says so in one Error line."""
    import shutil

    _, _, out, _ = swept
    rec = recipe(tmp_path, CPU.format(steps=4, ctx="[32, 48]")
                 + '[[matrix]]\nmodel = "tiny"\nctx = 56\nsteps = 100000\n')  # never finishes
    done, cell = load_recipe(rec).cells[:2], load_recipe(rec).cells[2]
    box = tmp_path / "out"
    (box / "parts").mkdir(parents=True)
    for c in done:  # the fixture's finished cells (the same options, so the same ids)
        shutil.copy(out / "parts" / f"{c.id}.parquet", box / "parts")
    sweep = subprocess.Popen([sys.executable, "-m", "tracekit.cli", "sweep", str(rec), "--out",
                              str(box), "--quiet"], env={**os.environ, "PYTHONPATH": str(ROOT)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not _processes_with(f"--cell\0{cell.id}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_with(f"--cell\0{cell.id}"), "the cell never started"
    time.sleep(1.0)
    sweep.send_signal(signal.SIGTERM)
    stdout, stderr = sweep.communicate(timeout=60)
    assert sweep.returncode == 130, stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert lines == ["Error: interrupted; finished cells are kept, run the same command to continue"]
    assert "Traceback" not in stdout + stderr
    assert not _processes_with(f"--cell\0{cell.id}")  # the cell's process was stopped too
    assert not (box / "parts" / f"{cell.id}.parquet").exists()
    assert [p.name for p in (box / "traces").iterdir() if not p.name.startswith(".")] == []
    assert pl.read_parquet(box / "results.parquet").height == 2  # valid, the two finished cells
    listing = run("sweep", rec, "--out", box, "--list").output
    assert listing.count("done") == 2 and "pending" in listing


def test_estimates_scale_per_session(tmp_path):
    from tracekit.sweep import Cell, _estimate

    (tmp_path / "cells.jsonl").write_text(
        '{"cell": "a", "mode": "eager", "sessions": 1, "seconds": 30.0}\n'
        '{"cell": "b", "mode": "cuda-graphs", "sessions": 2, "seconds": 100.0}\n{"cut sho')
    cell = Cell("x", {"model": "tiny", "ctx": 8, "mode": "eager", "sessions": 10}, 60.0)
    assert _estimate(tmp_path, cell) == 300.0  # 30 s per eager session × 10
    cell = Cell("y", {"model": "tiny", "ctx": 8, "mode": "compile", "sessions": 3}, 60.0)
    assert _estimate(tmp_path, cell) == 150.0  # no compile yet: the slowest session × 3
    cell = Cell("z", {"model": "tiny", "ctx": 8, "mode": "cuda-graphs", "sessions": 2}, 60.0)
    assert _estimate(tmp_path, cell) == 100.0


@pytest.mark.slow  # runs a model on the CPU (torch)
def test_a_failed_cell_is_not_retried_unless_asked(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    # a CPU cell that fails at once: a KV cache of 10^12 tokens fits no machine's RAM
    rec = recipe(tmp_path, '[defaults]\ndevice = "cpu"\n[[matrix]]\nmodel = "tiny"\n'
                           "ctx = 1000000000000\n")
    r = run("sweep", rec, "--out", tmp_path / "o")
    assert r.exit_code == 1 and "needs" in r.output and "RAM" in r.output, r.output
    r = run("sweep", rec, "--out", tmp_path / "o")
    assert r.exit_code == 1 and "not retried (--retry-failed" in r.output
    assert "running" not in r.output
    r = run("sweep", rec, "--out", tmp_path / "o", "--retry-failed")
    assert r.exit_code == 1 and "running" in r.output


# --- a machine that cannot capture: one error before any cell runs ----------------------------
GPU_RECIPE = '[defaults]\nsteps = 3\n[[matrix]]\nmodel = "tiny"\nctx = [16, 24]\n'


def _no_cuda_here():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("needs a machine without a CUDA device")


@pytest.mark.slow  # imports torch (~5 s) to find no CUDA device
def test_no_cuda_fails_before_any_cell(tmp_path):
    _no_cuda_here()
    rec = recipe(tmp_path, GPU_RECIPE)
    t0 = time.monotonic()
    r = run("sweep", rec, "--out", tmp_path / "out")
    took = time.monotonic() - t0
    assert r.exit_code == 1
    line = error_line(r)
    assert line.startswith(f"Error: {rec}: no CUDA device found (torch "), line
    assert "2 cells to capture need one" in line and "--list" in line, line
    assert "--rows-only" not in line  # nothing was captured before: nothing to offer
    assert not (tmp_path / "out").exists()  # nothing written, not even the folder
    assert took < 60, f"{took:.0f} s: the check must not start the cells"
    assert run("sweep", rec, "--out", tmp_path / "out", "--list").exit_code == 0


def test_torch_missing_fails_before_any_cell(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else real(name, *a))
    rec = recipe(tmp_path, CPU.format(steps=3, ctx=16))  # even a CPU cell needs torch
    r = run("sweep", rec, "--out", tmp_path / "out")
    assert r.exit_code == 1
    line = error_line(r)
    assert line.startswith(f"Error: {rec}: torch is not installed here"), line
    assert "pip install 'tracekit[capture]'" in line and "--list" in line, line
    assert not (tmp_path / "out").exists()


def test_rows_only_writes_the_captured_cells_where_there_is_no_gpu(swept, tmp_path):
    """The traces of a GPU box copied to a laptop, some cells not captured yet: the plain sweep
    refuses at once and points at --rows-only, which writes the rows it can and captures nothing."""
    import shutil

    _no_cuda_here()
    _, _, out, _ = swept
    rec = recipe(tmp_path, CPU.format(steps=4, ctx="[32, 48]")
                 + '[[matrix]]\nmodel = "tiny"\nctx = 16\ndevice = "cuda"\n')
    box = tmp_path / "copied"
    shutil.copytree(out / "traces", box / "traces")
    r = run("sweep", rec, "--out", box)
    assert r.exit_code == 1
    line = error_line(r)
    assert "1 cell to capture needs one" in line and "--rows-only writes the rows of the 2 cells" in line
    assert not (box / "parts").exists()
    r = run("sweep", rec, "--out", box, "--rows-only")
    assert r.exit_code == 0, r.output
    assert r.output.count("row written from its capture") == 2 and "running" not in r.output
    assert "1 cells not captured yet" in r.output
    cols = ["cell", "median_ms", "session_steps_ms"]
    got = read_results(box).select(cols)
    assert got.height == 2
    assert got.equals(read_results(out).select(cols).filter(pl.col("cell").is_in(got["cell"].to_list())))
    assert not (box / "cells.jsonl").exists()  # nothing was run, so nothing is logged as failed


# --- rows from captures made by hand (analyses/collect.py): their metadata is untrusted ----------
def test_row_from_a_capture_with_metadata_of_another_shape(tmp_path):
    p = write_capture(tmp_path / "c.json.gz", [[10.0, 12.0, 11.0], [13.0, 12.0, 14.0]])
    doc = json.loads(gzip.decompress(p.read_bytes()))
    doc["tracekit"]["gpu"] = "H100"  # a string, not {"name": ...}
    p.write_bytes(gzip.compress(json.dumps(doc).encode()))
    row = row_from_capture(p)
    assert row["median_ms"] == pytest.approx(statistics.mean([11.0, 13.0]))  # mean of medians
    assert row["gpu"] == "unknown" and row["floor_ms"] is None and row["sessions"] == 2


@pytest.mark.parametrize(("key", "value", "needle"), [
    ("ctx", "2048", "key tracekit.ctx must be a positive integer, got '2048'"),
    ("model_name", ["qwen"], "key tracekit.model_name must be a string"),
    ("model_name", "gpt-9", "unknown model 'gpt-9'"),
])
def test_row_from_a_bad_capture_names_the_file_and_the_key(tmp_path, key, value, needle):
    p = write_capture(tmp_path / "c.json.gz", [[10.0, 12.0]])
    doc = json.loads(gzip.decompress(p.read_bytes()))
    doc["tracekit"][key] = value
    p.write_bytes(gzip.compress(json.dumps(doc).encode()))
    with pytest.raises(BadInput) as exc:
        row_from_capture(p)
    assert str(exc.value).startswith(f"{p}: ") and needle in str(exc.value), str(exc.value)


# --- one recipe format -------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "capture").glob("*.toml")))
def test_every_recipe_in_capture_is_a_sweep_recipe(name):
    r = run("sweep", ROOT / "capture" / name, "--list", "--out", "/nonexistent/out")
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert lines and all(ln.split()[1] == "pending" for ln in lines)
    assert len({ln.split()[2] for ln in lines}) == len(lines)  # every cell its own id


def test_old_capture_tables_say_what_they_became(tmp_path):
    rec = recipe(tmp_path, '[[capture]]\nmodel = "tiny"\nctx = 8\n')
    r = run("sweep", rec, "--list")
    assert r.exit_code == 1
    assert error_line(r) == (f"Error: {rec}: [[capture]] tables are [[matrix]] tables now (the "
                             "same keys, one cell each); rename them")
