"""tracekit: where does each batch-1 decode step's time go?

The Python API is the command line's, for notebooks and scripts::

    import tracekit

    e = tracekit.explain("trace.json.gz")        # or a Trace; same options as `tracekit explain`
    e.verdict                                     # one sentence
    e.steps, e.gaps, e.kernels, e.categories      # polars DataFrames (e.to_pandas("gaps"))
    e.to_dict()                                   # the JSON contract, tracekit.explain/1
    e.to_markdown(); e.to_html("report.html"); e.figures()

    trace = tracekit.load("trace.json.gz")        # the normalized trace: polars tables, integer ns

``import tracekit`` is cheap: the analysis stack (polars, numpy, plotly) loads on first use.
"""

from __future__ import annotations

import importlib
from pathlib import Path

__version__ = "0.1.0"
__all__ = ["Explanation", "Trace", "__version__", "explain", "load", "sample_path"]

SAMPLE = "sample_qwen2.5-7b_ctx2048_eager.json.gz"


def sample_path() -> Path:
    """The decode trace bundled inside the package (``tracekit explain --sample``)."""
    return Path(__file__).parent / "data" / SAMPLE


_LAZY = {
    "load": ("tracekit.trace", "load"),
    "Trace": ("tracekit.trace", "Trace"),
    "Explanation": ("tracekit.api", "Explanation"),
}


def __getattr__(name: str):
    # ``tracekit.explain`` is the submodule, made callable (see the end of tracekit/explain.py):
    # importing it sets the attribute, so this hook runs only for the first access.
    if name == "explain":
        return importlib.import_module("tracekit.explain")
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'tracekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
