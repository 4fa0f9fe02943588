"""The ``quantization`` section (``explain --baseline``) drawn in Markdown, on the committed H100
captures: every number of the table is the JSON's, and the verdict is there."""

from __future__ import annotations

from pathlib import Path

from tracekit.explain import explain
from tracekit.report.markdown import render_markdown

Q = Path(__file__).parent.parent / "sample_traces" / "quant" / "h100"


def test_the_markdown_report_draws_the_quantization_section():
    doc = explain(Q / "qwen2.5-7b_ctx2048_cuda-graphs_int4.json.gz",
                  baseline=Q / "qwen2.5-7b_ctx2048_cuda-graphs_bf16.json.gz").to_dict()
    q = doc["quantization"]
    md = render_markdown(doc)
    assert "**Quantized step vs baseline**" in md
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:5]]
            for line in md.splitlines() if line.startswith("| ") and " ms |" in line}
    assert rows["step ms"][:2] == [f"{q['baseline_step_ms']:.3f}", f"{q['step_ms']:.3f}"]
    assert rows["floor ms"][:2] == [f"{q['baseline_floor_ms']:.3f}", f"{q['floor_ms']:.3f}"]
    for c in q["categories"]:
        assert rows[f"{c['category']} ms"][2] == f"{c['delta_ms']:.3f}"
    assert q["verdict"] in md
    # the int4 step is faster than bf16's and its floor smaller: the signs are right
    assert rows["step ms"][2].startswith("-") and rows["floor ms"][2].startswith("-")


def test_the_html_report_draws_the_same_rows():
    from tracekit.report.html import render_html
    from tracekit.report.text import quantization_rows

    doc = explain(Q / "qwen2.5-7b_ctx2048_cuda-graphs_int4.json.gz",
                  baseline=Q / "qwen2.5-7b_ctx2048_cuda-graphs_bf16.json.gz").to_dict()
    page = render_html(doc, None, plotlyjs="cdn")
    section = page[page.index('id="quantization"'):]
    section = section[:section.index("</section>")]
    for row in quantization_rows(doc["quantization"]):
        assert f"<td>{row[0]}</td>" in section and f'<td class="num">{row[2]}</td>' in section
    assert 'id="quant-verdict"' in section
