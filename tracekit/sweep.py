"""``tracekit sweep RECIPE.toml``: a model × context × mode × attention matrix, one row per cell.

A **cell** is one ``tracekit capture`` (``sessions`` fresh processes of it) and is an independent
job: it reads nothing another cell wrote and writes only its own two files,

    OUT/traces/CELL.json.gz     the capture (every session's step timings; the profiled trace)
    OUT/parts/CELL.parquet      its row of the results table (written last, atomically)

so the results table is simply the union of the parts (``OUT/results.parquet`` is that union,
rewritten after each cell). On one box the cells run in sequence, each in its own process
(``tracekit sweep RECIPE --cell ID``, which is also the entry point to fan a sweep out over many
hosts: ``--executor ray|slurm``, :mod:`tracekit.executors`, run ``--cell`` per cell and share
``OUT``).

**Resumable.** A cell whose part exists is done and never redone; a killed sweep leaves the parts
it finished, the table stays valid, and the next run continues with the first unfinished cell. A
cell killed mid-way leaves no part (the capture deletes its temporary files on SIGTERM; a SIGKILL
may leave a hidden ``.CELL.json.gz.*`` temporary, which nothing reads). A finished capture whose
row was not yet written is reused, not re-measured.

**Checked first.** Before any cell runs, the sweep checks that this machine can capture the
cells it would capture (torch and transformers importable; a CUDA device for ``device = "cuda"``,
capture's default; ``nsys`` for Nsight cells) and otherwise stops with one error, writing nothing
(:func:`capture_blocker`). ``device = "cpu"`` cells (the tiny model: the tests) need no GPU;
``--rows-only`` writes the rows of cells captured already and captures nothing.

**A GPU box with only the capture dependencies** (torch, transformers; no polars, scipy or
msgspec) captures the cells and leaves their rows pending; ``tracekit sweep`` run again where those
are installed, on a copy of ``OUT``, writes the rows from the traces without capturing again.
Capture durations go to ``OUT/cells.jsonl`` (plain JSON lines) for the budget's estimates.

**GPU-time budget** (``[sweep] budget_s`` or ``--budget-s``): a cell starts only if its
estimated duration fits in what is left — the longest capture so far of the same mode and
session count, else the longest per-session time so far × its sessions, else ``min_start_s`` —
and is stopped (SIGTERM, then SIGKILL) when the budget runs out.

The recipe::

    [sweep]
    budget_s = 540        # optional: GPU seconds for one run
    min_start_s = 60      # optional: no cell starts with less left than this
    timeout_s = 900       # optional: one cell at most

    [defaults]            # tracekit capture options for every cell
    steps = 30
    warmup = 5

    [[matrix]]            # every key may be a list: the cells are the product; matrices in order
    model = ["qwen2.5-7b", "llama-3.1-8b"]
    ctx = [2048, 4096]
    mode = ["eager", "cuda-graphs"]

    [[matrix]]
    model = "qwen2.5-7b"
    ctx = 2048
    attention = ["sdpa", "sdpa-flash"]
    sessions = 10
    profile_session = "none"

Row columns (one row per cell; ms are per decode step; unknown is null): ``gpu``, ``model``,
``ctx``, ``mode``, ``attention``, ``sessions``, ``median_ms`` (one session: the median of its
unprofiled steps; several: the mean of the session medians, :mod:`tracekit.bootstrap`),
``p10_ms``/``p90_ms`` (over every unprofiled step), ``ci_low_ms``/``ci_high_ms`` (95 % bootstrap
interval of ``median_ms``: over sessions when ≥ 2, else over steps), ``floor_ms`` (exact bytes)
and ``floor_all_weights_ms`` (the study's W + K) at the cell's context over the datasheet peak,
``r_floor`` and ``r_floor_all_weights`` (floor ÷ median_ms), ``tokens_per_s``, ``gpu_busy_ms``
(profiled trace), ``launch_overhead_ms`` (median_ms − gpu_busy_ms: the unprofiled step's launch
overhead), ``stall_ms`` (host stalls per step, when the explanation attributes them),
``profiler_overhead`` (profiled ÷ unprofiled step time), ``versions`` (JSON); and for
traceability ``cell``, ``trace``, ``dtype``, ``steps``, ``session_medians_ms``,
``session_steps_ms`` (every session's raw unprofiled step times), ``attention_kernels``,
``gpu_clocks`` (JSON), ``peak_gbps``, ``copy_bandwidth_gbps``, ``seconds``, ``created``.

    tracekit sweep capture/paper_matrix.toml --out runs/h100 --budget-s 540
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

from tracekit import jsonio
from tracekit.capture.options import CaptureOptions
from tracekit.child import child_env, sigterm_as_interrupt
from tracekit.errors import BadInput, BadUsage, CaptureError
from tracekit.fileio import output_path
from tracekit.trace.capture_meta import read_capture_meta

#: capture options a recipe may set (the rest are internal to capture)
OPTION_KEYS = tuple(f.name for f in fields(CaptureOptions) if f.name not in (
    "output", "command", "under_nsys", "session_index", "profile"))
#: the keys that name a cell (the rest, when not defaults, become a short hash in its id)
ID_KEYS = ("model", "ctx", "mode", "attention", "sessions")
SWEEP_KEYS = ("budget_s", "min_start_s", "timeout_s")
#: keys of a cell that are not capture options: its time limit, and the GPU type a cluster
#: executor places it on (Ray's accelerator type, e.g. "H100", "A100", "L4"; Slurm's GRES type)
CELL_KEYS = ("timeout_s", "gpu_type")
DEFAULT_MIN_START_S = 60.0
DEFAULT_TIMEOUT_S = 1800.0
#: after SIGTERM a cell has this long to unwind before SIGKILL
KILL_GRACE_S = 20.0

COLUMNS = [
    "gpu", "model", "ctx", "mode", "attention", "sessions", "median_ms", "p10_ms", "p90_ms",
    "ci_low_ms", "ci_high_ms", "floor_ms", "floor_all_weights_ms", "r_floor", "tokens_per_s",
    "gpu_busy_ms", "launch_overhead_ms", "stall_ms", "profiler_overhead", "versions",
    # beyond the list: the study's R_floor convention, and what a row needs to be traced
    "r_floor_all_weights", "cell", "trace", "dtype", "steps", "session_medians_ms",
    "session_steps_ms", "attention_kernels", "gpu_clocks", "peak_gbps", "copy_bandwidth_gbps",
    "seconds", "created",
]


# -- the recipe ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One job: the capture options and the cell's id (its file names)."""

    id: str
    options: dict
    timeout_s: float
    gpu_type: str | None = None  # where a cluster executor places it; None: any GPU (or a CPU)

    @property
    def needs_gpu(self) -> bool:
        return self.options.get("device", CaptureOptions().device) == "cuda"


