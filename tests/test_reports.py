"""Markdown and HTML reports: right numbers from the dict, escaping of trace strings, CLI files.

Runs on CPU in a few seconds: the bundled eager Qwen2.5-7B sample is explained once per module.
Markdown is checked through markdown-it-py (a rich dependency) with raw HTML enabled, as GitHub
would parse it: tables keep their shape and no trace string becomes markup.
"""

from __future__ import annotations

import copy
import html
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from markdown_it import MarkdownIt

from tracekit.cli import app, sample_path
from tracekit.errors import BadUsage
from tracekit.explain import explain
from tracekit.report.html import render_html
from tracekit.report.markdown import md_code, md_text, render_markdown

EVIL = "<script>alert(1)</script>"
EVIL_FILE = 'trace&<>"name.json.gz'
PIPES = "k|ernel`with*back`ticks_|_"


@pytest.fixture(scope="module")
def sample():
    """The bundled sample (a tracekit capture: model, context and GPU from its metadata)."""
    e = explain(sample_path())
    return e.to_dict(), e.timeline


@pytest.fixture(scope="module")
def foreign():
    """A foreign trace (plain torch.profiler, no tracekit metadata): no model, so no floor."""
    e = explain(Path(__file__).parent.parent / "sample_traces"
                / "plain_qwen2.5-7b_ctx2048_eager_annotated.json.gz")
    return e.to_dict(), e.timeline


@pytest.fixture()
def evil(sample):
    """The sample with hostile strings wherever the trace supplies one."""
    doc, tl = copy.deepcopy(sample)
    doc["source"]["file"] = EVIL_FILE
    doc["source"]["detection_detail"] = EVIL
    doc["gpu"]["name"] = f"GPU {EVIL}"
    doc["top_kernels"][0]["name"] = EVIL
    doc["top_kernels"][1]["name"] = PIPES
    doc["kernels_by_category"][0]["category"] = EVIL
    doc["warnings"] = [f"- {EVIL} & [link](javascript:alert(2)) @someone"]
    for op in tl["ops"][:5]:
        op["name"] = EVIL
        op["category"] = EVIL
    return doc, tl


