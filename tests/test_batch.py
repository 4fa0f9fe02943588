"""``tracekit batch``: many traces into traces.parquet and steps.parquet — files, folders and
globs; a bad trace a row with the CLI's own Error line; resume after a kill (a half-written line
included); parallel workers giving the same rows as one process; the polars example analysis."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from helpers import error_line, run

from tracekit.batch import run_batch

ROOT = Path(__file__).resolve().parents[1]
S = ROOT / "sample_traces"
SMALL = [S / "qwen2.5-7b_ctx2048_compile.json.gz", S / "qwen2.5-7b_ctx2048_cuda-graphs.json.gz",
         S / "h100" / "qwen2.5-7b_ctx2048_compile.json.gz"]


@pytest.fixture()
def corpus(tmp_path):
    d = tmp_path / "traces"
    (d / "sub").mkdir(parents=True)
    shutil.copy(SMALL[0], d / "a.json.gz")
    shutil.copy(SMALL[1], d / "sub" / "b.json.gz")
    shutil.copy(SMALL[2], d / "c.json.gz")
    (d / "sub" / "broken.json").write_text('{"traceEvents": [')  # cut short
    (d / "notes.txt").write_text("not a trace: a folder input skips it")
    return d


def oracle_steps(path: Path) -> int:
    """tracekit.step#N ranges in the file, by a plain json.load."""
    with gzip.open(path, "rt") as f:
        ev = json.load(f)["traceEvents"]
    return len({e["name"] for e in ev if e.get("ph") == "X"
                and str(e.get("name", "")).startswith("tracekit.step#")
                and e.get("cat") == "user_annotation"})


def test_a_folder_gives_one_row_per_trace_and_a_failed_trace_is_a_row(corpus, tmp_path):
    out = tmp_path / "out"
    r = run("batch", corpus, "--out", out, "--jobs", "1")
    assert r.exit_code == 0, r.output
    t = pl.read_parquet(out / "traces.parquet")
    assert t.height == 4 and sorted(Path(p).name for p in t["trace"]) == [
        "a.json.gz", "b.json.gz", "broken.json", "c.json.gz"]
    bad = t.filter(pl.col("status") == "error")
    assert bad.height == 1 and bad["latency_ms"][0] is None
    assert bad["error"][0] == error_line(run("explain", corpus / "sub" / "broken.json"))
    steps = pl.read_parquet(out / "steps.parquet")
    for row in t.filter(pl.col("status") == "ok").iter_rows(named=True):
        mine = steps.filter(pl.col("trace") == row["trace"])
        assert mine.height == oracle_steps(Path(row["trace"])) == row["steps"]
        assert row["verdict"] and row["model"] == "qwen2.5-7b"
        dec = mine.filter(pl.col("kind") == "decode", pl.col("latency_ms").is_not_null())
        assert row["latency_ms"] == pytest.approx(dec["latency_ms"].median())
        assert row["bytes"] == Path(row["trace"]).stat().st_size


def test_globs_and_files_and_a_missing_input(corpus, tmp_path):
    out = tmp_path / "out"
    r = run("batch", str(corpus / "**" / "*.json.gz"), corpus / "c.json.gz", "--out", out, "-j", "1")
    assert r.exit_code == 0, r.output
    assert pl.read_parquet(out / "traces.parquet").height == 3  # c given twice: one row
    r = run("batch", tmp_path / "nope", "--out", tmp_path / "o2")
    assert r.exit_code == 1
    assert error_line(r) == f"Error: {tmp_path / 'nope'} does not exist (give trace files, folders or globs)"
    assert not (tmp_path / "o2").exists()