@dataclass(frozen=True)
class Recipe:
    path: Path
    cells: list[Cell]
    budget_s: float | None
    min_start_s: float
    timeout_s: float
    slurm: dict = field(default_factory=dict)  # [slurm]: submitit parameters (slurm_partition, ...)


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a recipe; every problem is one BadInput naming the file and the key."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # the same parser, before it joined the stdlib (a dependency on 3.10 only)
        import tomli as tomllib

    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise BadInput(f"{p} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"{p}: cannot read it ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"{p}: not valid TOML ({exc})") from None
    except RecursionError:
        raise BadInput(f"{p}: not valid TOML (nested deeper than tracekit reads)") from None
    for key in doc:
        if key == "capture":
            raise BadInput(f"{p}: [[capture]] tables are [[matrix]] tables now (the same keys, "
                           "one cell each); rename them")
        if key not in ("sweep", "defaults", "matrix", "slurm"):
            raise BadInput(f"{p}: unknown table [{key}]; a recipe has [sweep], [defaults], "
                           "[[matrix]] and [slurm] tables")
    sweep = _table(doc, "sweep", p)
    for key in sweep:
        if key not in SWEEP_KEYS:
            raise BadInput(f"{p}: sweep.{key}: unknown key; known: {', '.join(SWEEP_KEYS)}")
    budget = _seconds(sweep, "budget_s", p, None)
    min_start = _seconds(sweep, "min_start_s", p, DEFAULT_MIN_START_S)
    timeout = _seconds(sweep, "timeout_s", p, DEFAULT_TIMEOUT_S)
    defaults = _table(doc, "defaults", p)
    _check_keys(defaults, "defaults", p, lists=False)
    matrices = doc.get("matrix")
    if not isinstance(matrices, list) or not matrices:
        raise BadInput(f"{p}: missing key 'matrix': add at least one [[matrix]] table "
                       "(model = [...], ctx = [...], ...)")
    cells: list[Cell] = []
    seen: set[str] = set()
    for i, m in enumerate(matrices):
        where = f"matrix[{i}]"
        _check_keys(m, where, p, lists=True)
        merged = {**defaults, **m}
        for need in ("model", "ctx"):
            if need not in merged:
                raise BadInput(f"{p}: {where}: missing key '{need}' (every cell needs model and ctx; "
                               "set it here or in [defaults])")
        keys = list(merged)
        values = [v if isinstance(v, list) else [v] for v in merged.values()]
        for k, v in zip(keys, values):
            if not v:
                raise BadInput(f"{p}: {where}.{k}: an empty list makes no cells")
        for combo in itertools.product(*values):
            entry = dict(zip(keys, combo))
            cell = _cell(entry, p, where, timeout)
            if cell.id not in seen:
                seen.add(cell.id)
                cells.append(cell)
    return Recipe(p, cells, budget, min_start, timeout, _table(doc, "slurm", p))


