"""Where a sweep's cells run: this machine (``local``), a Ray cluster (``ray``) or Slurm (``slurm``).

A cell is already an independent job (``tracekit sweep RECIPE --out OUT --cell ID`` captures it
and writes its one Parquet part), so fanning a sweep out is only placing those jobs:

* ``local`` — :func:`tracekit.sweep.run_sweep`: one cell after another on this machine, with the
  device-time budget;
* ``ray`` — each unfinished cell a Ray task, ``num_gpus=1`` for a GPU cell (none for a CPU cell),
  on the GPU type the recipe names (``gpu_type = "H100"``: Ray's accelerator-type resource),
  retried once when its worker or node is lost;
* ``slurm`` — one submitit array job over the unfinished cells (``gpus_per_node=1`` for GPU cells,
  the recipe's ``gpu_type`` as the GRES type, any submitit parameter in the recipe's ``[slurm]``).

Every executor writes the same files (``OUT/traces/CELL.json.gz``, ``OUT/parts/CELL.parquet``), so
a part written by any of them marks its cell done for all of them: a sweep started on Slurm can be
finished on Ray or on one box. ``OUT`` is a folder every worker sees (a shared file system) or an
fsspec URL (``s3://bucket/sweep``, ``gs://…``): a worker then captures into a scratch folder and
uploads the cell's trace, then its part (the part last, so a part always has its trace).

    tracekit sweep capture/paper_matrix.toml --executor ray --out s3://bucket/h100   # Ray cluster
    tracekit sweep capture/paper_matrix.toml --executor slurm --out /shared/sweeps/h100

Ray and submitit are optional (``pip install 'tracekit[cluster]'``); without them the command
says what to install and runs nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from tracekit.errors import BadUsage, CaptureError
from tracekit.sweep import Cell, Recipe, SweepResult

EXECUTORS = ("local", "ray", "slurm")
INSTALL = "pip install 'tracekit[cluster]'"
#: Ray retries a task this many times when its worker process or node dies (not on an error
#: the cell itself raised: a capture that fails fails the same way twice)
RAY_RETRIES = 1


def require(module: str, executor: str):
    """Import ``module`` for ``--executor executor`` or say, in one line, what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise BadUsage(f"--executor {executor} needs {module}, which is not installed here: "
                       f"{INSTALL}") from None


# -- the output folder: a local path or an fsspec URL ---------------------------------------------
def is_url(out: str | Path) -> bool:
    return "://" in str(out)


def _fs(out: str):
    import fsspec

    fs, root = fsspec.core.url_to_fs(out)
    return fs, root.rstrip("/")


def done_cells(out: str | Path) -> set[str]:
    """Ids of the cells whose part exists under ``out`` (a folder or a URL)."""
    if is_url(out):
        fs, root = _fs(str(out))
        try:
            names = fs.ls(f"{root}/parts", detail=False)
        except FileNotFoundError:
            return set()
    else:
        d = Path(out) / "parts"
        names = [str(p) for p in d.glob("*.parquet")] if d.is_dir() else []
    return {Path(n).name.removesuffix(".parquet") for n in names
            if n.endswith(".parquet") and not Path(n).name.startswith(".")}


def write_results_any(out: str | Path):
    """``OUT/results.parquet`` as the union of the parts (folder or URL); returns where."""
    from tracekit.sweep import write_results

    if not is_url(out):
        return write_results(Path(out))
    import polars as pl

    from tracekit.sweep import COLUMNS, row_schema

    fs, root = _fs(str(out))
    parts = sorted(n for n in fs.ls(f"{root}/parts", detail=False) if n.endswith(".parquet"))
    frames = []
    for n in parts:
        with fs.open(n, "rb") as f:
            frames.append(pl.read_parquet(f))
    df = (pl.concat(frames, how="diagonal_relaxed").select(COLUMNS) if frames
          else pl.DataFrame(schema=row_schema()))
    with fs.open(f"{root}/results.parquet", "wb") as f:
        df.write_parquet(f)
    return f"{str(out).rstrip('/')}/results.parquet"


