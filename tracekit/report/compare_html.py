"""Render a comparison (schema tracekit.compare/1) as one self-contained HTML page.

The page: the verdict, the speed-up with its interval, a side-by-side waterfall of each side's
profiled step (floor → kernel excess → each launch-overhead class → profiled latency, with the
unprofiled latency beside it), the latency table, the per-term deltas, the warnings, and the JSON
document itself. It renders only: every number comes from the document.

Nothing from a trace is trusted, as in the explain report (:mod:`tracekit.report.html`, whose
house style this shares): the document first goes through :func:`tracekit.report.safe.clean`
(control and bidi characters become visible escapes); file, model and GPU names and warnings are
then escaped with ``html.escape``, labels handed to plotly are escaped too, and the embedded JSON
has ``<``, ``>`` and ``&`` written as ``\\u003c``….

    $ tracekit compare eager.json.gz graphs.json.gz --html ab.html
"""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from tracekit.contract import CompareDoc, CompareSide
from tracekit.errors import BadUsage
from tracekit.report.compare import _ci, _files, _side_line, side_cells, term_rows
from tracekit.report.html import (
    PLOT_CONFIG,
    TERM_COLORS,
    Html,
    _layout,
    _section,
    _table,
    esc,
    page,
    term_color,
    waterfall_bars,
)
from tracekit.report.safe import clean
from tracekit.report.text import decomposition_terms

UNPROFILED_COLOR = "#38a169"


def render_compare_html(doc: CompareDoc, *, plotlyjs: str = "inline") -> str:
    """The HTML page of a ``Comparison.to_dict()`` document."""
    if plotlyjs not in ("inline", "cdn"):
        raise BadUsage(f"plotlyjs must be 'inline' or 'cdn', not {plotlyjs!r}")
    doc = clean(doc)  # no control or bidi character from a trace reaches the page
    a, b = doc["a"], doc["b"]
    title = esc(f"tracekit compare — {a.get('mode') or 'A'} vs {b.get('mode') or 'B'}")
    sections = [_header(doc), _speedup(doc), _warnings(doc), _waterfalls(doc), _latency(doc),
                _terms(doc), _method(doc)]
    return page(title, sections, doc, plotlyjs)


def _header(doc: CompareDoc) -> Html:
    rows = "<br>".join(f"<b>{esc(s['label'])}</b> {esc(_files(s))} · {esc(_side_line(s))}"
                       for s in (doc["a"], doc["b"]))
    return Html('<header><div class="eyebrow">tracekit · A/B of batch-1 decode</div>'
                f"<h1>Speed-up of B over A: {doc['speedup']:.3f}×</h1>"
                f'<p class="sub">{rows}</p></header>')


def _speedup(doc: CompareDoc) -> Html:
    src = doc["latency_source"]
    note = (f"95% CI {esc(_ci(doc))} · bootstrap over {esc(doc['basis'])} "
            f"(n_a = {doc['n_a']}, n_b = {doc['n_b']}) · "
            f"{'unprofiled' if src == 'unprofiled' else '<b>PROFILED</b>'} latency · "
            f"{esc(doc['statistic'])}")
    return Html('<section class="verdict"><div class="eyebrow">Verdict</div>'
                f'<p id="verdict">{esc(doc["verdict"])}</p><p class="lead">{note}</p></section>')


def _warnings(doc: CompareDoc) -> Html:
    if not doc.get("warnings"):
        return Html("")
    items = "".join(f"<li>{esc(w)}</li>" for w in doc["warnings"])
    return _section("Warnings", f'<ul class="warnings">{items}</ul>', sid="warnings")


def _segments(side: CompareSide) -> list[tuple[str, float, str]]:
    """The bars of one side's waterfall: the explain report's terms, those with a size."""
    return [(label, v, term_color(key)) for key, label, v in decomposition_terms(side) if v]