def _table(doc: dict, key: str, p: Path) -> dict:
    t = doc.get(key, {})
    if not isinstance(t, dict):
        raise BadInput(f"{p}: {key}: must be a table ([{key}])")
    return t


def _seconds(t: dict, key: str, p: Path, default):
    v = t.get(key, default)
    if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
        raise BadInput(f"{p}: sweep.{key}: must be a positive number of seconds, got {v!r}")
    return None if v is None else float(v)


def _check_keys(t: dict, where: str, p: Path, *, lists: bool) -> None:
    known = OPTION_KEYS + CELL_KEYS
    for k, v in t.items():
        if k not in known:
            raise BadInput(f"{p}: {where}.{k}: unknown key; known: {', '.join(known)}")
        if isinstance(v, list) and not lists:
            raise BadInput(f"{p}: {where}.{k}: lists belong in [[matrix]] tables, not [defaults]")


def _cell(entry: dict, p: Path, where: str, default_timeout: float) -> Cell:
    from tracekit.specs.models import get_model

    entry = dict(entry)
    timeout = entry.pop("timeout_s", default_timeout)
    gpu_type = entry.pop("gpu_type", None)
    if gpu_type is not None and (not isinstance(gpu_type, str) or not gpu_type.strip()):
        raise BadInput(f"{p}: {where}.gpu_type: must be a GPU type such as \"H100\", got {gpu_type!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise BadInput(f"{p}: {where}.timeout_s: must be a positive number, got {timeout!r}")
    ctx = entry["ctx"]
    if isinstance(ctx, bool) or not isinstance(ctx, int) or ctx < 1:
        raise BadInput(f"{p}: {where}.ctx: must be a positive integer, got {ctx!r}")
    if not isinstance(entry["model"], str):
        raise BadInput(f"{p}: {where}.model: must be a model name, got {entry['model']!r}")
    try:
        get_model(entry["model"])
    except BadInput as exc:
        raise BadInput(f"{p}: {where}.model: {exc}") from None
    if entry.get("profile_session") == "none":
        entry["profile_session"] = None
    for k in ("sessions", "steps", "warmup", "profile_steps", "seed"):
        if k in entry and (isinstance(entry[k], bool) or not isinstance(entry[k], int)):
            raise BadInput(f"{p}: {where}.{k}: must be an integer, got {entry[k]!r}")
    try:
        CaptureOptions(**entry).validated()
    except (BadUsage, TypeError, ValueError) as exc:
        raise BadInput(f"{p}: {where}: {exc}") from None
    cid = cell_id(entry) if gpu_type is None else f"{cell_id(entry)}_{_safe(gpu_type)}"
    return Cell(cid, entry, float(timeout), gpu_type)


def cell_id(options: dict) -> str:
    """``qwen2.5-7b_ctx2048_eager_sdpa_s1``, plus a hash of any other option that differs from
    capture's default (so a changed recipe never reuses a cell measured differently)."""
    d = CaptureOptions()
    full = {k: options.get(k, getattr(d, k)) for k in ID_KEYS}
    name = (f"{Path(str(full['model'])).name}_ctx{full['ctx']}_{full['mode']}_{full['attention']}"
            f"_s{full['sessions']}")
    if options.get("quant", d.quant) != d.quant:  # a quantized cell says its scheme by name
        name += f"_{options['quant']}"
    rest = {k: v for k, v in sorted(options.items())
            if k not in ID_KEYS and k != "quant" and v != getattr(d, k, object())}
    if rest:
        name += "-" + hashlib.sha1(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return _safe(name)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name)


# -- layout -------------------------------------------------------------------------------------
def trace_path(out: Path, cell: Cell) -> Path:
    return Path(out) / "traces" / f"{cell.id}.json.gz"


def part_path(out: Path, cell: Cell) -> Path:
    return Path(out) / "parts" / f"{cell.id}.parquet"


def is_done(out: Path, cell: Cell) -> bool:
    return part_path(out, cell).is_file()


def read_results(out: str | Path):
    """The results table: the union of every finished cell's part (a polars DataFrame)."""
    import polars as pl

    parts = sorted((Path(out) / "parts").glob("*.parquet"))
    if not parts:
        return pl.DataFrame(schema=row_schema())
    return pl.concat([pl.read_parquet(f) for f in parts], how="diagonal_relaxed").select(COLUMNS)


def write_results(out: Path) -> Path:
    """Rewrite ``OUT/results.parquet`` (atomically) as the union of the parts."""
    dst = Path(out) / "results.parquet"
    _atomic_parquet(read_results(out), dst)
    return dst


def _atomic_parquet(df, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with output_path(dst) as tmp:
        df.write_parquet(tmp)


# -- one cell -----------------------------------------------------------------------------------
#: what making a results row needs beyond capture (a GPU box may have only torch & co.)
ROW_MODULES = ("polars", "numpy", "scipy", "msgspec")


def missing_row_module() -> str | None:
    """The first module a results row needs that is not installed here, or None."""
    import importlib.util

    return next((m for m in ROW_MODULES if importlib.util.find_spec(m) is None), None)


def run_cell(cell: Cell, out: str | Path, *, progress=None) -> Path | None:
    """Capture one cell (unless its trace already exists) and write its part.

    Returns the part, or None when this machine cannot make rows (``polars`` and co. missing,
    as on a GPU box with only the capture dependencies): the trace is kept, and ``tracekit
    sweep`` run again where they are installed writes the row without capturing again."""
    out = Path(out)
    trace = trace_path(out, cell)
    t0 = time.monotonic()
    if not trace.is_file():
        from tracekit.capture import run_capture

        opts = CaptureOptions(**cell.options, output=trace,
                              command=["tracekit", "sweep", "--cell", cell.id])
        with sigterm_as_interrupt():  # SIGTERM unwinds: session processes stopped, temps removed
            run_capture(opts, progress=progress)
        _log_cell(out, cell, time.monotonic() - t0)
    return write_part(cell, out, seconds=_logged_seconds(out, cell))


def write_part(cell: Cell, out: Path, *, seconds: float | None = None) -> Path | None:
    """The row of a captured cell, written atomically as its part (None: no polars here)."""
    if missing_row_module():
        return None
    import polars as pl

    row = cell_row(cell, trace_path(out, cell), seconds=seconds)
    part = part_path(out, cell)
    _atomic_parquet(pl.DataFrame([row], schema=row_schema()), part)
    return part


def _log_cell(out: Path, cell: Cell, seconds: float) -> None:
    """Append how long the capture took to ``OUT/cells.jsonl`` (stdlib: readable on any box)."""
    d = CaptureOptions()
    rec = {"cell": cell.id, "mode": cell.options.get("mode", d.mode),
           "sessions": cell.options.get("sessions", d.sessions), "seconds": round(seconds, 1)}
    with open(Path(out) / "cells.jsonl", "a") as f:
        f.write(json.dumps(rec) + "\n")


def _log_failure(out: Path, cell: Cell, why: str) -> None:
    with open(Path(out) / "cells.jsonl", "a") as f:
        f.write(json.dumps({"cell": cell.id, "failed": why}) + "\n")


def _failed_before(out: Path) -> dict[str, str]:
    """Cells whose last record is a failure (a later capture clears it)."""
    last: dict[str, dict] = {}
    for r in _logged(out):
        if "cell" in r:
            last[r["cell"]] = r
    return {c: r["failed"] for c, r in last.items() if "failed" in r}


def _logged(out: Path) -> list[dict]:
    try:
        lines = (Path(out) / "cells.jsonl").read_text().splitlines()
    except OSError:
        return []
    out_ = []
    for ln in lines:
        try:
            rec = jsonio.decode(ln)
        except ValueError:
            continue  # a line cut short by a kill
        if isinstance(rec, dict):
            out_.append(rec)
    return out_


def _logged_seconds(out: Path, cell: Cell) -> float | None:
    """How long the cell's last successful capture took (failure records carry no seconds)."""
    secs = [r["seconds"] for r in _logged(out) if r.get("cell") == cell.id
            and isinstance(r.get("seconds"), (int, float)) and not isinstance(r["seconds"], bool)]
    return secs[-1] if secs else None


def row_schema() -> dict:
    import polars as pl

    f, i, s = pl.Float64, pl.Int64, pl.Utf8
    types = {"ctx": i, "sessions": i, "steps": i, "session_medians_ms": pl.List(f),
             "session_steps_ms": pl.List(pl.List(f))}
    text = {"gpu", "model", "mode", "attention", "versions", "cell", "trace", "dtype",
            "attention_kernels", "gpu_clocks", "created"}
    return {c: types.get(c, s if c in text else f) for c in COLUMNS}


def row_from_capture(path: str | Path, *, label: str | None = None) -> dict:
    """The results row of any ``tracekit capture`` file, as if a sweep cell had made it (for
    captures made by hand, e.g. ``sample_traces/``). ``label`` is what the ``trace`` column says."""
    from tracekit.compare import _get

    p = Path(path)
    try:
        meta = read_capture_meta(p) or {}
    except ValueError as exc:  # a TraceFormatError (missing, corrupt) names the file itself
        raise BadInput(f"{p}: cannot read its capture metadata ({exc})") from None
    if not isinstance(meta, dict):
        raise BadInput(f"{p}: not a tracekit capture (tracekit is not an object)")
    missing = [k for k in ("model_name", "ctx", "mode") if k not in meta]
    if missing:
        raise BadInput(f"{p}: not a tracekit capture (no tracekit.{missing[0]})")
    for key, kind, ok in (("model_name", "a string", isinstance(meta["model_name"], str)),
                          ("mode", "a string", isinstance(meta["mode"], str)),
                          ("ctx", "a positive integer", type(meta["ctx"]) is int and meta["ctx"] > 0)):
        if not ok:
            raise BadInput(f"{p}: key tracekit.{key} must be {kind}, got {meta[key]!r}")
    attn = meta.get("attention")
    attn = attn.get("requested") if isinstance(attn, dict) else attn
    n = _get(meta, "sessions", "n")
    opts = {"model": meta["model_name"], "ctx": meta["ctx"], "mode": meta["mode"],
            "attention": attn if isinstance(attn, str) and attn else "sdpa",
            "sessions": n if type(n) is int and n > 0 else 1}
    try:
        row = cell_row(Cell(cell_id(opts), opts, DEFAULT_TIMEOUT_S), p)
    except BadInput as exc:  # e.g. an unknown model: say which file
        msg = str(exc)
        raise BadInput(msg if msg.startswith(str(p)) else f"{p}: {msg}") from None
    row["trace"] = label or str(p)
    return row


def cell_row(cell: Cell, trace: Path, *, seconds: float | None = None) -> dict:
    """The results row of a finished cell, from its capture (and its explanation, if profiled)."""
    import numpy as np

    from tracekit.bootstrap import latency_ci, pooled
    from tracekit.compare import _capture_sessions, _get
    from tracekit.floor import step_floor
    from tracekit.specs.gpus import match_gpu
    from tracekit.specs.models import get_model

    meta = read_capture_meta(trace) or {}
    sessions = _capture_sessions(meta, str(trace))
    if not sessions:
        raise CaptureError(f"{trace}: the capture holds no unprofiled step timings")
    lat = latency_ci(sessions)
    steps = pooled(sessions)
    gpu_name = str(_get(meta, "gpu", "name") or meta.get("device") or "unknown")
    gspec = match_gpu(gpu_name)
    spec = get_model(cell.options["model"])
    from tracekit.specs.quant import capture_floor_dtype

    dtype = capture_floor_dtype(meta) or meta.get("dtype") or "bf16"
    ctx = int(cell.options["ctx"])
    floors = {c: step_floor(spec, ctx, gspec.peak_gbps, dtype=dtype, convention=c).floor_ms
              if gspec else None for c in ("exact", "all-weights")}
    busy, stall = _explained(trace, meta)
    attn = meta.get("attention")
    runs = _get(meta, "sessions", "runs") or [meta]  # dicts: _capture_sessions checked them
    clocks = [{"before": r.get("gpu_clocks_before"), "after": r.get("gpu_clocks_after")}
              for r in runs]
    med = lat.value
    return {
        "gpu": gpu_name, "model": spec.name, "ctx": ctx,
        "mode": cell.options.get("mode", CaptureOptions().mode),
        "attention": cell.options.get("attention", CaptureOptions().attention),
        "sessions": len(sessions), "median_ms": med,
        "p10_ms": float(np.quantile(steps, 0.1)), "p90_ms": float(np.quantile(steps, 0.9)),
        "ci_low_ms": lat.low, "ci_high_ms": lat.high,
        "floor_ms": floors["exact"], "floor_all_weights_ms": floors["all-weights"],
        "r_floor": floors["exact"] / med if floors["exact"] else None,
        "r_floor_all_weights": floors["all-weights"] / med if floors["all-weights"] else None,
        "tokens_per_s": 1e3 / med, "gpu_busy_ms": busy,
        "launch_overhead_ms": med - busy if busy is not None else None, "stall_ms": stall,
        "profiler_overhead": meta.get("profiler_overhead_ratio"),
        "versions": json.dumps(meta.get("versions") or {}, sort_keys=True),
        "cell": cell.id, "trace": str(Path("traces") / trace.name), "dtype": dtype,
        "steps": len(sessions[0]), "session_medians_ms": [float(np.median(s)) for s in sessions],
        "session_steps_ms": [list(map(float, s)) for s in sessions],
        "attention_kernels": json.dumps(attn, sort_keys=True) if attn is not None else None,
        "gpu_clocks": json.dumps(clocks, sort_keys=True),
        "peak_gbps": float(gspec.peak_gbps) if gspec else None,
        "copy_bandwidth_gbps": meta.get("copy_bandwidth_gbps"),
        "seconds": seconds, "created": meta.get("created")
        or datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _explained(trace: Path, meta: dict) -> tuple[float | None, float | None]:
    """GPU busy and host stall ms per step from the profiled trace, or (None, None)."""
    if not meta.get("profiled"):  # --profile-session none: timings only
        return None, None
    from tracekit.explain import explain

    try:
        doc = explain(trace).to_dict()
    except BadInput:
        return None, None
    host = doc["host"]
    return doc["summary"]["gpu_busy_ms"], host["stall_ms"] if host else None


# -- can this machine capture? ------------------------------------------------------------------
#: what capturing needs beyond tracekit itself (``pip install 'tracekit[capture]'``)
CAPTURE_MODULES = ("torch", "transformers")
#: run in a child: the sweep itself never imports torch nor touches the GPU
_CUDA_PROBE = ("import json, torch; print(json.dumps({'cuda': torch.cuda.is_available(), "
               "'torch': torch.__version__, 'build': torch.version.cuda}))")


def capture_blocker(cells: list[Cell]) -> str | None:
    """Why this machine cannot capture ``cells`` (a sentence), or None when it can.

    Checked once, before any cell runs, so that a sweep started where it cannot work (a laptop, a
    CI runner, an environment without torch) stops in seconds with one error instead of starting
    every cell — each a process that imports torch, fails, and is then logged as failed. A cell
    needs torch and transformers; one on ``device = "cuda"`` (capture's default) a CUDA device;
    one with ``profiler = "nsys"`` an Nsight Systems ``nsys``. ``device = "cpu"`` cells (tiny
    models: the tests, ``capture/cpu_smoke.toml``) need no GPU."""
    import importlib.util

    if not cells:
        return None
    missing = next((m for m in CAPTURE_MODULES if importlib.util.find_spec(m) is None), None)
    if missing:
        return (f"{missing} is not installed here and capturing needs torch and transformers "
                f"({_cells(len(cells))} to capture); run the sweep on a GPU box with "
                "pip install 'tracekit[capture]'")
    d = CaptureOptions()
    gpu = [c for c in cells if c.options.get("device", d.device) == "cuda"]
    if gpu:
        why = _no_cuda()
        if why:
            verb = "needs" if len(gpu) == 1 else "need"
            return (f"{why}, and {_cells(len(gpu))} to capture {verb} one (device = \"cuda\", "
                    "the default); run the sweep on a machine with an NVIDIA GPU")
    for c in cells:
        if c.options.get("profiler") == "nsys" or c.options.get("nsys"):
            from tracekit.capture.nsys import find_nsys

            try:
                find_nsys(c.options.get("nsys"))
            except CaptureError as exc:
                return f"cell {c.id}: {exc}"
    return None


def _cells(n: int) -> str:
    return "1 cell" if n == 1 else f"{n} cells"


def _no_cuda() -> str | None:
    """None when torch sees a CUDA device here, else what is wrong (probed in a child process)."""

    try:
        proc = subprocess.run([sys.executable, "-c", _CUDA_PROBE], capture_output=True, text=True,
                              env=child_env(), timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"torch could not be checked here ({exc})"
    try:
        info = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        return f"torch cannot be imported here ({err[-1] if err else f'exit {proc.returncode}'})"
    if info.get("cuda"):
        return None
    build = "a CPU-only build" if info.get("build") is None else f"CUDA {info['build']}"
    return f"no CUDA device found (torch {info.get('torch')}, {build})"


# -- the sweep ----------------------------------------------------------------------------------
@dataclass
class SweepResult:
    done: list[str]  # cells finished (row written) in this run
    skipped: list[str]  # cells already finished before it
    failed: dict[str, str]  # cell -> why
    pending: list[str]  # cells not run (budget)
    results: Path | None
    captured: list[str] = field(default_factory=list)  # captured, row pending (no polars here)
    uncaptured: list[str] = field(default_factory=list)  # not captured (--rows-only)


def run_sweep(recipe: Recipe, out: str | Path, *, budget_s: float | None = None,
              retry_failed: bool = False, rows_only: bool = False,
              say: Callable[[str], None] = print) -> SweepResult:
    """Run every unfinished cell, each in its own process, within the budget.

    Before any cell runs, the machine is checked (:func:`capture_blocker`): where the cells that
    need capturing cannot be captured (no torch, no CUDA device) this raises :class:`CaptureError`
    and writes nothing. ``rows_only`` captures nothing: it writes the rows of cells captured
    already (traces copied from a GPU box) and leaves the others pending.

    A cell whose capture failed (an error, not the time limit) is not tried again by later runs
    — GPU time is scarce and the error is in ``OUT/sweep.log`` — unless ``retry_failed``.

    SIGTERM (a scheduler, a rented machine's time running out) unwinds like Ctrl-C: the running cell is stopped
    and the finished ones stay. If the sweep itself is SIGKILLed, the cell's process is sent
    SIGTERM by the kernel (Linux parent-death signal) and unwinds the same way."""
    with sigterm_as_interrupt():
        return _run_sweep(recipe, Path(out), budget_s, say, retry_failed, rows_only)


def _run_sweep(recipe: Recipe, out: Path, budget_s: float | None, say,
               retry_failed: bool = False, rows_only: bool = False) -> SweepResult:
    budget = budget_s if budget_s is not None else recipe.budget_s
    no_rows = missing_row_module()
    if rows_only and no_rows:
        raise BadUsage(f"--rows-only writes results rows, which need {no_rows}; run it where "
                       "tracekit's analysis dependencies are installed (pip install tracekit)")
    todo = [c for c in recipe.cells if not is_done(out, c)]
    failed_before = {} if retry_failed else _failed_before(out)
    to_capture = [c for c in todo
                  if not trace_path(out, c).is_file() and c.id not in failed_before]
    blocker = None if rows_only else capture_blocker(to_capture)
    if blocker:
        captured = len(todo) - len(to_capture)
        raise CaptureError(
            f"{recipe.path}: {blocker}; `tracekit sweep {recipe.path} --list` shows the cells"
            + (f"; --rows-only writes the rows of the {_cells(captured)} captured already"
               if captured and not no_rows else ""))
    (out / "parts").mkdir(parents=True, exist_ok=True)
    (out / "traces").mkdir(parents=True, exist_ok=True)
    if not no_rows:  # the table is there, and valid, from the start: whatever stops this run
        write_results(out)
    start = time.monotonic()
    res = SweepResult([], [], {}, [], None)
    res.skipped = [c.id for c in recipe.cells if is_done(out, c)]
    say(f"{len(recipe.cells)} cells: {len(res.skipped)} done before, {len(todo)} to run"
        + (f", budget {budget:.0f} s" if budget else "")
        + (" (--rows-only: rows of captured cells only)" if rows_only else ""))
    if no_rows:
        say(f"note: {no_rows} is not installed here: cells are captured, and their rows are "
            "written when this command runs again where it is (the traces are reused)")
    for n, cell in enumerate(todo, 1):
        tag = f"[{n}/{len(todo)}] {cell.id}"
        if cell.id in failed_before and not trace_path(out, cell).is_file():
            res.failed[cell.id] = f"failed before, not retried ({failed_before[cell.id]})"
            say(f"{tag}: failed in an earlier run; not retried (--retry-failed to run it)")
            continue
        if trace_path(out, cell).is_file():  # captured before: only its row is missing
            if no_rows:
                res.captured.append(cell.id)
                say(f"{tag}: captured before; row pending ({no_rows} missing)")
                continue
            write_part(cell, out, seconds=_logged_seconds(out, cell))
            res.done.append(cell.id)
            res.results = write_results(out)
            say(f"{tag}: row written from its capture")
            continue
        if rows_only:
            res.uncaptured.append(cell.id)
            say(f"{tag}: not captured yet (--rows-only)")
            continue
        timeout = cell.timeout_s
        if budget is not None:
            left = budget - (time.monotonic() - start)
            need = max(_estimate(out, cell) or 0.0, recipe.min_start_s)
            if left < need:
                say(f"{tag}: not started ({left:.0f} s of budget left, needs about {need:.0f} s)")
                res.pending.append(cell.id)
                continue
            timeout = min(timeout, left)
        say(f"{tag}: running (limit {timeout:.0f} s)")
        t0 = time.monotonic()
        rc, tail = _run_child(recipe.path, out, cell, timeout)
        secs = time.monotonic() - t0
        if rc == 0 and is_done(out, cell):
            res.done.append(cell.id)
            res.results = write_results(out)  # after every cell: a killed sweep keeps its table
            say(f"{tag}: done in {secs:.0f} s")
        elif rc == 0 and trace_path(out, cell).is_file():
            res.captured.append(cell.id)
            say(f"{tag}: captured in {secs:.0f} s (row pending)")
        else:
            why = "stopped at the time limit" if rc is None else f"exit {rc}: {tail}"
            res.failed[cell.id] = why
            if rc is not None:
                _log_failure(out, cell, why)
            say(f"{tag}: FAILED ({why})")
    if not no_rows:
        res.results = write_results(out)
    return res


def _estimate(out: Path, cell: Cell) -> float | None:
    """Seconds this cell should take: the longest capture so far of the same mode and session
    count; else the longest per-session time of the same mode (then of any mode) × its sessions
    (a session is a fresh process: start, model build, prefill and steps each time)."""
    d = CaptureOptions()
    mode, n = cell.options.get("mode", d.mode), cell.options.get("sessions", d.sessions)
    logged = [r for r in _logged(out) if r.get("seconds") is not None and r.get("sessions")]
    same = [r["seconds"] for r in logged if (r.get("mode"), r["sessions"]) == (mode, n)]
    if same:
        return max(same)
    for pool in ([r for r in logged if r.get("mode") == mode], logged):
        if pool:
            return max(r["seconds"] / r["sessions"] for r in pool) * n
    return None


def _run_child(recipe: Path, out: Path, cell: Cell, timeout: float) -> tuple[int | None, str]:
    """``tracekit sweep RECIPE --out OUT --cell ID`` in its own process group; (exit code or None
    on timeout, last lines of its output). The output goes to ``OUT/sweep.log``."""

    argv = [sys.executable, "-m", "tracekit.cli", "sweep", str(recipe), "--out", str(out),
            "--cell", cell.id, "--quiet"]
    log = out / "sweep.log"
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(argv)}\n")
        f.flush()
        start = f.tell()
        proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=child_env(),
                                start_new_session=True, preexec_fn=_die_with_parent)
        try:
            rc: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(proc)
            rc = None
        except BaseException:  # Ctrl-C or SIGTERM of the sweep: stop the cell, then unwind
            _kill(proc)
            raise
    text = log.read_text(errors="replace")[start:]
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return rc, next((ln for ln in reversed(lines) if ln.startswith("Error:")),
                    lines[-1] if lines else "no output")


def _die_with_parent() -> None:
    """In the cell's process, before exec: SIGTERM when the sweep dies (Linux prctl)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: a killed sweep leaves its cell running to the end


def _kill(proc: subprocess.Popen) -> None:
    """SIGTERM the cell's process group (capture unwinds and removes its temp files), then KILL."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def find_cell(recipe: Recipe, key: str) -> Cell:
    """A cell by id or by 0-based index (a Slurm array task id)."""
    for c in recipe.cells:
        if c.id == key:
            return c
    if key.isascii() and key.isdigit() and len(key) < 10 and int(key) < len(recipe.cells):  # not '²'
        return recipe.cells[int(key)]
    raise BadUsage(f"no cell {key!r} in {recipe.path}; cells: 0-{len(recipe.cells) - 1} or "
                   f"ids such as {recipe.cells[0].id} (tracekit sweep RECIPE --list)")


__all__ = ["COLUMNS", "Cell", "Recipe", "SweepResult", "capture_blocker", "cell_row", "load_recipe",
           "read_results", "row_from_capture", "row_schema", "run_cell", "run_sweep",
           "write_results"]
