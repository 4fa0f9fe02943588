"""``tracekit sweep --executor ray|slurm``: the same CPU cells (the tiny model) through a local Ray
cluster started in this process (2 CPUs, no dashboard) and through submitit's local executor,
against the same sweep run by ``--executor local``: the same rows, a worker killed mid-task
retried, a cell lost twice reported and finished by the next run, parts shared across executors."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import polars as pl
import pytest
from helpers import error_line, run

from tracekit.sweep import load_recipe

pytestmark = pytest.mark.slow  # a Ray cluster and five tiny captures: about a minute here

RECIPE = """
[defaults]
device = "cpu"
steps = 3
warmup = 1
profile_steps = 2
[[matrix]]
model = "tiny"
ctx = [32, 48]
"""
#: what a cell's row says whatever process measured it (the timings differ run to run)
SAME = ["gpu", "model", "ctx", "mode", "attention", "sessions", "steps", "dtype", "cell", "trace",
        "floor_ms", "peak_gbps"]


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    pytest.importorskip("torch")
    tmp = tmp_path_factory.mktemp("local")
    rec = tmp / "cpu.toml"
    rec.write_text(RECIPE)
    r = run("sweep", rec, "--out", tmp / "out", "--quiet")
    assert r.exit_code == 0, r.output
    return rec, tmp / "out"


def killing(target: str, marker: Path, kills: int):
    """A task body that SIGKILLs its own Ray worker (a lost node, as Ray sees it) on its first
    ``kills`` attempts at cell ``target``, then runs the cell. Attempts are counted in ``marker``."""
    from tracekit.executors import run_cell_job

    def job(text, name, out, cell_id, timeout_s):
        if cell_id == target:
            n = int(marker.read_text()) if marker.exists() else 0
            marker.write_text(str(n + 1))
            if n < kills:
                os.kill(os.getpid(), signal.SIGKILL)
        return run_cell_job(text, name, out, cell_id, timeout_s)

    return job


def rows(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "results.parquet").sort("ctx")


def test_ray_sweep_survives_a_killed_worker_and_matches_local(ray_cluster, local_sweep, tmp_path):
    from tracekit.executors import run_sweep_ray

    rec_path, local_out = local_sweep
    rec = load_recipe(rec_path)
    target = rec.cells[0].id
    marker = tmp_path / "attempts"
    res = run_sweep_ray(rec, tmp_path / "out", say=lambda _m: None,
                        job=killing(target, marker, kills=1))
    assert res.failed == {} and sorted(res.done) == sorted(c.id for c in rec.cells)
    assert marker.read_text() == "2"  # killed once, retried once
    ray_rows, local_rows = rows(tmp_path / "out"), rows(local_out)
    assert ray_rows.columns == local_rows.columns
    assert ray_rows.select(SAME).equals(local_rows.select(SAME))
    for df in (ray_rows, local_rows):  # measured, and by the capture's own clock
        assert df["median_ms"].is_not_null().all() and (df["median_ms"] > 0).all()
    for p in (tmp_path / "out" / "traces").iterdir():
        assert p.name.endswith(".json.gz") and not p.name.startswith(".")


def test_a_cell_lost_twice_fails_alone_and_the_next_run_finishes_it(ray_cluster, local_sweep,
                                                                   tmp_path):
    from tracekit.executors import run_sweep_ray

    rec = load_recipe(local_sweep[0])
    target = rec.cells[1].id
    out = tmp_path / "out"
    res = run_sweep_ray(rec, out, say=lambda _m: None,
                        job=killing(target, tmp_path / "attempts", kills=2))
    assert res.done == [rec.cells[0].id] and list(res.failed) == [target]
    assert "Worker" in res.failed[target] or "died" in res.failed[target].lower()
    assert not (out / "parts" / f"{target}.parquet").exists()
    assert rows(out).height == 1  # the table holds what finished
    r = run("sweep", local_sweep[0], "--out", out, "--executor", "ray")  # the next run
    assert r.exit_code == 0, r.output
    assert "2 cells: 1 done before, 1 to run on Ray" in r.output
    assert f"{target}: done" in r.output and "2 of 2 cells done (1 now)" in r.output
    assert rows(out).height == 2


def test_cli_ray_resumes_a_local_sweep_and_runs_nothing(ray_cluster, local_sweep):
    rec, out = local_sweep
    before = {p.name: p.stat().st_mtime_ns for p in (out / "parts").iterdir()}
    r = run("sweep", rec, "--out", out, "--executor", "ray")
    assert r.exit_code == 0, r.output
    assert "2 cells: 2 done before, 0 to run on Ray" in r.output
    assert {p.name: p.stat().st_mtime_ns for p in (out / "parts").iterdir()} == before


def test_ray_writes_to_an_fsspec_url(ray_cluster, local_sweep, tmp_path):
    from tracekit.executors import run_sweep_ray

    rec_path, local_out = local_sweep
    rec = load_recipe(rec_path)
    out = tmp_path / "bucket"
    (out / "parts").mkdir(parents=True)  # one cell done before, by the local executor
    first = rec.cells[0].id
    shutil.copy(local_out / "parts" / f"{first}.parquet", out / "parts")
    res = run_sweep_ray(rec, f"file://{out}", say=lambda _m: None)
    assert res.skipped == [first] and res.done == [rec.cells[1].id]
    assert (out / "traces" / f"{rec.cells[1].id}.json.gz").is_file()
    assert rows(out)["cell"].to_list() == [c.id for c in rec.cells]
    listing = run("sweep", rec_path, "--out", f"file://{out}", "--list")
    assert listing.exit_code == 0 and listing.output.count("done") == 2, listing.output


def test_slurm_path_through_submitits_local_executor(local_sweep, tmp_path):
    pytest.importorskip("submitit")
    from tracekit.executors import run_sweep_slurm

    rec_path, local_out = local_sweep
    rec = load_recipe(rec_path)
    out = tmp_path / "out"
    (out / "parts").mkdir(parents=True)
    shutil.copy(local_out / "parts" / f"{rec.cells[1].id}.parquet", out / "parts")
    res = run_sweep_slurm(rec, out, say=lambda _m: None, cluster="local")
    assert res.failed == {} and res.done == [rec.cells[0].id] and res.skipped == [rec.cells[1].id]
    assert rows(out).select(SAME).equals(rows(local_out).select(SAME))
    assert any((out / "slurm").iterdir())  # submitit's job logs


# --- without a cluster ---------------------------------------------------------------------------
@pytest.mark.parametrize("executor,module", [("ray", "ray"), ("slurm", "submitit")])
def test_a_missing_extra_is_one_error_line(executor, module, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, module, None)  # import fails
    rec = tmp_path / "cpu.toml"
    rec.write_text(RECIPE)
    r = run("sweep", rec, "--out", tmp_path / "out", "--executor", executor)
    assert r.exit_code == 2
    assert error_line(r) == (f"Error: --executor {executor} needs {module}, which is not "
                             "installed here: pip install 'tracekit[cluster]'")
    assert not (tmp_path / "out").exists()


def test_gpu_cells_ask_for_one_gpu_of_the_recipes_type(tmp_path):
    from tracekit.executors import ray_options, slurm_parameters

    rec = tmp_path / "gpu.toml"
    rec.write_text('[slurm]\nslurm_partition = "gpu"\n[[matrix]]\nmodel = "qwen2.5-7b"\n'
                   'ctx = 2048\ngpu_type = ["H100", "L4"]\n[[matrix]]\nmodel = "tiny"\nctx = 8\n'
                   'device = "cpu"\n')
    r = load_recipe(rec)
    h100, l4, cpu = r.cells
    assert h100.id != l4.id and h100.id.endswith("_H100")
    assert ray_options(h100)["accelerator_type"] == "H100" and ray_options(h100)["num_gpus"] == 1
    assert ray_options(cpu)["num_gpus"] == 0 and "accelerator_type" not in ray_options(cpu)
    assert ray_options(h100)["max_retries"] == 1
    p = slurm_parameters(r, [l4])
    assert p["slurm_gres"] == "gpu:l4:1" and p["slurm_partition"] == "gpu"
    assert "slurm_gres" not in slurm_parameters(r, [cpu])


def test_batch_on_ray_gives_the_rows_of_a_local_batch(ray_cluster, tmp_path):
    from tracekit.batch import run_batch

    root = Path(__file__).resolve().parents[1] / "sample_traces"
    traces = [root / "qwen2.5-7b_ctx2048_compile.json.gz", root / "h100" / "qwen2.5-7b_ctx2048_compile.json.gz",
              tmp_path / "bad.json"]
    traces[2].write_text("[1, 2")
    run_batch(traces, tmp_path / "local", jobs=1, say=lambda _m: None)
    res = run_batch(traces, tmp_path / "ray", executor="ray", group=2, say=lambda _m: None)
    assert (res["ok"], res["error"]) == (2, 1)
    for name, key in (("traces", ["trace"]), ("steps", ["trace", "step"])):
        a = pl.read_parquet(tmp_path / "local" / f"{name}.parquet").drop("seconds", strict=False)
        b = pl.read_parquet(tmp_path / "ray" / f"{name}.parquet").drop("seconds", strict=False)
        assert a.sort(key).equals(b.sort(key))


def test_gpu_cells_on_a_cluster_without_gpus_are_refused_before_anything_runs(ray_cluster,
                                                                              tmp_path):
    rec = tmp_path / "gpu.toml"
    rec.write_text('[[matrix]]\nmodel = "qwen2.5-7b"\nctx = 2048\n')
    r = run("sweep", rec, "--out", tmp_path / "out", "--executor", "ray")
    assert r.exit_code == 1
    assert error_line(r) == ('Error: the Ray cluster has no GPU, and 1 of the cells need one '
                             '(device = "cuda", the default); connect to a cluster with GPUs '
                             '(RAY_ADDRESS) or run CPU cells (device = "cpu")')
    assert not (tmp_path / "out").exists()


def test_an_accelerator_type_no_node_has_is_named():
    from tracekit.errors import CaptureError
    from tracekit.executors import check_ray_resources
    from tracekit.sweep import Cell

    cells = [Cell("a", {"model": "x", "ctx": 1}, 60.0, "H100")]
    check_ray_resources({"GPU": 8.0, "accelerator_type:H100": 1.0}, cells)  # placeable
    with pytest.raises(CaptureError, match="accelerator type 'H100'.*its nodes have: A100"):
        check_ray_resources({"GPU": 8.0, "accelerator_type:A100": 1.0}, cells)


def test_slurm_without_sbatch_is_one_error_line(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch on it
    rec = tmp_path / "cpu.toml"
    rec.write_text(RECIPE)
    r = run("sweep", rec, "--out", tmp_path / "out", "--executor", "slurm")
    assert r.exit_code == 2
    assert error_line(r) == ("Error: --executor slurm needs Slurm's sbatch on this machine (run "
                             "it on a login node of the cluster)")
    assert not (tmp_path / "out").exists()
