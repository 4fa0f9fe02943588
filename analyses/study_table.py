"""The study's table on our GPUs: ms/step and R_floor per GPU × model × context × mode.

Reads ``analyses/results/study.parquet`` (``analyses/collect.py``) and writes

    analyses/results/study_table.md     the tables, for reading on GitHub
    analyses/results/study_table.html   the same, self-contained, with the figure inline
    analyses/results/study_table.svg    R_floor against datasheet peak bandwidth, one point per GPU

R_floor is the study's: (all weights + KV cache at the cell's context) ÷ datasheet peak bandwidth ÷
the measured step time (``r_floor_all_weights``); the exact-bytes R_floor (one embedding row read,
not the table) is beside it. The study's published numbers (tracekit/specs/study.py) are the
reference rows. Re-running on the same table reproduces the outputs byte for byte.

    python analyses/study_table.py
"""

from __future__ import annotations

import json
import math

import _common as c
import polars as pl

from tracekit.specs import study
from tracekit.specs.gpus import get_gpu

MODE_ORDER = {"eager": 0, "compile": 2, "cuda-graphs": 1}
#: the figure's series: (label, mode, attention, colour, marker)
SERIES = [
    ("ours: eager, default SDPA", "eager", "sdpa", "#d64545", "circle"),
    ("ours: eager, flash SDPA", "eager", "sdpa-flash", "#f0a030", "circle"),
    ("ours: CUDA Graphs", "cuda-graphs", "sdpa", "#1f4e8c", "circle"),
    ("ours: torch.compile", "compile", "sdpa", "#2f855a", "circle"),
]
STUDY_COLOR = "#2d3748"


def cell_rows(df: pl.DataFrame) -> list[list[str]]:
    df = df.with_columns(pl.col("mode").replace_strict(MODE_ORDER, default=9).alias("_m"))
    out = []
    for r in df.sort(["gpu", "model", "ctx", "_m", "attention"]).iter_rows(named=True):
        ci = (f"{r['ci_low_ms']:.2f}–{r['ci_high_ms']:.2f}"
              if r["ci_low_ms"] is not None else "—")
        out.append([c.gpu_label(r["gpu"]), r["model"], str(r["ctx"]), r["mode"], r["attention"],
                    str(r["sessions"]), c.f(r["median_ms"]), ci, c.pct(r["r_floor_all_weights"]),
                    c.pct(r["r_floor"]), c.f(r["floor_all_weights_ms"]), c.f(r["tokens_per_s"], "{:.1f}")])
    return out


CELL_HEADERS = ["GPU", "model", "ctx", "mode", "attention", "sessions", "ms/step",
                "95% CI ms", "R_floor (W+K)", "R_floor (exact)", "floor ms (W+K)", "tokens/s"]
CELL_RIGHT = {2, 5, 6, 7, 8, 9, 10, 11}


def reference_rows(df: pl.DataFrame) -> list[list[str]]:
    """The study's stated R_floor beside ours for the same GPU, model and context."""
    rows = []
    for ref in study.R_FLOOR:
        ours = df.filter((pl.col("model") == ref["model"]) & (pl.col("ctx") == ref["ctx"]))
        ours = ours.filter(pl.col("gpu").map_elements(c.gpu_label, return_dtype=pl.Utf8)
                           == ref["gpu"])
        floor = get_gpu(ref["gpu"])
        text = "; ".join(
            f"{r['mode']}/{r['attention']} {c.pct(r['r_floor_all_weights'])}"
            for r in ours.sort(["mode", "attention"]).iter_rows(named=True)) or "not measured"
        rows.append([ref["gpu"], f"{floor.peak_gbps:g}", ref["model"], str(ref["ctx"]),
                     f"≈{100 * ref['r_floor']:.0f}%", text])
    return rows


REF_HEADERS = ["GPU", "peak GB/s", "model", "ctx", "study R_floor", "ours (R_floor, W+K)"]


def environment(df: pl.DataFrame) -> list[list[str]]:
    rows = []
    for gpu in sorted(set(df["gpu"].to_list())):
        g = df.filter(pl.col("gpu") == gpu)
        versions = sorted({_versions(v) for v in g["versions"].to_list()})
        sm = sorted({x for v in g["gpu_clocks"].to_list() for x in _clocks(v)})
        copy = [x for x in g["copy_bandwidth_gbps"].to_list() if x is not None]
        rows.append([gpu, "; ".join(versions),
                     f"{sm[0]:.0f}–{sm[-1]:.0f} MHz" if sm else "not recorded",
                     f"{sorted(copy)[len(copy) // 2]:.0f}" if copy else "—", str(g.height)])
    return rows


ENV_HEADERS = ["device", "versions", "SM clock before sessions", "copy GB/s (median)", "cells"]


def _versions(v: str | None) -> str:
    d = json.loads(v or "{}")
    return ", ".join(f"{k} {d[k]}" for k in ("torch", "transformers", "cuda", "python") if d.get(k))


def _clocks(v: str | None) -> list[float]:
    out = []
    for s in json.loads(v or "[]"):
        before = (s or {}).get("before") or {}
        if before.get("sm_mhz") is not None:
            out.append(float(before["sm_mhz"]))
    return out


# -- the figure: R_floor against peak bandwidth, one point per GPU per series --------------------
W, H, L, R, T, B = 720, 440, 70, 230, 30, 60


def _x(gbps: float) -> float:
    lo, hi = math.log10(200), math.log10(6000)
    return L + (math.log10(gbps) - lo) / (hi - lo) * (W - L - R)


def _y(r: float) -> float:
    return T + (1 - r) * (H - T - B)


