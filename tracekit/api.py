"""The notebook API: ``Explanation``, what ``tracekit.explain(...)`` returns.

It holds the JSON contract's sections (``to_dict()``, ``tracekit.explain/1``), serves them as polars
DataFrames (tracekit/frames.py) and renders the reports (tracekit/report/). tracekit/explain.py
builds it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from tracekit import __version__
from tracekit.contract import (
    CategoryRow,
    Context,
    Decomposition,
    ExplainDoc,
    FloorSection,
    Gpu,
    Host,
    Model,
    Source,
    StepRow,
    Summary,
    TopKernel,
    Unprofiled,
    WhatIf,
)
from tracekit.errors import BadInput
from tracekit.jsonio import json_safe

if TYPE_CHECKING:
    import polars as pl

    from tracekit.host import HostAttribution
    from tracekit.steps import Steps
    from tracekit.trace import Trace

SCHEMA = "tracekit.explain/1"


@dataclass(repr=False)
class Explanation:
    """Everything ``tracekit explain`` says about one trace.

    ``to_dict()`` is the JSON contract (``tracekit.explain/1``); the attributes below hold its
    sections as dicts and lists typed by tracekit/contract.py. For a notebook: ``steps``, ``gaps``, ``kernels`` and
    ``categories`` are polars DataFrames (``to_pandas(name)`` for pandas), ``to_markdown()`` and
    ``to_html()`` render the reports, ``figures()`` returns the report's plotly figures, and a
    notebook cell showing an Explanation renders the compact report.

        >>> import tracekit
        >>> e = tracekit.explain(tracekit.sample_path())          # doctest: +SKIP
        >>> e.steps.select("step", "latency_ms", "gpu_busy_ms")  # doctest: +SKIP
    """

    source: Source
    model: Model
    gpu: Gpu
    #: the contract's ``steps`` (one dict per step); the ``steps`` attribute is its DataFrame
    step_rows: list[StepRow] = field(metadata={"json": "steps"})
    summary: Summary
    floor: FloorSection
    decomposition: Decomposition
    whatif: WhatIf
    kernels_by_category: list[CategoryRow]
    top_kernels: list[TopKernel]
    verdict: str
    warnings: list[str]
    #: host attribution (tracekit/host.py): launch issue vs stalls, by op; None without CPU ops
    host: Host | None = None
    #: the unprofiled step (tracekit/unprofiled.py); None when its latency is unknown
    unprofiled: Unprofiled | None = None
    #: the one context story: prompt length and the KV length over the profiled steps
    context: Context = field(default_factory=lambda: Context(
        prompt_tokens=None, first_step=None, last_step=None, floor_ctx=None, source=None))
    #: with ``baseline=`` (a bf16 trace): how much of the quantized step's byte saving it
    #: realises (tracekit/quantized.py); an additive key, absent from the document without one
    quantization: dict[str, Any] | None = field(default=None, metadata={"omit_if_none": True})
    # for renderers and DataFrames, not serialized: computed on first use
    _timeline: Callable[[], dict] | None = field(default=None, repr=False)
    _trace: Trace | None = field(default=None, repr=False)
    _steps: Steps | None = field(default=None, repr=False)
    _host: HostAttribution | None = field(default=None, repr=False)

    @functools.cached_property
    def timeline(self) -> dict:
        """One representative decode step's ops and classified gaps (see breakdown.step_gaps)."""
        return self._timeline() if self._timeline else {}

    @property
    def trace(self) -> Trace | None:
        """The normalized trace this explanation was computed from."""
        return self._trace

    def to_dict(self) -> ExplainDoc:
        """The JSON contract: one versioned document, unknown values null, counts integers."""
        d: dict[str, Any] = {"schema": SCHEMA, "tracekit_version": __version__}
        for f in fields(self):
            if f.name.startswith("_") or (f.metadata.get("omit_if_none")
                                          and getattr(self, f.name) is None):
                continue
            d[f.metadata.get("json", f.name)] = json_safe(getattr(self, f.name))
        # the fields above are the contract's sections, each typed; this loop only names them
        # (``steps``) and drops a None ``quantization``, which a TypedDict cannot follow
        return cast(ExplainDoc, d)

    # -- DataFrames (tracekit/frames.py) --------------------------------------------------------
    @property
    def steps(self) -> pl.DataFrame:
        """One row per detected step: latency, GPU busy, idle by class, counts, floor."""
        from tracekit.frames import steps_frame

        return steps_frame(self.step_rows)

    @functools.cached_property
    def gaps(self) -> pl.DataFrame:
        """One row per GPU idle gap: step, start, duration, class, the op that ended it, host op."""
        import polars as pl

        from tracekit.frames import GAPS_SCHEMA, gaps_frame

        if self._trace is None or self._steps is None or not self._trace.has_gpu:
            return pl.DataFrame(schema=GAPS_SCHEMA)
        host_ops = self._host.gap_ops() if self._host is not None else None
        return gaps_frame(self._trace, self._steps, host_ops)

    @functools.cached_property
    def kernels(self) -> pl.DataFrame:
        """Every kernel name over the decode steps: category, ms and calls per step, median µs."""
        from tracekit.frames import kernels_frame

        if self._steps is None:
            import polars as pl

            return pl.DataFrame(self.top_kernels)
        return kernels_frame(self._steps)

    @property
    def categories(self) -> pl.DataFrame:
        """Kernel categories per decode step (the contract's ``kernels_by_category``)."""
        from tracekit.frames import categories_frame

        return categories_frame(self.kernels_by_category)

    def to_pandas(self, name: str | None = None):
        """``steps``, ``gaps``, ``kernels`` or ``categories`` as a pandas DataFrame; all four in a
        dict when ``name`` is None. Needs pandas (not pyarrow)."""
        from tracekit.frames import FRAMES, to_pandas

        if name is None:
            return {n: to_pandas(getattr(self, n)) for n in FRAMES}
        if name not in FRAMES:
            raise BadInput(f"unknown table {name!r}; known: {', '.join(FRAMES)}")
        return to_pandas(getattr(self, name))

    # -- reports --------------------------------------------------------------------------------
    def to_markdown(self, path: str | Path | None = None) -> str | Path:
        """The Markdown summary (``tracekit explain --markdown``), to paste into an issue; with
        ``path``, written there (atomically, replacing a file) and the path returned."""
        from tracekit.report.markdown import render_markdown

        text = render_markdown(self.to_dict())
        if path is None:
            return text
        from tracekit.fileio import atomic_write_text

        return atomic_write_text(path, text)

    def to_html(self, path: str | Path | None = None, *, plotlyjs: str = "inline") -> str | Path:
        """The self-contained HTML report (``tracekit explain --html``) as a string; with
        ``path``, written there (atomically, replacing a file) and the path returned instead of
        the page (a few MB a notebook cell would echo). ``plotlyjs="cdn"`` makes a small file that
        needs the network."""
        from tracekit.report.html import render_html

        page = render_html(self.to_dict(), self.timeline, plotlyjs=plotlyjs)
        if path is None:
            return page
        from tracekit.fileio import atomic_write_text

        return atomic_write_text(path, page)

    def figures(self) -> dict:
        """The HTML report's plotly figures by name: ``waterfall``, ``steps``, ``timeline``
        (absent when there is nothing to draw)."""
        from tracekit.report.html import figures

        return figures(self.to_dict(), self.timeline)

    def _repr_html_(self) -> str:
        from tracekit.report.html import render_compact

        return render_compact(self.to_dict())

    def __repr__(self) -> str:
        what = " on ".join(str(x) for x in (self.model.get("name"), self.gpu.get("name")) if x)
        lat = self.summary.get("latency_ms")
        return (f"<Explanation {what or self.source.get('file')}: "
                f"{self.source.get('decode_steps')} decode steps"
                f"{f', {lat:.3f} ms/step' if lat is not None else ''} — {self.verdict}>")