def test_resume_skips_done_traces_and_survives_a_half_written_line(corpus, tmp_path):
    out = tmp_path / "out"
    run_batch([corpus / "a.json.gz", corpus / "c.json.gz"], out, jobs=1, say=lambda _m: None)
    part = next((out / "parts").glob("traces-*.jsonl"))
    lines = part.read_text().splitlines(keepends=True)
    part.write_text(lines[0] + lines[1][:40])  # killed while writing c's row
    said: list[str] = []
    res = run_batch([corpus], out, jobs=1, say=said.append)
    assert said[0] == "4 traces: 1 done before, 3 to explain"
    assert (res["ok"], res["error"], res["done_before"]) == (2, 1, 1)
    t = pl.read_parquet(out / "traces.parquet")
    assert t.height == 4 and t["trace"].n_unique() == 4
    steps = pl.read_parquet(out / "steps.parquet")
    # c's steps were written before the kill and again now: the table keeps one copy
    c = str((corpus / "c.json.gz").resolve())
    assert steps.filter(pl.col("trace") == c).height == oracle_steps(corpus / "c.json.gz")
    said.clear()
    run_batch([corpus], out, jobs=1, say=said.append)
    assert said[0] == "4 traces: 4 done before, 0 to explain"


def test_a_changed_trace_is_explained_again_and_its_new_row_wins(corpus, tmp_path):
    out = tmp_path / "out"
    run_batch([corpus / "a.json.gz"], out, jobs=1, say=lambda _m: None)
    shutil.copy(SMALL[1], corpus / "a.json.gz")  # the same name, another trace
    run_batch([corpus / "a.json.gz"], out, jobs=1, say=lambda _m: None)
    t = pl.read_parquet(out / "traces.parquet")
    assert t.height == 1 and t["graph_launches"][0] > 0  # the cuda-graphs trace's row
    steps = pl.read_parquet(out / "steps.parquet")
    assert steps.height == oracle_steps(SMALL[1])


def test_workers_give_the_same_rows_as_one_process(corpus, tmp_path):
    run_batch([corpus], tmp_path / "one", jobs=1, say=lambda _m: None)
    run_batch([corpus], tmp_path / "two", jobs=2, say=lambda _m: None)
    drop = ["seconds"]
    for name in ("traces", "steps"):
        a = pl.read_parquet(tmp_path / "one" / f"{name}.parquet").drop(drop, strict=False)
        b = pl.read_parquet(tmp_path / "two" / f"{name}.parquet").drop(drop, strict=False)
        key = ["trace", "step"] if name == "steps" else ["trace"]
        assert a.sort(key).equals(b.sort(key))


def test_the_example_analysis_reads_the_tables_lazily(corpus, tmp_path):
    out = tmp_path / "out"
    run_batch([corpus], out, jobs=1, say=lambda _m: None)
    md = tmp_path / "t.md"
    r = subprocess.run([sys.executable, str(ROOT / "analyses" / "batch_overview.py"), str(out),
                        "--md", str(md)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = md.read_text().splitlines()[2:]
    t = pl.read_parquet(out / "traces.parquet").filter(pl.col("status") == "ok")
    assert sum(int(r.split("|")[4]) for r in rows) == t.height == 3
    assert "Error: FILE" in r.stdout  # the failed trace, counted apart


def test_a_worker_that_dies_leaves_its_trace_as_an_error_row(corpus, tmp_path, monkeypatch):
    import tracekit.batch as batch

    # a "worker" that takes its first trace and dies, as one killed by the OOM killer would
    monkeypatch.setattr(batch, "WORKER_COMMAND", [
        sys.executable, "-c", "import sys; sys.stdin.readline(); sys.exit(3)"])
    paths = [corpus / "a.json.gz", corpus / "c.json.gz"]
    rows = {Path(r["trace"]).name: r for r, _ in batch._parallel(paths, 2)}
    assert rows["a.json.gz"]["status"] == "error"  # the worker gets the first trace
    assert rows["a.json.gz"]["error"] == (f"Error: {corpus / 'a.json.gz'}: the worker process "
                                          "analysing it died (exit 3)")
    assert rows["c.json.gz"]["status"] == "ok"  # this process analysed the other one


def test_a_name_with_a_newline_reaches_its_worker_whole(tmp_path):
    odd = tmp_path / "two\nlines.json.gz"
    shutil.copy(SMALL[0], odd)
    res = run_batch([odd, SMALL[1]], tmp_path / "out", jobs=2, say=lambda _m: None)
    assert (res["ok"], res["error"]) == (2, 0)
