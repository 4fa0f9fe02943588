"""The JSON contract as types: every section of ``tracekit explain --json`` (``tracekit.explain/1``)
and of ``tracekit compare --json`` (``tracekit.compare/1``), one ``TypedDict`` per object.

The builders (explain.py, host.py, breakdown.py, compare.py) return these types and the renderers
read them, so mypy checks every key either side names. The same types check the documents at
run time: ``msgspec.convert(doc, ExplainDoc)`` rejects a wrong type (a float count, a string
time) and ``tests/test_contract.py`` rejects a key no type declares, over the committed traces,
and checks that the published schema (``docs/schema/``) lists no key, and requires none, that the
types do not. The schema stays the published contract (it carries what types cannot say: minimums,
descriptions); these types are the code's side of it.

Why ``TypedDict`` and not ``msgspec.Struct``: the sections are built as dicts, mutated in place
while explaining (``unprofiled.no_stalls`` adds the no-stalls what-if), serialized by the
order of their keys and read with ``.get`` by renderers that also take a document loaded back
from JSON. A ``TypedDict`` types all of that without changing one byte of the output or one line
of a renderer; a ``Struct`` would need a conversion at every boundary.

Required keys are the ones a builder always writes; keys that appear only for some traces, or
that later code adds, are in a ``total=False`` part. The contract is additive: a new key is one
line in the ``total=False`` part of its section (and a line in the schema).

    >>> import msgspec, tracekit
    >>> doc = tracekit.explain(tracekit.sample_path()).to_dict()     # doctest: +SKIP
    >>> msgspec.convert(doc, ExplainDoc)                               # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

StepKind = Literal["decode", "prefill", "mixed", "partial", "empty", "idle"]
#: the gap classes (breakdown.GapClass), the keys of ``IdleByClass``
GapName = Literal["host_bound", "launch_latency", "sync", "other"]


# -- source ---------------------------------------------------------------------------------
class Timing(TypedDict, total=False):
    """A capture's CUDA-event timing of unprofiled steps (``timing``, ``timing_after``)."""

    steps: int | None
    sessions: int | None
    warmup: int | None
    median_ms: float | None
    p10_ms: float | None
    p90_ms: float | None
    unprofiled_ms: list[float]
    tokens_per_s: float | None


class SessionsTiming(Timing, total=False):
    """``timing_sessions``: the statistics over fresh sessions' medians."""

    mean_ms: float | None
    session_medians_ms: list[float]


class Capture(TypedDict, total=False):
    """``source.capture``: the capture metadata the explanation carries (``CAPTURE_KEYS`` in
    explain.py); any key may be missing from an older capture. Nested blocks a capture writes
    as it finds them (the profiled window, the attention backend's ops and kernels, nvidia-smi
    clocks) are open maps."""

    mode: str | None
    ctx: int | None
    ctx_first_step: int | None
    timing: Timing | None
    profiled: dict[str, Any] | None
    profiler_overhead_ratio: float | None
    command: list[str] | str | None
    created: str | None
    device: str | None
    dtype: str | None
    attention: dict[str, Any] | str | None
    timing_after: Timing | None
    timing_sessions: SessionsTiming | None
    gpu_clocks_before: dict[str, Any] | None
    gpu_clocks_after: dict[str, Any] | None
    host_cpus: dict[str, Any] | None


class Source(TypedDict):
    file: str | None
    format: Literal["kineto", "nsys"]
    gpu: str | None
    devices: list[dict[str, Any]]
    versions: dict[str, Any]
    detection_method: str
    detection_detail: str
    step_contents: str | None
    steps_found: int
    decode_steps: int
    flagged_steps: dict[str, list[int]]
    events: int | None
    skipped_categories: dict[str, Any] | None
    capture: Capture | None


# -- model, GPU, context ----------------------------------------------------------------------
class _ModelBase(TypedDict):
    name: str | None
    params: int | None
    ctx: int | None
    dtype: str
    bytes_per_step: dict[str, int] | None
    source: str | None