# -- one cell, on a worker -------------------------------------------------------------------------
def run_cell_job(recipe_text: str, recipe_name: str, out: str, cell_id: str,
                 timeout_s: float) -> str:
    """Run one cell where a worker runs it (a Ray task, a Slurm job): the recipe travels as text,
    the cell runs as ``tracekit sweep --cell`` in a child process (as on one box: a fresh CUDA
    context, stopped cleanly at its time limit), and its files land in ``out``. Returns the
    cell id; raises :class:`CaptureError` with the child's last line when the cell fails."""
    from tracekit.sweep import _run_child

    with tempfile.TemporaryDirectory(prefix="tracekit-cell-") as tmp:
        recipe = Path(tmp) / recipe_name
        recipe.write_text(recipe_text)
        local = Path(tmp) / "out" if is_url(out) else Path(out)
        (local / "parts").mkdir(parents=True, exist_ok=True)
        (local / "traces").mkdir(parents=True, exist_ok=True)
        cell = Cell(cell_id, {}, timeout_s)
        rc, tail = _run_child(recipe, local, cell, timeout_s)
        part = local / "parts" / f"{cell_id}.parquet"
        if rc != 0 or not part.is_file():
            why = "stopped at the time limit" if rc is None else f"exit {rc}: {tail}"
            raise CaptureError(f"cell {cell_id} on {os.uname().nodename}: {why}")
        if is_url(out):
            fs, root = _fs(out)
            trace = local / "traces" / f"{cell_id}.json.gz"
            if trace.is_file():
                fs.put_file(str(trace), f"{root}/traces/{trace.name}")
            fs.put_file(str(part), f"{root}/parts/{part.name}")  # last: the part marks it done
    return cell_id


# -- Ray -------------------------------------------------------------------------------------------
def ray_options(cell: Cell) -> dict:
    """The Ray task options of a cell: one GPU (of the recipe's type) for a GPU cell, none for a
    CPU cell; one retry when the worker or its node is lost."""
    opts: dict = {"num_cpus": 1, "num_gpus": 1 if cell.needs_gpu else 0,
                  "max_retries": RAY_RETRIES, "retry_exceptions": False}
    if cell.gpu_type and cell.needs_gpu:
        opts["accelerator_type"] = cell.gpu_type
    return opts


def run_sweep_ray(recipe: Recipe, out: str | Path, *, say: Callable[[str], None] = print,
                  job: Callable = run_cell_job) -> SweepResult:
    """Every unfinished cell as a Ray task; waits for all of them. Connects to the cluster that
    ``ray.init()`` finds (``RAY_ADDRESS``, or the one this machine is part of), else starts one
    here. ``job`` is the task body (tests wrap it to kill a worker)."""
    ray = require("ray", "ray")
    out = str(out)
    done = done_cells(out)
    res = SweepResult([], [c.id for c in recipe.cells if c.id in done], {}, [], None)
    todo = [c for c in recipe.cells if c.id not in done]
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    check_ray_resources(ray.cluster_resources(), todo)
    _prepare(out)
    say(f"{len(recipe.cells)} cells: {len(res.skipped)} done before, {len(todo)} to run on Ray")
    text = recipe.path.read_text()
    task = ray.remote(job)
    refs = {task.options(**ray_options(c)).remote(text, recipe.path.name, out, c.id, c.timeout_s):
            c for c in todo}
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        # a failed capture, or a worker lost twice, raises here
        _settle(res, refs[ready[0]], lambda r=ready[0]: ray.get(r), say)
    res.results = write_results_any(out)
    return res


def _settle(res, cell: Cell, wait, say, note: str = "") -> None:
    """Wait for one cell's job (``wait()`` raises its error) and record it done or failed."""
    try:
        wait()
    except Exception as exc:  # noqa: BLE001 - any error of the job is the cell's failure
        res.failed[cell.id] = _why(exc)
        say(f"{cell.id}: FAILED ({res.failed[cell.id]})")
    else:
        res.done.append(cell.id)
        say(f"{cell.id}: done{note}")


def check_ray_resources(resources: dict, cells: list[Cell]) -> None:
    """Refuse, before submitting anything, cells the cluster could never place (their tasks
    would wait forever): a GPU cell on a cluster without GPUs, a GPU type no node has."""
    gpu = [c for c in cells if c.needs_gpu]
    if gpu and resources.get("GPU", 0) < 1:
        raise CaptureError(f"the Ray cluster has no GPU, and {len(gpu)} of the cells need one "
                           "(device = \"cuda\", the default); connect to a cluster with GPUs "
                           "(RAY_ADDRESS) or run CPU cells (device = \"cpu\")")
    have = sorted(k.removeprefix("accelerator_type:") for k in resources
                  if k.startswith("accelerator_type:"))
    for t in dict.fromkeys(c.gpu_type for c in gpu if c.gpu_type):
        if t not in have:
            raise CaptureError(f"no node of the Ray cluster has accelerator type {t!r} (gpu_type "
                               f"of {sum(c.gpu_type == t for c in gpu)} cells); its nodes have: "
                               f"{', '.join(have) or 'none labelled'}")


