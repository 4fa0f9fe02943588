# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---
# %% [markdown]
# # Where does each decode step's time go? — tracekit in a notebook
#
# A notebook-as-script (percent cells: open it in VS Code, Jupyter with jupytext, or run it with
# `python docs/examples/explain_in_a_notebook.py [TRACE]`). It explains one decode trace — by
# default the sample bundled with tracekit (eager Qwen2.5-7B, batch 1, on an H200) — and then asks
# the DataFrames the questions the report answers in prose.

# %%
import sys
from pathlib import Path

import polars as pl

import tracekit

trace_path = Path(sys.argv[1]) if len(sys.argv) > 1 else tracekit.sample_path()
e = tracekit.explain(trace_path)  # same options as `tracekit explain`: model=, ctx=, gpu=, ...
e  # noqa: B018 — in a notebook this cell renders the compact report

# %% [markdown]
# ## The answer in one sentence, and the decomposition behind it

# %%
print(e.verdict)
d = e.to_dict()  # the JSON contract, tracekit.explain/1
dec = d["decomposition"]
print(f"latency {dec['latency_ms']:.3f} ms = floor {dec['floor_ms']:.3f} "
      f"+ kernel excess {dec['kernel_excess_ms']:.3f} + launch overhead {dec['launch_overhead_ms']:.3f}")

# %% [markdown]
# ## Per step: is every step the same?

# %%
steps = e.steps.filter(pl.col("kind") == "decode")
print(steps.select("step", "ctx", "latency_ms", "gpu_busy_ms", "idle_host_bound_ms", "kernels"))

# %% [markdown]
# ## Gaps: which GPU ops did the GPU wait for longest?
# One row per idle gap; `ended_by` is the op the GPU was waiting for.

# %%
longest = (
    e.gaps.filter(pl.col("kind") == "decode")
    .group_by("ended_by", "class")
    .agg(pl.len().alias("gaps"), (pl.col("duration_us").sum() / steps.height / 1e3).alias("ms_per_step"))
    .sort("ms_per_step", descending=True)
)
print(longest.head(5))
print(f"{e.gaps.height} gaps; the 1% longest hold "
      f"{e.gaps['duration_us'].sort(descending=True).head(max(1, e.gaps.height // 100)).sum() / e.gaps['duration_us'].sum():.0%} of the idle time")

# %% [markdown]
# ## Kernels: where the GPU's own time goes

# %%
print(e.categories.select("category", "ms_per_step", "share", "ops_per_step"))
print(e.kernels.head(5).select("name", "category", "ms_per_step", "calls_per_step"))

# %% [markdown]
# ## Reports and figures
# `e.figures()` holds the report's plotly figures (show one with `.show()`);
# `e.to_html(path)` writes the full self-contained report; `e.to_markdown()` is for an issue.

# %%
figs = e.figures()
print(sorted(figs))
out = Path("decode_report.html")
e.to_html(out, plotlyjs="cdn")
print(f"wrote {out} ({out.stat().st_size / 1e3:.0f} kB)")
print(e.to_markdown().splitlines()[0])