class Model(_ModelBase, total=False):
    """Without a model (``name`` null) there are no ``layers`` / ``kv_bytes_per_token``."""

    layers: int
    kv_bytes_per_token: int


class Gpu(TypedDict):
    name: str | None
    matched: str | None
    arch: str | None
    peak_gbps: float | None
    peak_source: str | None
    measured_gbps: float | None


class Context(TypedDict):
    prompt_tokens: int | None
    first_step: int | None
    last_step: int | None
    floor_ctx: int | None
    source: str | None


# -- steps and summary ------------------------------------------------------------------------
class IdleByClass(TypedDict):
    """Milliseconds per gap class (breakdown.GAP_CLASSES)."""

    host_bound: float | None
    launch_latency: float | None
    sync: float | None
    other: float | None


class StepRow(TypedDict):
    step: int
    name: str
    kind: StepKind
    latency_ms: float | None
    span_ms: float | None
    gpu_busy_ms: float | None
    idle_ms: float | None
    idle_by_class_ms: IdleByClass
    kernels: int
    memcpys: int
    memsets: int
    launches: int
    graph_launches: int
    launch_host_ms: float | None
    cpu_ms: float | None
    ctx: int | None
    floor_ms: float | None
    kernel_excess_ms: float | None
    r_floor: float | None
    batch: int | None
    outside_ops: int | None


class Ranges(TypedDict):
    """[min, max] over the decode steps, or null."""

    latency_ms: list[float] | None
    gpu_busy_ms: list[float] | None
    idle_ms: list[float] | None
    kernels: list[int] | None
    launches: list[int] | None


class Summary(TypedDict):
    """Medians over decode steps (counts: the lower median, an integer)."""

    steps: int
    steps_with_latency: int
    latency_ms: float | None
    span_ms: float | None
    gpu_busy_ms: float | None
    idle_ms: float | None
    kernels: int | None
    memcpys: int | None
    memsets: int | None
    launches: int | None
    graph_launches: int | None
    launch_host_ms: float | None
    cpu_ms: float | None
    floor_ms: float | None
    kernel_excess_ms: float | None
    r_floor: float | None
    idle_by_class_ms: IdleByClass
    range: Ranges
    batch: int
    batch_source: Literal["marker", "assumed"]
    tokens_per_s: float | None
    tokens_per_s_total: float | None
    launch_host_us_per_launch: float | None


# -- floor, decomposition, what-ifs -----------------------------------------------------------
class FloorBytes(TypedDict):
    bytes: int
    floor_ms: float


class FloorSection(TypedDict):
    bytes: int | None
    floor_ms: float | None
    convention: str
    ctx: int | None
    peak_gbps: float | None
    weights_bytes: int | None
    kv_read_bytes: int | None
    kv_write_bytes: int | None
    all_weights: FloorBytes | None
    exact: FloorBytes | None
    measured_gbps: float | None
    measured_floor_ms: float | None
    missing: str | None
    batch: int | None


class Decomposition(TypedDict):
    basis: str
    convention: str
    latency_ms: float | None
    floor_ms: float | None
    kernel_excess_ms: float | None
    launch_overhead_ms: float | None
    launch_overhead_by_class_ms: IdleByClass | None
    r_floor: float | None
    r_floor_all_weights: float | None
    achieved_gbps_latency: float | None
    achieved_gbps_busy: float | None


class GraphProgram(TypedDict):
    """``whatif.graph_program``: the graph trace's program (``--graph-trace``) against this step."""

    kernels_per_step: int
    ops_per_step: int
    gpu_busy_ms: float
    gap_us: float
    step_ms: float
    steps: int
    ops_delta: int
    busy_delta_ms: float
    model_name: str | None
    ctx: int | None
    gpu: str | None