def _waterfalls(doc: CompareDoc) -> Html:
    sides = [s for s in (doc["a"], doc["b"]) if s.get("decomposition")]
    if not sides:
        return _section("Where the time goes", "<p>Neither side has a profiled trace to "
                        "decompose: the speed-up above comes from unprofiled timings only.</p>",
                        sid="waterfall")
    fig = make_subplots(rows=1, cols=len(sides), shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=[esc(f"{s['label']}: {_side_line(s)}") for s in sides])
    top = 0.0
    for col, s in enumerate(sides, 1):
        labels, bases, heights, colors = waterfall_bars(_segments(s))
        level = bases[-1] + heights[-1] if heights else 0.0
        dec = s.get("decomposition")
        lat = (dec.get("latency_ms") if dec else None) or level
        labels += ["profiled latency", "unprofiled latency"]
        bases += [0.0, 0.0]
        heights += [lat, s["latency_ms"] if s["latency_source"] == "unprofiled" else 0.0]
        colors += [TERM_COLORS["latency"], UNPROFILED_COLOR]
        top = max([top] + [x + h for x, h in zip(bases, heights)])
        fig.add_trace(go.Bar(
            x=[esc(x) for x in labels], y=heights, base=bases, marker={"color": colors},
            text=[f"{h:.3f} ms" if h else "" for h in heights], textposition="outside",
            cliponaxis=False, width=0.62, showlegend=False,
            hovertemplate="%{x}: %{text}<extra></extra>"), row=1, col=col)
    _layout(fig, height=420, xtitle="", ytitle="ms per decode step (median)", top=60)
    fig.update_yaxes(range=[0, top * 1.15])
    for ann in fig.layout.annotations:
        ann.font = {"size": 12}
    body = Html(fig.to_html(full_html=False, include_plotlyjs=False, div_id="waterfall-ab",
                            config=PLOT_CONFIG))
    return _section("Where the time goes, side by side", body, sid="waterfall",
                    lead="Each side's profiled decode step split into memory floor, kernel excess "
                         "and launch overhead by gap class (medians over steps); the green bar is "
                         "the unprofiled step that decides the speed-up.")


def _latency(doc: CompareDoc) -> Html:
    rows = [[c[k] for k in ("label", "latency", "ci", "p10_p90", "sessions", "steps",
                             "session_medians")] for c in map(side_cells, (doc["a"], doc["b"]))]
    t = _table(["side", "latency ms", "95% CI", "p10–p90 ms", "sessions", "steps",
                "session medians ms"], rows, num={1, 2, 3, 4, 5})
    return _section("Step latency", t, sid="latency",
                    lead=f"{esc(doc['latency_source'])} step times; {esc(doc['statistic'])}.")


def _terms(doc: CompareDoc) -> Html:
    terms = term_rows(doc)
    if not terms:
        return Html("")
    rows = [[Html(("&nbsp;&nbsp;" if role == "sub" else "") + esc(label)), *cells]
            for role, (label, *cells) in terms]
    return _section("What moved", _table(["term", "A", "B", "B − A"], rows, num={1, 2, 3}),
                    sid="terms", lead="Per decode step, from each side's profiled trace.")


def _method(doc: CompareDoc) -> Html:
    bs = doc["bootstrap"]
    return _section("Method", (
        f"<p>Speed-up = latency(A) ÷ latency(B). A session (one fresh process) is the unit of "
        f"evidence: its latency is the median of its unprofiled steps; with at least two sessions "
        f"per side a side's latency is the mean of its session medians and the bootstrap "
        f"resamples sessions, otherwise steps. Interval: {esc(bs['method'])} bootstrap, "
        f"{esc(bs['resamples'])} resamples, level {esc(bs['level'])}, seed {esc(bs['seed'])}.</p>"
        f"<p>tracekit {esc(doc.get('tracekit_version'))} · schema {esc(doc['schema'])}</p>"),
        sid="method")