def _md(text: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(text)  # html=True, like GitHub


def _tables(rendered: str) -> list[list[int]]:
    """Cells per row of each rendered table."""
    return [[len(re.findall(r"<t[hd][ >]", row)) for row in re.findall(r"<tr>(.*?)</tr>", t, re.S)]
            for t in re.findall(r"<table>(.*?)</table>", rendered, re.S)]


# -- Markdown ---------------------------------------------------------------------------------
def test_markdown_verdict_first_and_numbers(sample):
    doc, _ = sample
    md = render_markdown(doc)
    dec, s, w = doc["decomposition"], doc["summary"], doc["whatif"]
    lat = dec["latency_ms"]
    first_block = md.split("\n\n")[1]
    assert md_text(doc["verdict"]) in first_block
    rows = {
        "memory floor": (dec["floor_ms"], dec["floor_ms"] / lat),
        "kernel excess": (dec["kernel_excess_ms"], dec["kernel_excess_ms"] / lat),
        "launch overhead (GPU idle)": (dec["launch_overhead_ms"], dec["launch_overhead_ms"] / lat),
    }
    for label, (ms, share) in rows.items():
        assert f"| {label} | {ms:.3f} | {share:.1%} |" in md
    host = dec["launch_overhead_by_class_ms"]["host_bound"]
    assert f"↳ idle: host-bound | {host:.3f} | {host / lat:.1%} |" in md
    assert f"| **latency** | **{lat:.3f}** |" in md
    lo, hi = s["range"]["latency_ms"]
    assert f"| latency ms | {s['latency_ms']:.3f} | {lo:.3f}–{hi:.3f} |" in md
    assert f"| GPU busy ms | {s['gpu_busy_ms']:.3f} |" in md
    assert f"| kernels | {s['kernels']:.0f} |" in md
    lo, hi = w["cuda_graphs_interval_ms"]  # the point with its interval, from the JSON
    # the speed-up is against the unprofiled step where the trace knows it (the verdict's)
    u = doc["unprofiled"]
    speedup = u["latency_ms"] / w["cuda_graphs_ms"] if u and u["decomposition"] else lat / w["cuda_graphs_ms"]
    assert (f"| CUDA Graphs | {w['cuda_graphs_ms']:.3f} ({lo:.3f}–{hi:.3f}) | "
            f"{speedup:.2f}× | {w['cuda_graphs_program']}:") in md
    top = doc["top_kernels"][0]
    assert f"| `{top['name']}` | {top['ms_per_step']:.3f} |" in md
    top_section = md.split("kernels** — per decode step")[1].split("\n\n**")[0]
    assert len(re.findall(r"^\| `", top_section, re.M)) == 5  # top 5 kernels
    cat = doc["kernels_by_category"][0]
    assert f"| {cat['category']} | {cat['ms_per_step']:.3f} | {cat['share']:.1%} |" in md


def test_markdown_environment_and_conventions(sample):
    doc, _ = sample
    md = render_markdown(doc)
    env = md[md.index("**Environment**"):]
    for needle in ("NVIDIA H100 80GB HBM3", "`H100 SXM5`", "peak 3350 GB/s (datasheet)", "cuda_runtime 13000",
                   doc["source"]["detection_method"], "sample_qwen2.5-7b_ctx2048",
                   "medians over decode steps", "`exact` bytes"):
        assert needle in env, needle


def test_markdown_tables_hold_and_nothing_renders_as_html(evil):
    doc, _ = evil
    md = render_markdown(doc)
    rendered = _md(md)
    assert "<script" not in rendered and "<a " not in rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered  # shown as text
    for table in _tables(rendered):
        assert len(set(table)) == 1, table  # every row has the header's cell count
    assert f"<code>{html.escape(PIPES, quote=False)}</code>" in rendered
    assert "\\@someone" in md  # no mention
    assert "<li>- &lt;script&gt;" in rendered  # a leading "-" does not nest a list


@pytest.mark.parametrize("text", ["a|b", "*x*", "<b>", "1. item", "- item", "`x`", "&amp;",
                                  "[l](u)", "$x$", "__init__", "line\nbreak"])
def test_md_text_round_trips_as_literal_text(text):
    rendered = _md(f"- {md_text(text, line_start=True)}\n")
    inner = re.search(r"<li>(.*)</li>", rendered, re.S).group(1)
    assert html.unescape(inner) == text.replace("\n", " ")


@pytest.mark.parametrize("text", ["plain", "a|b", "x`y", "`lead", "trail`", "``two``"])
def test_md_code_in_a_table_cell_is_verbatim(text):
    rendered = _md(f"| h |\n|---|\n| {md_code(text, table=True)} |\n")
    assert f"<td><code>{html.escape(text, quote=False)}</code></td>" in rendered


def test_markdown_without_floor_says_which_flag(foreign):
    doc, _ = foreign
    assert doc["floor"]["floor_ms"] is None and doc["floor"]["missing"]
    md = render_markdown(doc)
    assert md_text(doc["floor"]["missing"]) in md
    assert "--model" in md and "| GPU busy |" in md


# -- HTML -------------------------------------------------------------------------------------
def test_html_sample_has_verdict_numbers_and_figures(sample):
    doc, tl = sample
    page = render_html(doc, tl)
    dec, s = doc["decomposition"], doc["summary"]
    assert f'<p id="verdict">{html.escape(doc["verdict"])}</p>' in page
    for v in (dec["floor_ms"], dec["kernel_excess_ms"], dec["launch_overhead_ms"], dec["latency_ms"],
              s["gpu_busy_ms"]):
        assert f">{v:.3f}<" in page, v
    w = doc["whatif"]
    lo, hi = w["cuda_graphs_interval_ms"]
    assert f">{w['cuda_graphs_ms']:.3f} ({lo:.3f}–{hi:.3f})<" in page
    assert f"{dec['floor_ms'] / dec['latency_ms']:.1%}" in page
    for fig in ("fig-waterfall", "fig-steps", "fig-timeline"):
        assert f'id="{fig}"' in page
    cat = doc["kernels_by_category"][0]
    assert f">{cat['ms_per_step']:.3f}<" in page and f"{cat['share']:.1%}" in page
    n, host = s["launches"], s["launch_host_ms"]
    assert f">{host * 1e3 / n:.2f}<" in page  # host µs per launch call
    for section in ("Environment", "Definitions", "R_floor", "host-bound", "launch latency"):
        assert section in page
    assert 'id="tracekit-doc"' in page


def test_html_gap_colours_are_consistent(sample):
    from tracekit.report.html import GAP_COLORS

    doc, tl = sample
    page = render_html(doc, tl)
    in_timeline = {g["class"] for g in tl["gaps"]}
    for cls, color in GAP_COLORS.items():
        # table swatch and step bars always; the waterfall and the timeline where present
        assert page.count(color) >= 2 + (cls in in_timeline) + bool(
            doc["decomposition"]["launch_overhead_by_class_ms"][cls]), cls


def test_html_escapes_every_trace_string(evil):
    doc, tl = evil
    page = render_html(doc, tl)
    assert EVIL not in page and "alert(1)</script>" not in page
    assert html.escape(EVIL) in page  # as text, in the tables
    assert html.escape(EVIL_FILE) in page and EVIL_FILE not in page
    assert "javascript:alert(2)" not in page.replace("javascript:alert(2)) @someone", "")
    # the only script elements are plotly.js, one per figure, and the JSON document
    assert len(re.findall(r"<script\b", page)) == 1 + 3 + 1


def test_html_plotly_json_cannot_close_a_script(evil):
    doc, tl = evil
    page = render_html(doc, tl, plotlyjs="cdn")
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", page, re.S)
    assert all("<" not in body for body in scripts[1:])  # figure data and the embedded document


def test_html_cdn_is_small_and_references_the_cdn(sample):
    doc, tl = sample
    inline, cdn = render_html(doc, tl), render_html(doc, tl, plotlyjs="cdn")
    assert len(cdn) * 8 < len(inline)
    assert re.search(r'<script src="https://cdn\.plot\.ly/plotly-[\d.]+\.min\.js" integrity="sha256-',
                     cdn)
    assert "<script src=" not in inline  # inline opens offline: nothing to fetch


def test_html_without_floor_says_which_flag(foreign):
    doc, tl = foreign
    page = render_html(doc, tl)
    assert 'id="floor-missing"' in page
    assert html.escape(doc["floor"]["missing"]) in page and "--model" in page


def test_reports_render_a_doc_with_nothing_known(foreign):
    """A host-only trace: no latency, no GPU, no kernels, no timeline."""
    doc = copy.deepcopy(foreign[0])
    for k in doc["decomposition"]:
        if k.endswith("_ms") or k.startswith("r_floor") or k.startswith("achieved"):
            doc["decomposition"][k] = None
    doc["decomposition"]["launch_overhead_by_class_ms"] = None
    doc["summary"] = {"steps": 0, "steps_with_latency": 0, "range": {}}
    doc["steps"], doc["kernels_by_category"], doc["top_kernels"] = [], [], []
    doc["whatif"] = {k: None for k in doc["whatif"]}
    doc["verdict"] = "No step latency: the trace has fewer than two decode steps with GPU work."
    page, md = render_html(doc, {}), render_markdown(doc)
    assert doc["verdict"] in page and md_text(doc["verdict"]) in md
    assert "No GPU timeline" in page


def test_html_omits_flagged_steps_with_a_note(sample):
    doc, tl = copy.deepcopy(sample)
    doc["steps"][0]["kind"] = "prefill"
    page = render_html(doc, tl)
    last = doc["steps"][-1]["step"]
    assert (f"Not shown: step {doc['steps'][0]['step']} (prefill, not a decode step); "
            f"step {last} (no next step to time it against).") in page
    steps_fig = page[page.index('id="fig-steps"'):page.index('id="fig-timeline"')]
    xs = json.loads(re.search(r'"x":(\[[^\]]*\])', steps_fig).group(1))
    assert xs == [str(r["step"]) for r in doc["steps"][1:-1]]


def test_html_is_deterministic(sample):
    assert render_html(*sample, plotlyjs="cdn") == render_html(*sample, plotlyjs="cdn")


def test_renderers_do_not_mutate_the_doc(sample):
    doc, tl = sample
    before = copy.deepcopy((doc, tl))
    render_html(doc, tl)
    render_markdown(doc)
    assert (doc, tl) == before


def test_render_html_rejects_unknown_plotlyjs(sample):
    with pytest.raises(BadUsage, match="inline"):
        render_html(*sample, plotlyjs="directory")


# -- CLI --------------------------------------------------------------------------------------
def test_cli_writes_html_and_markdown(tmp_path):
    out_html, out_md = tmp_path / "out.html", tmp_path / "out.md"
    res = CliRunner().invoke(app, ["explain", "--sample", "--html", str(out_html),
                                   "--markdown", str(out_md)])
    assert res.exit_code == 0, res.output
    page, md = out_html.read_text(), out_md.read_text()
    assert md.startswith("### tracekit:") and "**Decomposition**" in md
    verdict = re.search(r'<p id="verdict">(.*?)</p>', page).group(1)
    assert md_text(html.unescape(verdict)) in md
    assert page.startswith("<!doctype html>") and len(page) > 3_000_000


def test_cli_cdn_report(tmp_path):
    out = tmp_path / "small.html"
    res = CliRunner().invoke(app, ["explain", "--sample", "--html", str(out), "--plotlyjs", "cdn"])
    assert res.exit_code == 0, res.output
    assert "https://cdn.plot.ly/" in out.read_text() and out.stat().st_size < 1_000_000


# -- one view model, three media ------------------------------------------------------------------
def test_every_medium_draws_the_same_tables(sample):
    """The decomposition and the per-step summary read the same in the terminal, Markdown and
    HTML: the same label, the same ms and the same share on one row (shares and labels computed
    here from the JSON document, not by the report code)."""
    from rich.console import Console

    from tracekit.report.terminal import render

    doc, tl = sample
    con = Console(record=True, width=160)
    render(doc, con)
    term, md, page = con.export_text(), render_markdown(doc), render_html(doc, tl, plotlyjs="cdn")
    dec, s = doc["decomposition"], doc["summary"]
    lat = dec["latency_ms"]
    names = {"host_bound": "host-bound", "launch_latency": "launch latency", "sync": "sync",
             "other": "other"}
    assert set(dec["launch_overhead_by_class_ms"]) == set(names)
    rows = [(f"idle: {names[c]}", v) for c, v in dec["launch_overhead_by_class_ms"].items()]
    rows += [("memory floor", dec["floor_ms"]), ("kernel excess", dec["kernel_excess_ms"]),
             ("launch overhead (GPU idle)", dec["launch_overhead_ms"])]
    for label, v in rows:
        ms, pct = f"{v:.3f}", f"{v / lat:.1%}"
        assert re.search(rf"│\s+{re.escape(label)}\s+│\s+{re.escape(ms)} │\s+{re.escape(pct)} │", term), label
        assert re.search(rf"\| (&nbsp;&nbsp;↳ )?{re.escape(label)} \| {re.escape(ms)} \| "
                         rf"{re.escape(pct)} \|", md), label
        assert re.search(rf"{re.escape(label)}</td><td class=\"num\">{re.escape(ms)}</td>"
                         rf"<td class=\"num\">{re.escape(pct)}</td>", page), label
    lo, hi = s["range"]["latency_ms"]
    median, span = f"{s['latency_ms']:.3f}", f"{lo:.3f}–{hi:.3f}"
    assert re.search(rf"│ latency ms\s+│\s+{median} │\s+{span} │", term)
    assert f"| latency ms | {median} | {span} |" in md
    assert (f'<td>latency ms</td><td class="num">{median}</td><td class="num">{span}</td>'
            in page)