class _WhatIfBase(TypedDict):
    cuda_graphs_ms: float | None
    cuda_graphs_speedup: float | None
    graph_gap_us: float | None
    graph_gap_source: str | None
    at_floor_ms: float | None
    at_floor_speedup: float | None
    note: str | None
    cuda_graphs_model: str
    at_floor_model: str
    cuda_graphs_program: Literal["these kernels replayed", "the graph trace's program"]
    cuda_graphs_interval_ms: list[float] | None
    at_floor_interval_ms: list[float] | None


class WhatIf(_WhatIfBase, total=False):
    """whatif.py writes the base and the interval details; ``unprofiled.no_stalls`` adds the
    no-stalls what-if. Additive keys (an ``X_interval_ms`` [low, high] beside each ``X_ms``) go
    here."""

    cuda_graphs_interval_basis: str | None
    cuda_graphs_same_kernels_ms: float | None
    cuda_graphs_same_kernels_interval_ms: list[float] | None
    graph_program: GraphProgram | None
    at_floor_interval_basis: str | None
    no_stalls_ms: float | None
    no_stalls_speedup: float | None
    no_stalls_interval_ms: list[float] | None


# -- kernels ----------------------------------------------------------------------------------
class KernelCategory(TypedDict):
    """One kernel category per decode step, from the trace alone (breakdown.py)."""

    category: str
    ms_per_step: float
    share: float | None
    ops_per_step: float
    bytes_per_step: float | None
    trace_gbps: float | None
    ops_with_bytes_per_step: float


class CategoryRow(KernelCategory):
    """``kernels_by_category``: a category with the bytes the model says it moves (explain.py)."""

    model_bytes_per_step: float | None
    achieved_gbps: float | None


class TopKernel(TypedDict):
    name: str
    kind: str  # kernel | memcpy | memset (the schema's enum)
    category: str
    ms_per_step: float
    calls_per_step: float
    median_us: float


# -- host attribution -------------------------------------------------------------------------
class Stall(TypedDict):
    op: str
    stack: list[str]
    ms_per_step: float
    per_step: float
    count: int
    share: float | None
    host_ms_per_step: float | None
    occurrence: int | None
    of_per_step: int | None
    normal_us: float | None
    cause: str | None
    advice: str | None
    short_cause: str | None
    short_advice: str | None
    cause_id: str | None
    sources: list[str]


class HostOp(TypedDict):
    op: str
    ms_per_step: float
    gaps_per_step: float
    stall_ms_per_step: float
    median_gap_us: float
    share: float


class _HostBase(TypedDict):
    basis: str
    launch_issue_ms: float | None
    stall_ms: float
    stall_host_ms: float | None
    us_per_launch: float | None
    issue_interval_median_us: float | None
    stall_threshold_us: float | None
    events_per_step: int | None
    rule: str
    stalls: list[Stall]
    by_op: list[HostOp]


class Host(_HostBase, total=False):
    """Additive keys: ``stall_ms_range``, the stall idle's p25–p75 over the timed decode steps."""

    stall_ms_range: list[float] | None


# -- the unprofiled step (tracekit/unprofiled.py) ---------------------------------------------
class UnprofiledSamples(TypedDict):
    basis: str
    before_ms: float | None
    after_ms: float | None
    sessions: int | None
    sessions_median_ms: float | None
    n: int


class _UnprofiledDecompositionBase(TypedDict):
    floor_ms: float | None
    kernel_excess_ms: float | None
    launch_overhead_ms: float
    launch_issue_ms: float | None
    stall_ms: float | None
    other_idle_ms: float


class UnprofiledDecomposition(_UnprofiledDecompositionBase, total=False):
    """Additive keys: the stall and the issue it leaves at either end of the profiler cost's
    interval (with a per-event cost only)."""

    stall_interval_ms: list[float]
    launch_issue_interval_ms: list[float]


class _UnprofiledWhatIfBase(TypedDict):
    cuda_graphs_ms: float | None
    cuda_graphs_speedup: float | None
    no_stalls_ms: float | None
    no_stalls_speedup: float | None