def figure(df: pl.DataFrame, model: str = "qwen2.5-7b", ctx: int = 2048) -> str:
    """Hand-assembled SVG (stable bytes): R_floor (W+K) against datasheet peak DRAM bandwidth."""
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'viewBox="0 0 {W} {H}" font-family="Arial, Helvetica, sans-serif" font-size="12">',
             f'<rect width="{W}" height="{H}" fill="#ffffff"/>',
             f'<text x="{L}" y="18" font-size="14" fill="#2d3748">R_floor (all weights + KV ÷ '
             f'peak bandwidth ÷ step time), {c.esc(model)} at ctx {ctx}</text>']
    for r in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        y = _y(r)
        parts.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#edf1f5"/>')
        parts.append(f'<text x="{L - 8}" y="{y + 4:.1f}" text-anchor="end" fill="#4a5568">'
                     f'{100 * r:.0f}%</text>')
    for g in (300, 1000, 2000, 3350, 4800):
        x = _x(g)
        parts.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{H - B}" stroke="#edf1f5"/>')
        parts.append(f'<text x="{x:.1f}" y="{H - B + 16}" text-anchor="middle" fill="#4a5568">'
                     f'{g}</text>')
    parts.append(f'<text x="{(L + W - R) / 2:.1f}" y="{H - 18}" text-anchor="middle" '
                 'fill="#2d3748">datasheet peak DRAM bandwidth, GB/s (log scale)</text>')
    parts.append(f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="#a0aec0"/>')
    parts.append(f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="#a0aec0"/>')
    legend = []
    for ref in study.R_FLOOR:
        if ref["model"] == model and ref["ctx"] == ctx:
            x, y = _x(get_gpu(ref["gpu"]).peak_gbps), _y(ref["r_floor"])
            parts.append(f'<rect x="{x - 5:.1f}" y="{y - 5:.1f}" width="10" height="10" '
                         f'fill="none" stroke="{STUDY_COLOR}" stroke-width="2"/>')
            parts.append(f'<text x="{x + 8:.1f}" y="{y - 6:.1f}" fill="{STUDY_COLOR}">'
                         f'{c.esc(ref["gpu"])}</text>')
    legend.append(("the study (published)", STUDY_COLOR, "square"))
    cells = df.filter((pl.col("model") == model) & (pl.col("ctx") == ctx))
    for label, mode, attn, color, _ in SERIES:
        pts = cells.filter((pl.col("mode") == mode) & (pl.col("attention") == attn))
        drawn = False
        for r in pts.sort("gpu").iter_rows(named=True):
            gbps, rf = c.peak(r["gpu"]), r["r_floor_all_weights"]
            if gbps is None or rf is None:
                continue
            parts.append(f'<circle cx="{_x(gbps):.1f}" cy="{_y(min(rf, 1.0)):.1f}" r="5" '
                         f'fill="{color}"><title>{c.esc(c.gpu_label(r["gpu"]))}: {c.esc(label)}, '
                         f'{c.pct(rf)}</title></circle>')
            drawn = True
        if drawn:
            legend.append((label, color, "circle"))
    for i, (label, color, shape) in enumerate(legend):
        y = T + 10 + 20 * i
        x = W - R + 20
        parts.append(f'<rect x="{x - 5}" y="{y - 5}" width="10" height="10" fill="none" '
                     f'stroke="{color}" stroke-width="2"/>' if shape == "square" else
                     f'<circle cx="{x}" cy="{y}" r="5" fill="{color}"/>')
        parts.append(f'<text x="{x + 12}" y="{y + 4}" fill="#2d3748">{c.esc(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main() -> int:
    a = c.args(__doc__.split("\n\n")[0])
    df = c.load(a.results)
    cells, refs, env = cell_rows(df), reference_rows(df), environment(df)
    md = ["# The study's table on our GPUs", "",
          "Generated by `python analyses/study_table.py` from `analyses/results/study.parquet`; "
          "see `analyses/README.md` for what each number is and how it was measured.", "",
          "## The study's published numbers beside ours", "",
          *c.md_table(REF_HEADERS, refs, {1, 3}), "",
          f"Source: {c.md(study.PAPER)}. The paper's text states R_floor for these cells only; "
          "no number is read off its figures.", "",
          "## Every measured cell", "",
          *c.md_table(CELL_HEADERS, cells, CELL_RIGHT), "",
          "ms/step: the median of a session's unprofiled decode steps (several sessions: the mean "
          "of the session medians), with its 95% bootstrap interval. R_floor (W+K): the study's "
          "convention, all weights + KV at the cell's context over the datasheet peak; exact: "
          "the bytes a step really reads.", "",
          "## Environment", "", *c.md_table(ENV_HEADERS, env, {3, 4}), "",
          "![R_floor against peak bandwidth](study_table.svg)", ""]
    svg = figure(df)
    body = ("<h1>The study's table on our GPUs</h1>"
            "<p class=\"note\">Generated by <code>python analyses/study_table.py</code> from "
            "<code>analyses/results/study.parquet</code>.</p>"
            "<h2>The study's published numbers beside ours</h2>"
            + c.html_table(REF_HEADERS, refs, {1, 3})
            + f"<p class=\"note\">Source: {c.esc(study.PAPER)}.</p>"
            + svg + "<h2>Every measured cell</h2>" + c.html_table(CELL_HEADERS, cells, CELL_RIGHT)
            + "<h2>Environment</h2>" + c.html_table(ENV_HEADERS, env, {3, 4}))
    c.write(a.out, "study_table.md", "\n".join(md))
    c.write(a.out, "study_table.svg", svg)
    c.write(a.out, "study_table.html", c.page("tracekit — the study's table on our GPUs", body))
    print(f"wrote {a.out / 'study_table.md'}, .html, .svg ({df.height} cells)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