def _why(exc: BaseException) -> str:
    """One line for a task's failure: the cell's own error, else what Ray says happened."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, CaptureError):
        return str(cause)
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    named = [ln for ln in lines if "CaptureError" in ln or ln.startswith("Error:")]
    text = named[-1] if named else (lines[0] if lines else type(exc).__name__)
    return f"{type(exc).__name__}: {text}"[:400]


def _prepare(out: str) -> None:
    if is_url(out):
        fs, root = _fs(out)
        fs.makedirs(f"{root}/parts", exist_ok=True)
        fs.makedirs(f"{root}/traces", exist_ok=True)
    else:
        (Path(out) / "parts").mkdir(parents=True, exist_ok=True)
        (Path(out) / "traces").mkdir(parents=True, exist_ok=True)


# -- Slurm (submitit) ------------------------------------------------------------------------------
def slurm_parameters(recipe: Recipe, cells: list[Cell]) -> dict:
    """submitit parameters for the array: a GPU per job when any cell needs one (of the recipe's
    ``gpu_type`` when all cells name the same one), a time limit from the longest cell, and the
    recipe's ``[slurm]`` table on top (``slurm_partition``, ``slurm_account``, ...)."""
    params: dict = {"timeout_min": max(1, int(max(c.timeout_s for c in cells) // 60) + 5),
                    "cpus_per_task": 4 if any(c.needs_gpu for c in cells) else 1,
                    "nodes": 1, "tasks_per_node": 1}
    if any(c.needs_gpu for c in cells):
        types = {c.gpu_type for c in cells if c.needs_gpu}
        only = types.pop() if len(types) == 1 else None
        if only is not None:
            params["slurm_gres"] = f"gpu:{only.lower()}:1"
        else:
            params["gpus_per_node"] = 1
    params.update(recipe.slurm)
    return params


def run_sweep_slurm(recipe: Recipe, out: str | Path, *, say: Callable[[str], None] = print,
                    cluster: str | None = "slurm") -> SweepResult:
    """The unfinished cells as one submitit array job (grouped by GPU type, one array per type),
    waiting for them. ``cluster="local"`` runs the same jobs as local processes (the tests)."""
    submitit = require("submitit", "slurm")
    if cluster == "slurm" and shutil.which("sbatch") is None:
        raise BadUsage("--executor slurm needs Slurm's sbatch on this machine (run it on a login "
                       "node of the cluster)")
    out = str(out)
    _prepare(out)
    done = done_cells(out)
    res = SweepResult([], [c.id for c in recipe.cells if c.id in done], {}, [], None)
    todo = [c for c in recipe.cells if c.id not in done]
    say(f"{len(recipe.cells)} cells: {len(res.skipped)} done before, {len(todo)} to run on "
        f"{'Slurm' if cluster == 'slurm' else cluster}")
    logs = (Path(tempfile.mkdtemp(prefix="tracekit-slurm-")) if is_url(out)
            else Path(out) / "slurm")
    text = recipe.path.read_text()
    jobs = []
    for gpu_type in dict.fromkeys(c.gpu_type for c in todo):
        group = [c for c in todo if c.gpu_type == gpu_type]
        ex = submitit.AutoExecutor(folder=logs, cluster=cluster)
        ex.update_parameters(**_for(ex, slurm_parameters(recipe, group)))
        js = ex.map_array(run_cell_job, [text] * len(group), [recipe.path.name] * len(group),
                          [out] * len(group), [c.id for c in group],
                          [c.timeout_s for c in group])
        jobs += list(zip(group, js))
    for cell, j in jobs:
        # submitit re-raises the job's error (or says it died)
        _settle(res, cell, j.result, say, f" (job {j.job_id})")
    res.results = write_results_any(out)
    return res


def _for(ex, params: dict) -> dict:
    """Parameters the executor knows (the local executor ignores Slurm's own ``slurm_*`` keys)."""
    if getattr(ex, "cluster", "slurm") == "slurm":
        return params
    return {k: v for k, v in params.items() if not k.startswith("slurm_") and k != "gpus_per_node"}


def run_sweep_with(executor: str, recipe: Recipe, out: str | Path, *,
                   say: Callable[[str], None] = print, **kw) -> SweepResult:
    if executor == "ray":
        return run_sweep_ray(recipe, out, say=say)
    if executor == "slurm":
        return run_sweep_slurm(recipe, out, say=say, **kw)
    raise BadUsage(f"unknown --executor {executor!r}; known: {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "done_cells", "ray_options", "run_cell_job", "run_sweep_ray",
           "run_sweep_slurm", "run_sweep_with", "slurm_parameters"]