class UnprofiledWhatIf(_UnprofiledWhatIfBase, total=False):
    """Additive keys: an ``X_interval_ms`` [low, high] beside each ``X_ms``."""

    cuda_graphs_interval_ms: list[float] | None
    no_stalls_interval_ms: list[float] | None


class UnprofiledHost(TypedDict):
    launch_issue_ms: float | None
    stall_ms: float | None
    host_issue_ms: float | None
    cost_us_per_event: float | None


class _UnprofiledBase(TypedDict):
    latency_ms: float
    source: Literal["capture", "flag"]
    profiler_overhead: float | None
    profiled_latency_ms: float | None
    samples: UnprofiledSamples | None
    decomposition: UnprofiledDecomposition | None
    whatif: UnprofiledWhatIf
    model: str | None
    calibration: str | None
    estimate: bool
    reliable: bool
    host: UnprofiledHost | None


class Unprofiled(_UnprofiledBase, total=False):
    """Additive keys: what the latency is (``basis``) and what to expect over fresh sessions,
    where the profiler's per-event cost comes from (``calibration_source``) and its value."""

    basis: str
    expected_ms: float
    expected_basis: str
    sessions_range_ms: list[float] | None
    calibration_source: Literal["this-capture", "trace-estimate"] | None
    profiler_cost_us: float | None
    profiler_cost_interval_us: list[float] | None
    #: the step measured with flash attention forced, unprofiled, by the capture's calibration in
    #: the profiled process (``ms``) and in each session (``sessions_ms``); null where no
    #: calibration forced it. A measurement beside the "without the stalls" what-if
    stall_free_measured: dict[str, Any] | None


# -- the document -----------------------------------------------------------------------------
class _ExplainBase(TypedDict):
    schema: Literal["tracekit.explain/1"]
    tracekit_version: str
    source: Source
    model: Model
    gpu: Gpu
    steps: list[StepRow]
    summary: Summary
    floor: FloorSection
    decomposition: Decomposition
    whatif: WhatIf
    kernels_by_category: list[CategoryRow]
    top_kernels: list[TopKernel]
    verdict: str
    warnings: list[str]
    host: Host | None
    unprofiled: Unprofiled | None
    context: Context


class ExplainDoc(_ExplainBase, total=False):
    """``tracekit explain --json``. ``quantization`` (with ``baseline=``) is the quantized
    step against a bf16 one (tracekit/quantized.py), its own document."""

    quantization: dict[str, Any]


# -- tracekit compare --json ------------------------------------------------------------------
class Term(TypedDict):
    label: str
    group: str
    a: float | None
    b: float | None
    delta: float | None
    ratio: float | None


class Bootstrap(TypedDict):
    method: str
    level: float
    resamples: int
    seed: int
    resampled: str


class SideIdentity(TypedDict):
    """What a side ran: capture metadata first, else its explanation (any JSON a capture
    wrote, so not narrowed further)."""

    model: Any
    gpu: Any
    ctx: Any
    mode: Any
    dtype: Any
    attention: Any


class CompareSide(SideIdentity):
    """One side: its files, identity, step timing and the explanation's sections the report
    shows (null where the side has no explanation)."""

    label: str
    files: list[str]
    sessions: int
    steps: int
    latency_source: str
    latency_ms: float | None
    latency_ci95_ms: list[float] | None
    session_medians_ms: list[float]
    p10_ms: float | None
    p90_ms: float | None
    tokens_per_s: float | None
    verdict: str | None
    summary: Summary | None
    decomposition: Decomposition | None
    floor: FloorSection | None
    unprofiled: Unprofiled | None
    host: Host | None
    explained_file: str | None


class CompareDoc(TypedDict):
    schema: Literal["tracekit.compare/1"]
    tracekit_version: str
    a: CompareSide
    b: CompareSide
    speedup: float | None
    ci95: list[float] | None
    basis: str
    n_a: int
    n_b: int
    latency_source: str
    statistic: str
    bootstrap: Bootstrap
    terms: dict[str, Term]
    warnings: list[str]
    verdict: str
