"""Render an explanation as one self-contained HTML file (plotly), to attach to a bug report.

The page holds the verdict, a waterfall of the decomposition (floor → kernel excess → each class
of launch overhead → latency), per-step stacked bars, a timeline of one representative step with
idle gaps coloured by class, the kernel-category and top-kernel tables, launch statistics, the
what-ifs, the floor's byte accounting, the environment, the definitions, and the JSON document
itself. With ``plotlyjs="inline"`` plotly.js is embedded and the file opens offline (≈5 MB); with
``"cdn"`` it loads plotly.js from cdn.plot.ly (≈0.3 MB).

It renders only: numbers come from ``Explanation.to_dict()`` and ``Explanation.timeline``;
shares, unit conversions and running sums for drawing are the only arithmetic.

Nothing from the trace is trusted. Every string (file, GPU, kernel and annotation names,
warnings) is ``html.escape``d before it reaches markup; strings handed to plotly are escaped too
(plotly.js parses a subset of HTML in labels and decodes entities back to text), and plotly's JSON
encoder writes ``<``, ``>`` and ``/`` as ``\\u003c``…, so no name can close a ``<script>``.

    $ tracekit explain --sample --html report.html
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import Any, cast

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs, get_plotlyjs_version

from tracekit.breakdown import GAP_CLASSES
from tracekit.contract import CompareDoc, ExplainDoc, Model, StepRow
from tracekit.errors import BadUsage
from tracekit.report.safe import clean
from tracekit.report.text import (
    GAP_LABELS,
    capture_rows,
    category_rows,
    context_line,
    decomposition_rows,
    decomposition_terms,
    fmt,
    fmt_bytes,
    gpu_label,
    has_bytes,
    quantization_rows,
    share,
    stall_rows,
    step_summary_rows,
    throughput_note,
    top_kernel_rows,
    unprofiled_lead,
    unprofiled_rows,
    unprofiled_whatif_text,
    whatif_basis,
    whatif_rows,
    with_interval,
)

#: one colour per gap class, the same in every figure and table
GAP_COLORS = {"host_bound": "#d64545", "launch_latency": "#f0a030", "sync": "#8b5cf6",
              "other": "#9aa5b1"}
TERM_COLORS = {"floor": "#1f4e8c", "kernel_excess": "#7fb2e5", "gpu_busy": "#3b7dc4",
               "latency": "#2d3748"}
CATEGORY_COLORS = {"gemm": "#2f855a", "attention": "#b83280", "normalization": "#2c7a7b",
                   "elementwise": "#4c6ef5", "reduction": "#b7791f", "copy": "#805a3b",
                   "communication": "#553c9a", "other": "#4a5568"}
FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'
PLOT_CONFIG = {"displaylogo": False, "responsive": True,
               "modeBarButtonsToRemove": ["lasso2d", "select2d", "autoScale2d"],
               "toImageButtonOptions": {"format": "png", "scale": 2}}
HOVER_NAME_CHARS = 140
TABLE_NAME_CHARS = 200


class Html(str):
    """Markup built here from escaped parts; everything else is escaped on the way in."""


def esc(value: object) -> Html:
    return Html(html.escape("—" if value is None else str(value), quote=True))


def _cell(value: object) -> str:
    return value if isinstance(value, Html) else esc(value)


def _clip(s: object, n: int) -> str:
    s = "" if s is None else str(s)
    return s if len(s) <= n else s[: n - 1] + "…"


# -- entry point ------------------------------------------------------------------------------
def page(title: str, sections: Sequence[str | None], doc: ExplainDoc | CompareDoc,
         plotlyjs: str) -> str:
    """One self-contained HTML page: ``title`` (escaped already), the non-empty ``sections``, and
    the document itself as embedded JSON. The explain and compare reports share it."""
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{title}</title>\n<style>{CSS}</style>\n{_plotly_script(plotlyjs)}\n</head>\n"
        f"<body>\n<main>\n{''.join(s for s in sections if s)}\n</main>\n"
        f"{_doc_json(doc)}\n</body>\n</html>\n"
    )


def render_html(doc: ExplainDoc, timeline: dict | None = None, *, plotlyjs: str = "inline") -> str:
    """The HTML report of an ``Explanation.to_dict()`` document and its ``timeline``."""
    if plotlyjs not in ("inline", "cdn"):
        raise BadUsage(f"plotlyjs must be 'inline' or 'cdn', not {plotlyjs!r}")
    doc, timeline = clean(doc), clean(timeline)  # no control or bidi character from the trace
    sections = [
        _header(doc), _verdict(doc), _kpis(doc), _warnings(doc), _decomposition(doc),
        _quantization(doc), _host(doc), _unprofiled(doc), _capture(doc), _per_step(doc), _timeline(timeline or {}), _kernels(doc), _launches(doc), _whatifs(doc),
        _floor(doc), _environment(doc), _definitions(doc), _footer(doc),
    ]
    title = esc(f"tracekit report — {_subject(doc)}")
    return page(title, sections, doc, plotlyjs)


@functools.cache
def _plotly_script(mode: str) -> str:
    """The page's plotly.js tag: the bundle itself (≈4.6 MB, read from plotly's package) or a CDN
    link with its hash; built once per process (``tracekit batch`` writes one page per trace)."""
    js = get_plotlyjs()
    if mode == "inline":
        return f"<script>{js}</script>"
    sri = "sha256-" + base64.b64encode(hashlib.sha256(js.encode()).digest()).decode()
    url = f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"
    return f'<script src="{url}" integrity="{sri}" crossorigin="anonymous" charset="utf-8"></script>'


def _doc_json(doc: ExplainDoc | CompareDoc) -> str:
    """The JSON contract itself, machine-readable inside the attachment (never executed)."""
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    for a, b in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(a, b)
    return f'<script type="application/json" id="tracekit-doc">{text}</script>'


def _plot(fig: Figure, div_id: str) -> Html:
    """A figure (plotly's JSON form) as a ``<div>`` and the script that draws it. The page's
    figures are built as plotly JSON, not ``graph_objects``: validating them cost ≈140 ms a page,
    as much as the analysis; :func:`figures` hands notebooks the validated objects."""
    # plotly serializes data and layout with to_json_plotly, which escapes < > /
    return Html(pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id,
                            config=PLOT_CONFIG, validate=False))


#: a plotly figure in its JSON form: ``{"data": [trace, …], "layout": {…}}``
Figure = dict[str, Any]


def _style(*, height: int, xtitle: str, ytitle: str, top: int = 40, **kw) -> dict:
    """The house style as a plotly layout (no template: plotly.js's plain defaults); ``top`` leaves
    room for a legend above the plot, clear of the modebar."""
    axis = {"gridcolor": "#edf1f5", "zerolinecolor": "#cbd2d9", "linecolor": "#cbd2d9",
            "ticks": "outside", "tickcolor": "#cbd2d9", "automargin": True}
    return {
        "height": height, "font": {"family": FONT, "size": 12.5, "color": "#2d3748"},
        "paper_bgcolor": "#ffffff", "plot_bgcolor": "#ffffff",
        "margin": {"l": 10, "r": 16, "t": top, "b": 10},
        "hoverlabel": {"font": {"family": FONT, "size": 12}, "align": "left"},
        "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom", "font": {"size": 12}},
        "xaxis": {**axis, "title": {"text": xtitle}}, "yaxis": {**axis, "title": {"text": ytitle}},
        **kw}


def _layout(fig: go.Figure, **style) -> go.Figure:
    """The house style (:func:`_style`) on a ``graph_objects`` figure (the compare page's)."""
    fig.update_layout(template="none", **_style(**style))
    return fig


# -- page sections ----------------------------------------------------------------------------
def _subject(doc: ExplainDoc) -> str:
    model = (doc.get("model") or {}).get("name")
    gpu = (doc.get("gpu") or {}).get("name") or (doc.get("source") or {}).get("gpu")
    return " on ".join(str(x) for x in (model, gpu) if x) or str(
        (doc.get("source") or {}).get("file") or "decode trace")


def _section(title: str, body: str, *, lead: str = "", sid: str = "") -> Html:
    lead_html = f'<p class="lead">{lead}</p>' if lead else ""
    return Html(f'<section class="card" id="{sid}"><h2>{esc(title)}</h2>{lead_html}{body}</section>')


def _table(headers: list[str], rows: list[list], *, num: AbstractSet[int] = frozenset(),
           row_class: list[str] | None = None, cls: str = "") -> Html:
    """A table; column indexes in ``num`` are right-aligned numbers. Cells are escaped unless Html."""
    def tag(t, i, v):
        return f'<{t} class="num">{v}</{t}>' if i in num else f"<{t}>{v}</{t}>"

    head = "".join(tag("th", i, esc(h)) for i, h in enumerate(headers))
    body = []
    for j, r in enumerate(rows):
        rc = f' class="{row_class[j]}"' if row_class and row_class[j] else ""
        body.append(f"<tr{rc}>" + "".join(tag("td", i, _cell(v)) for i, v in enumerate(r)) + "</tr>")
    return Html(f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}'
                "</tbody></table>")


def _swatch(color: str, label: object) -> Html:
    return Html(f'<span class="swatch" style="background:{color}"></span>{esc(label)}')


def _header(doc: ExplainDoc) -> Html:
    src = doc.get("source") or {}
    sub = (f"{esc(src.get('file'))} · {esc(src.get('format'))} · GPU: {esc(gpu_label(doc))} · "
           f"{esc(src.get('decode_steps'))} decode steps found by {esc(src.get('detection_method'))}")
    ctx = context_line(doc)
    if ctx:
        sub += f'<br><span id="context">Context: {esc(ctx)}</span>'

    return Html(f'<header><div class="eyebrow">tracekit · batch-1 decode report</div>'
                f"<h1>{esc(_subject(doc))}</h1><p class=\"sub\">{sub}</p></header>")


def _verdict(doc: ExplainDoc) -> Html:
    return Html(f'<section class="verdict"><div class="eyebrow">Verdict</div>'
                f'<p id="verdict">{esc(doc.get("verdict") or "—")}</p></section>')


def _kpi(label: str, value: str, note: str) -> str:
    return (f'<div class="kpi"><div class="label">{esc(label)}</div>'
            f'<div class="value">{esc(value)}</div><div class="note">{esc(note)}</div></div>')


def _kpis(doc: ExplainDoc) -> Html:
    s, dec, w = doc.get("summary") or {}, doc.get("decomposition") or {}, doc.get("whatif") or {}
    lat = s.get("latency_ms")
    rng = (s.get("range") or {}).get("latency_ms")
    floor = dec.get("floor_ms")
    u = doc.get("unprofiled")
    uw = u.get("whatif") if u else None
    if uw is not None and uw.get("cuda_graphs_ms") is None:
        uw = None
    if w.get("cuda_graphs_ms") is not None:
        g = uw or w  # the unprofiled step's what-if where it is known: the verdict's number
        graphs = (f"≈{with_interval(g['cuda_graphs_ms'], g.get('cuda_graphs_interval_ms'), '{:.2f}')} ms",
                  f"≈{g['cuda_graphs_speedup']:.1f}× faster than the "
                  f"{'unprofiled' if uw else 'profiled'} step (predicted: "
                  f"{w.get('cuda_graphs_program') or 'these kernels replayed'})")
    else:
        graphs = ("—", w.get("note") or "no prediction")
    cards = [
        _kpi("Step latency", fmt(lat, "{:.2f} ms"),
             f"profiled, median; {rng[0]:.2f}–{rng[1]:.2f} ms" if rng else "profiled, median"),
        _kpi("Throughput", _tok_s(s.get("tokens_per_s")), throughput_note(doc)),
        _kpi("GPU busy", fmt(s.get("gpu_busy_ms"), "{:.2f} ms"),
             f"{share(s.get('gpu_busy_ms'), lat)} of the step"),
        _kpi("Launch overhead", fmt(dec.get("launch_overhead_ms"), "{:.2f} ms"),
             f"{share(dec.get('launch_overhead_ms'), lat)} of the step: GPU idle"),
        _kpi("Memory floor", fmt(floor, "{:.2f} ms"),
             f"R_floor {dec['r_floor']:.1%}" if dec.get("r_floor") is not None
             else "not computed — see Memory floor"),
        _kpi("With CUDA Graphs", *graphs),
    ]
    return Html(f'<div class="kpis">{"".join(cards)}</div>')


def _tok_s(v) -> str:
    return "—" if v is None else f"{v:.1f} tok/s" if v >= 10 else f"{v:.2f} tok/s"


def _warnings(doc: ExplainDoc) -> Html:
    ws = doc.get("warnings") or []
    if not ws:
        return Html("")
    items = "".join(f"<li>{esc(w)}</li>" for w in ws)
    return Html(f'<div class="callout warn" id="warnings"><strong>Warnings</strong><ul>{items}</ul></div>')


# -- decomposition ----------------------------------------------------------------------------
def term_color(key: str) -> str:
    """The colour of a decomposition term (text.decomposition_terms' keys) in every chart."""
    return TERM_COLORS.get(key) or GAP_COLORS.get(key, "#999")


def _terms(doc: ExplainDoc) -> list[tuple[str, str, float | None, str]]:
    """(key, label, ms, colour) of the decomposition, in the order they add up."""
    return [(key, label, v, term_color(key)) for key, label, v in decomposition_terms(doc)]


def _decomposition(doc: ExplainDoc) -> Html:
    dec = doc.get("decomposition") or {}
    lat = dec.get("latency_ms")
    if lat is None:
        return _section("Where each step's time goes", "<p>No step latency to decompose.</p>",
                        sid="decomposition")
    table = _decomposition_table(doc)
    extra = ""
    if dec.get("r_floor") is not None:
        extra = (f'<p class="small">R_floor {dec["r_floor"]:.1%} (all-weights '
                 f'{fmt(dec.get("r_floor_all_weights"), "{:.1%}")}). Achieved bandwidth: '
                 f'{fmt(dec.get("achieved_gbps_latency"), "{:.0f}")} GB/s over the step, '
                 f'{fmt(dec.get("achieved_gbps_busy"), "{:.0f}")} GB/s while the GPU is busy.</p>')
    if dec.get("floor_ms") is not None:
        lead = esc(f"latency = memory floor + kernel excess + launch overhead; "
                   f"{dec.get('basis', '')}, {dec.get('convention', '')} byte convention.")
    else:
        missing = (doc.get("floor") or {}).get("missing") or "no memory floor"
        lead = esc(f"latency = GPU busy + launch overhead; {dec.get('basis', '')}. "
                   f"No memory floor to split GPU busy: {missing}.")
    body = (f'<div class="grid2"><div>{_plot(_waterfall(doc), "fig-waterfall")}</div>'
            f"<div>{table}{extra}</div></div>")
    return _section("Where each step's time goes", body, lead=lead, sid="decomposition")


def waterfall_bars(terms: list[tuple[str, float, str]]) -> tuple[list, list, list, list]:
    """(labels, bases, heights, colours) of a waterfall's bars: each (label, ms, colour) term
    starts where the one before it ends."""
    labels, bases, heights, colors = [], [], [], []
    level = 0.0
    for label, v, color in terms:
        labels.append(label)
        bases.append(level)
        heights.append(v)
        colors.append(color)
        level += v
    return labels, bases, heights, colors


def _decomposition_table(doc: ExplainDoc) -> Html:
    """text.decomposition_rows, each term with its colour swatch."""
    colors = {label: term_color(key) for key, label, _ in decomposition_terms(doc)}
    colors["latency"] = TERM_COLORS["latency"]
    table = decomposition_rows(doc)
    rows = [[_swatch(colors.get(label, "transparent"), label), *cells] for _, (label, *cells) in table]
    return _table(["term", "ms", "share"], rows, num={1, 2}, row_class=[r for r, _ in table],
                  cls="decomp")


def _waterfall(doc: ExplainDoc) -> Figure:
    lat = doc["decomposition"]["latency_ms"]
    # zero-size classes add nothing to the picture
    labels, bases, heights, colors = waterfall_bars([(label, v, color) for _k, label, v, color
                                                     in _terms(doc) if v])
    labels.append("latency")
    bases.append(0.0)
    heights.append(lat)
    colors.append(TERM_COLORS["latency"])
    text = [f"{h:.3f} ms<br>{h / lat:.1%}" for h in heights]
    bar = {"type": "bar", "x": [esc(x) for x in labels], "y": heights, "base": bases,
           "marker": {"color": colors}, "text": text, "textposition": "outside",
           "cliponaxis": False, "width": 0.62, "hovertemplate": "%{x}: %{text}<extra></extra>",
           "showlegend": False}
    tops = [b + h for b, h in zip(bases, heights)]
    shapes = [{"type": "line", "xref": "x", "yref": "y", "x0": i + 0.31, "x1": i + 0.69,
               "y0": tops[i], "y1": tops[i], "line": {"color": "#a0aec0", "width": 1, "dash": "dot"}}
              for i in range(len(heights) - 1)]
    layout = _style(height=380, xtitle="", ytitle="ms per decode step (median)", shapes=shapes)
    layout["yaxis"]["range"] = [min(0.0, min(tops)), max(tops + [lat]) * 1.16]
    return {"data": [bar], "layout": layout}


# -- per step ---------------------------------------------------------------------------------
def _per_step(doc: ExplainDoc) -> Html:
    steps = doc.get("steps") or []
    shown = [r for r in steps if r.get("kind") == "decode" and r.get("latency_ms") is not None
             and r.get("gpu_busy_ms") is not None]
    notes = _omitted(steps, shown)
    fig = _plot(_step_bars(shown), "fig-steps") if shown else Html(
        "<p>No decode step has both a latency and GPU activity to show.</p>")
    note = f'<p class="small">{esc(notes)}</p>' if notes else ""
    body = (f'<div class="grid2"><div>{fig}{note}</div>'
            f"<div>{_step_summary(doc)}</div></div>")
    return _section("Per decode step", body, sid="steps",
                    lead="Each bar is one decode step; the stack adds up to its latency.")


def _omitted(steps: list[StepRow], shown: list[StepRow]) -> str:
    ids = {r["step"] for r in shown}
    rest = [r for r in steps if r["step"] not in ids]
    if not rest:
        return ""
    parts = []
    for r in rest:
        if r.get("kind") != "decode":
            why = f"{r.get('kind')}, not a decode step"
        elif r.get("latency_ms") is None:
            why = "no next step to time it against"
        else:
            why = "no GPU activity"
        parts.append(f"step {r['step']} ({why})")
    return "Not shown: " + "; ".join(parts) + "."


def _step_bars(rows: list[StepRow]) -> Figure:
    x = [str(r["step"]) for r in rows]
    with_floor = all(r.get("floor_ms") is not None and r.get("kernel_excess_ms") is not None
                     for r in rows)
    if with_floor:
        stacks = [("memory floor", [r["floor_ms"] for r in rows], TERM_COLORS["floor"]),
                  ("kernel excess", [r["kernel_excess_ms"] for r in rows],
                   TERM_COLORS["kernel_excess"])]
    else:
        stacks = [("GPU busy", [r["gpu_busy_ms"] for r in rows], TERM_COLORS["gpu_busy"])]
    stacks += [(f"idle: {GAP_LABELS[c]}", [(r.get("idle_by_class_ms") or {}).get(c) or 0.0
                                           for r in rows], GAP_COLORS[c]) for c in GAP_CLASSES]
    bars = [{"type": "bar", "x": x, "y": y, "name": esc(name), "marker": {"color": color},
             "hovertemplate": f"step %{{x}} · {esc(name)}: %{{y:.3f}} ms<extra></extra>"}
            for name, y, color in stacks]
    layout = _style(height=400, xtitle="decode step (#)", ytitle="ms per step",
                    barmode="relative", bargap=0.25, top=78)
    layout["xaxis"]["type"] = "category"
    return {"data": bars, "layout": layout}


def _step_summary(doc: ExplainDoc) -> Html:
    s = doc.get("summary") or {}
    rows = step_summary_rows(doc)
    cap = (f'<p class="small">Over {esc(s.get("steps_with_latency"))} timed of '
           f'{esc(s.get("steps"))} decode steps.</p>')
    return Html(_table(["metric", "median", "min–max"], rows, num={1, 2}) + cap)


# -- timeline ---------------------------------------------------------------------------------
def _timeline(tl: dict) -> Html:
    title = "One decode step on the GPU"
    if not tl or not tl.get("ops"):
        return _section(title, "<p>No GPU timeline: the trace has no decode step with GPU "
                               "activity and a latency.</p>", sid="timeline")
    lead = esc(f"Step {tl.get('step')}, the step with the median latency "
               f"({fmt(tl.get('latency_ns') and tl['latency_ns'] / 1e6)} ms): "
               f"{len(tl['ops'])} GPU ops by kernel category, and the idle gaps between them "
               "by class. Drag to zoom, double-click to reset; hover for names.")
    return _section(title, _plot(_timeline_fig(tl), "fig-timeline"), lead=lead, sid="timeline")


def _timeline_fig(tl: dict) -> Figure:
    ops, gaps = tl["ops"], tl.get("gaps") or []
    cats = list(dict.fromkeys(o["category"] for o in ops))
    order = [c for c in CATEGORY_COLORS if c in cats] + [c for c in cats if c not in CATEGORY_COLORS]
    traces = [_op_trace(c, [o for o in ops if o["category"] == c]) for c in order]
    idle_lane = "GPU idle"
    for cls in GAP_CLASSES:
        mine = [g for g in gaps if g["class"] == cls and not g.get("stall")]
        if mine:
            traces.append(_gap_trace(cls, mine, idle_lane))
    stalls = [g for g in gaps if g.get("stall")]
    if stalls:
        traces.append(_stall_trace(stalls, idle_lane))
    lanes = [esc(c) for c in order] + [idle_lane]
    end_ms = (tl.get("latency_ns") or max(o["end_ns"] for o in ops)) / 1e6
    layout = _style(height=120 + 42 * len(lanes), xtitle="time from the step's first GPU op (ms)",
                    ytitle="", barmode="overlay", top=60)
    layout["yaxis"].update(type="category", categoryorder="array", categoryarray=lanes[::-1],
                           showgrid=False)
    layout["xaxis"]["range"] = [0, end_ms]
    return {"data": traces, "layout": layout}


def _op_trace(cat: str, ops: list[dict]) -> dict:
    color = CATEGORY_COLORS.get(cat, CATEGORY_COLORS["other"])
    custom = [[esc(_clip(o["name"], HOVER_NAME_CHARS)), round(o["start_ns"] / 1e3, 3),
               round((o["end_ns"] - o["start_ns"]) / 1e3, 3), esc(o.get("stream"))] for o in ops]
    return dict(
        type="bar", orientation="h", y=[esc(cat)] * len(ops),
        base=[round(o["start_ns"] / 1e6, 6) for o in ops],
        x=[round((o["end_ns"] - o["start_ns"]) / 1e6, 6) for o in ops], width=0.66,
        # a 1 px outline keeps microsecond kernels visible in a 100 ms window
        marker={"color": color, "line": {"color": color, "width": 1}},
        name=esc(cat), customdata=custom,
        hovertemplate="%{customdata[0]}<br>start %{customdata[1]:.1f} µs · "
                      "%{customdata[2]:.2f} µs · stream %{customdata[3]}<extra>" + esc(cat)
                      + "</extra>")


STALL_COLOR = "#7b1010"


def _idle_bar(gaps: list[dict], lane: str, color: str, **kw) -> dict:
    """Idle gaps as one bar trace on ``lane`` (ms from the step's start), in ``color``; ``kw``:
    the trace's name, labels and hover text."""
    return dict(
        type="bar", orientation="h", y=[lane] * len(gaps),
        base=[round(g["start_ns"] / 1e6, 6) for g in gaps],
        x=[round((g["end_ns"] - g["start_ns"]) / 1e6, 6) for g in gaps], width=0.66,
        marker={"color": color, "line": {"color": color, "width": 1}}, **kw)


def _stall_trace(gaps: list[dict], lane: str) -> dict:
    """Stalls on the idle lane, each labelled with the CPU op that held the host."""
    names = [esc(_clip(g.get("host_op") or "?", HOVER_NAME_CHARS)) for g in gaps]
    custom = [[n, round(g["start_ns"] / 1e3, 3), round((g["end_ns"] - g["start_ns"]) / 1e3, 3)]
              for n, g in zip(names, gaps)]
    return _idle_bar(
        gaps, lane, STALL_COLOR, name="idle: stall (host op)", customdata=custom,
        text=[f"stall: {n}" for n in names], textposition="inside", insidetextanchor="middle", textfont={"color": "#ffffff"},
        hovertemplate="stall: %{customdata[0]}<br>start %{customdata[1]:.1f} µs · "
                      "%{customdata[2]:.2f} µs<extra></extra>")


def _gap_trace(cls: str, gaps: list[dict], lane: str) -> dict:
    color = GAP_COLORS.get(cls, GAP_COLORS["other"])
    custom = [[round(g["start_ns"] / 1e3, 3), round((g["end_ns"] - g["start_ns"]) / 1e3, 3)]
              for g in gaps]
    return _idle_bar(
        gaps, lane, color, name=esc(f"idle: {GAP_LABELS.get(cls, cls)}"), customdata=custom,
        hovertemplate=f"{esc(GAP_LABELS.get(cls, cls))} gap<br>start %{{customdata[0]:.1f}} µs · "
                      "%{customdata[1]:.2f} µs<extra></extra>")


# -- host attribution and the unprofiled step --------------------------------------------------
def _source_links(sources: list[str]) -> Html:
    """A stall's sources (``"URL (what it shows)"``) as links labelled by the URL without its
    scheme, the note as the link's title; anything that is not an http(s) URL stays text."""
    items = []
    for s in sources:
        url, _, note = str(s).partition(" ")
        if url.startswith(("https://", "http://")):
            label = url.split("://", 1)[1].removeprefix("www.")
            title = f' title="{esc(note.strip().strip("()"))}"' if note.strip() else ""
            items.append(f'<a href="{esc(url)}"{title} rel="noreferrer">{esc(label)}</a>')
        else:
            items.append(esc(s))
    return Html('<ul class="sources">' + "".join(f"<li>{x}</li>" for x in items) + "</ul>"
                if items else "—")


def _host(doc: ExplainDoc) -> Html:
    h = doc.get("host")
    if not h:
        return Html("")
    per = (f" ({fmt(h.get('us_per_launch'), '{:.1f}')} µs of host time per launch)"
           if h.get("us_per_launch") else "")
    lead = esc(f"While the GPU waited for the host: launch issue {fmt(h.get('launch_issue_ms'))} ms"
               f"{per}, stalls {fmt(h.get('stall_ms'))} ms per step (profiled; medians over the steps). A stall is one CPU "
               "op holding the launching thread far longer than issuing takes.")
    body = ""
    if h.get("stalls"):
        rows = [[Html(f"<code>{esc(_clip(op, TABLE_NAME_CHARS))}</code>"), *cells,
                 st.get("cause") or "unknown", st.get("advice") or "—",
                 _source_links(st.get("sources") or [])]
                for st, (op, *cells) in zip(h["stalls"], stall_rows(doc, 8))]
        body += _table(["stall op", "mean ms / step", "per step", "share", "call in step", "cause",
                        "advice", "sources"], rows, num={1, 2, 3}, cls="stalls")
    if h.get("by_op"):
        rows = [[Html(f"<code>{esc(_clip(r['op'], TABLE_NAME_CHARS))}</code>"),
                 fmt(r["ms_per_step"]), fmt(r["gaps_per_step"], "{:.1f}"),
                 fmt(r["median_gap_us"], "{:.1f}"), fmt(r["share"], "{:.0%}")]
                for r in h["by_op"][:10]]
        body += ('<p class="small">Host-bound idle by the CPU op that held the host (top 10):</p>'
                 + _table(["host op", "idle ms / step (mean, every gap it held)", "gaps / step", "median gap µs", "share"], rows,
                          num={1, 2, 3, 4}))
    return _section("Host: launch issue and stalls", body, lead=lead, sid="host")


def _unprofiled(doc: ExplainDoc) -> Html:
    u = doc.get("unprofiled")
    if not u:
        return Html("")
    plain = cast(dict, doc)  # text.py's what-if and unprofiled rows still take a plain dict
    table = unprofiled_rows(plain)
    rows, roles = [cells for _, cells in table], [role for role, _ in table]
    head = unprofiled_lead(plain)
    lead = esc(head[0].upper() + head[1:] + ". GPU work comes from "
               "the trace; the rest of the unprofiled step is launch overhead.")
    what = unprofiled_whatif_text(plain)
    foot = f'<p>{esc(what[0].upper() + what[1:])}.</p>' if what else ""
    note = u.get("model") or u.get("calibration")
    foot += f'<p class="small">Split model: {esc(note)}.</p>' if note else ""
    return _section("The real step (unprofiled)",
                    _table(["", "profiled", "unprofiled"], rows, num={1, 2}, row_class=roles) + foot,
                    lead=lead, sid="unprofiled")


# -- kernels, launches, what-ifs --------------------------------------------------------------
def _kernels(doc: ExplainDoc) -> Html:
    cats = doc.get("kernels_by_category") or []
    if not cats:
        return _section("Kernels", "<p>No GPU ops in the decode steps.</p>", sid="kernels")
    table = category_rows(doc)
    with_bytes = has_bytes(table)  # a byte column only where bytes exist
    rows = []
    for c, (cat, ms, pct, ops, recorded, gbps) in zip(cats, table):
        bar = Html(f'<span class="sharebar"><span style="width:{(c.get("share") or 0) * 100:.1f}%">'
                   f"</span></span>{esc(pct)}")
        rows.append([_swatch(CATEGORY_COLORS.get(c.get("category"), CATEGORY_COLORS["other"]), cat),
                     ms, bar, ops] + ([recorded] if with_bytes else []) + [gbps])
    headers = (["category", "ms / step", "time share", "ops / step"]
               + (["bytes / step (recorded)"] if with_bytes else []) + ["achieved GB/s"])
    cat_table = _table(headers, rows, num=set(range(1, len(headers))), cls="cats")
    note = ('<p class="small">Time is the sum of op durations per decode step (overlapping ops '
            "count twice; GPU busy counts the union). Recorded bytes are those the trace carries "
            "(copies, memsets; copy <em>kernels</em> carry none). Achieved GB/s: the model's "
            "bytes for the category (weights for GEMMs, the KV cache for attention) ÷ its time."
            "</p>")
    return _section("Kernels", f"{cat_table}{note}{_top_table(doc)}", sid="kernels",
                    lead="Where GPU time goes, by kernel category and by kernel.")


def _bytes(b) -> str:
    return fmt_bytes(b or None)  # 0 means no op of the category carries a byte count


def _top_table(doc: ExplainDoc) -> Html:
    top = top_kernel_rows(doc)
    if not top:
        return Html("")
    rows = [[Html(f'<code title="{esc(name)}">{esc(_clip(name, TABLE_NAME_CHARS))}</code>'), kind,
             *cells] for name, kind, _category, *cells in top]
    return Html(f"<h3>Top {len(top)} kernels</h3>" + _table(
        ["kernel", "kind", "ms / step", "calls / step", "median µs"], rows, num={2, 3, 4},
        cls="top"))


def _launches(doc: ExplainDoc) -> Html:
    s = doc.get("summary") or {}
    n, host = s.get("launches"), s.get("launch_host_ms")
    ops = (s.get("kernels") or 0) + (s.get("memcpys") or 0) + (s.get("memsets") or 0)
    rows = [
        ["launch calls per step (runtime + driver + graph)", fmt(n, "{:.0f}")],
        ["of which CUDA-graph launches", fmt(s.get("graph_launches"), "{:.0f}")],
        ["GPU ops per step (kernels + copies + memsets)", fmt(ops, "{:.0f}")],
        ["host time in launch calls (ms per step)", fmt(host)],
        ["host time per launch call (µs)", fmt(host * 1e3 / n if host is not None and n else None,
                                             "{:.2f}")],
        ["host time in launch calls, share of latency", share(host, s.get("latency_ms"))],
        ["CPU time of the step range (ms)", fmt(s.get("cpu_ms"))],
    ]
    return _section("Launches", _table(["per decode step (median)", "value"], rows, num={1}),
                    sid="launches", lead="Launch-side cost: how many calls the host makes and "
                                         "what they cost it.")


def _quantization(doc: ExplainDoc) -> Html | None:
    """``explain --baseline``: the quantized step against the bf16 one."""
    q = doc.get("quantization")
    if not q:
        return None
    table = _table(["", str(q.get("baseline_dtype")), str(q.get("dtype")), "change"],
                   quantization_rows(q), num={1, 2, 3})
    return _section("Quantized step vs baseline", Html(f'{table}<p id="quant-verdict">'
                                                       f'{esc(q.get("verdict") or "—")}</p>'),
                    sid="quantization")


def _whatifs(doc: ExplainDoc) -> Html:
    # text.py's what-if and unprofiled rows still take a plain dict
    return _section("What-ifs", _whatif_table(doc),
                    lead=esc(whatif_basis(cast(dict, doc)).capitalize() + "."), sid="whatif")


def _whatif_table(doc: ExplainDoc) -> Html:
    w = doc.get("whatif") or {}
    # text.py's what-if and unprofiled rows still take a plain dict
    rows = whatif_rows(cast(dict, doc))
    note = f'<p class="small">CUDA Graphs: {esc(w["note"])}.</p>' if w.get("note") else ""
    return Html(_table(["scenario", "ms / step", "speed-up", "model"], rows, num={1, 2}) + note)


def _floor(doc: ExplainDoc) -> Html:
    fl = doc.get("floor") or {}
    if fl.get("floor_ms") is None:
        msg = fl.get("missing") or "the floor could not be computed"
        return _section("Memory floor", f'<div class="callout" id="floor-missing">Not computed: '
                                        f"{esc(msg)}.</div>", sid="floor")
    rows = [["weights read", _bytes(fl.get("weights_bytes"))],
            ["KV cache read", _bytes(fl.get("kv_read_bytes"))],
            ["KV written", _bytes(fl.get("kv_write_bytes"))],
            [Html("<strong>total</strong>"), _bytes(fl.get("bytes"))],
            ["peak bandwidth (GB/s)", fmt(fl.get("peak_gbps"), "{:g}")]]
    for alt, conv, label in ((fl.get("exact"), "exact", "exact"),
                             (fl.get("all_weights"), "all-weights", "all-weights (W + K)")):
        used = " — used here" if conv == fl.get("convention") else ""
        rows.append([f"floor, {label}{used} (ms)",
                     f"{fmt(alt.get('floor_ms') if alt else None)} "
                     f"({_bytes(alt.get('bytes') if alt else None)})"])
    if fl.get("measured_gbps"):
        rows.append([f"floor at measured {fl['measured_gbps']:.0f} GB/s (ms)",
                     fmt(fl.get("measured_floor_ms"))])
    lead = esc(f"Bytes one decode step must move at KV context {fl.get('ctx')} (the median "
               f"step's), {fl.get('convention')} convention, ÷ peak DRAM bandwidth.")
    return _section("Memory floor", _table(["", "value"], rows, num={1}), lead=lead, sid="floor")


# -- capture ----------------------------------------------------------------------------------
def _capture(doc: ExplainDoc) -> Html:
    """How ``tracekit capture`` made the trace, the unprofiled ground truth first."""
    rows = [[k, Html(f"<code>{esc(v)}</code>") if k == "command" else v]
            for k, v in capture_rows(doc) if k != "context"]
    if not rows:
        return Html("")
    mode = ((doc.get("source") or {}).get("capture") or {}).get("mode")
    return _section("Capture", _table(["", "value"], rows, cls="capture"), sid="capture",
                    lead=esc(f"tracekit capture, {mode} mode: the unprofiled step (CUDA events, "
                             "no profiler) is what a user's step really takes."))


# -- environment, definitions, footer ---------------------------------------------------------
def _dl(items: Sequence[tuple[str, object]]) -> Html:
    return Html('<dl class="env">' + "".join(f"<dt>{esc(k)}</dt><dd>{_cell(v)}</dd>"
                                             for k, v in items) + "</dl>")


def _kv(d: dict[str, Any] | None) -> str:
    return ", ".join(f"{k} {json.dumps(v) if isinstance(v, (dict, list)) else v}"
                     for k, v in (d or {}).items()) or "—"


def _environment(doc: ExplainDoc) -> Html:
    g, m, src = doc.get("gpu") or {}, doc.get("model") or {}, doc.get("source") or {}
    arch = g.get("arch")
    devices = "; ".join(
        f"{d.get('name')} ({_bytes(d.get('total_memory_bytes'))}, {d.get('sm_count')} SMs, "
        f"cc {d.get('cc')})" for d in src.get("devices") or [])
    flagged = "; ".join(f"{k}: {', '.join(map(str, v))}" for k, v in
                        (src.get("flagged_steps") or {}).items()) or "none"
    items = [
        ("GPU (trace)", g.get("name")),
        ("datasheet entry", f"{g.get('matched') or '— (no match)'}"
                            f"{', ' + arch if arch else ''}"),
        ("peak bandwidth", f"{fmt(g.get('peak_gbps'), '{:g} GB/s')} ({g.get('peak_source') or '—'})"),
        ("measured copy bandwidth", fmt(g.get("measured_gbps"), "{:.0f} GB/s")),
        ("devices", devices or "—"),
        ("model", _model_line(m)),
        ("trace file", Html(f"<code>{esc(src.get('file'))}</code>")),
        ("format · events", f"{src.get('format')} · {fmt(src.get('events'), '{:,}')}"),
        ("step detection", f"{src.get('detection_method')}: {src.get('detection_detail')}"),
        ("one step", src.get("step_contents") or "—"),
        ("steps", f"{src.get('steps_found')} found, {src.get('decode_steps')} decode; "
                  f"flagged: {flagged}"),
        ("versions", _kv({k: v for k, v in (src.get("versions") or {}).items() if v is not None})),
    ]
    if context_line(doc):
        items.append(("context", context_line(doc)))
    if src.get("skipped_categories"):
        items.append(("skipped event categories", _kv(src["skipped_categories"])))
    items.append(("tracekit", f"{doc.get('tracekit_version')} (schema {doc.get('schema')})"))
    return _section("Environment", _dl(items), sid="environment")


def _model_line(m: Model) -> str:
    if not m.get("name"):
        return "not given (pass --model)"
    n = m.get("params")
    params = f"{n / 1e9:.2f} B params, " if n else ""
    layers = f"{m['layers']} layers, " if m.get("layers") else ""
    return f"{m['name']} ({params}{layers}{m.get('dtype')}; from {m.get('source') or '—'})"


DEFINITIONS = [
    ("decode step", "found by the detection method above (a marker, tracekit's annotations, "
                    "ProfilerStep, a repeating annotation, graph launches, or the kernel-sequence "
                    "period); GPU ops belong to the step whose CPU range launched them."),
    ("latency", "start of the next step's first GPU op − start of this step's first GPU op: the "
                "time a user waits per token. The last step has none."),
    ("GPU busy", "length of the union of the step's GPU op intervals (never the sum: streams "
                 "overlap)."),
    ("idle / launch overhead", "latency − GPU busy, split gap by gap into:"),
    ("  host-bound", "the op's launch call ended after the previous op finished: the GPU waited "
                     "for the CPU."),
    ("  launch latency", "the op was already queued; the gap is the device's own inter-kernel "
                         "latency."),
    ("  sync", "the gap overlaps a host synchronization or follows a device→host copy."),
    ("  other", "no launch record to tell (e.g. launched outside the profiled window)."),
    ("memory floor", "bytes the step must move ÷ peak DRAM bandwidth. exact: every layer weight, "
                     "one embedding row, lm_head in full, KV read at the step's context, one "
                     "token's K/V written. all-weights: the study's (W + K). Datasheet peak unless "
                     "a bandwidth was given."),
    ("kernel excess", "GPU busy − floor: kernels slower than streaming their bytes. Negative "
                      "means the floor is wrong (model, context, GPU or dtype)."),
    ("R_floor", "floor ÷ latency: the fraction of the memory floor achieved."),
    ("summary", "medians over decode steps; the median idle of each class is scaled so that "
                "floor + kernel excess + launch overhead equals the median latency exactly."),
    ("CUDA Graphs what-if", "GPU busy + GPU ops × the per-op gap a graph replay leaves "
                            "(calibrated from a graph trace, else a measured per-architecture "
                            "default)."),
    ("at-the-floor what-if", "latency ÷ floor: the most any kernel or launch work can buy."),
    ("host attribution", "for each host-bound gap, the innermost CPU op on the launching thread "
                         "that covers at least half of it."),
    ("  launch issue", "host-bound idle of the host issuing op after op (framework dispatch + "
                       "launch calls)."),
    ("  stall", "one CPU op holding ≥ 20× the step's median launch-to-launch interval and "
                "≥ 200 µs of host-bound idle; matched against known causes."),
    ("unprofiled step", "the latency measured without the profiler; floor and kernel excess from "
                        "the trace, launch overhead the rest; its issue/stall split is an "
                        "estimate (a per-recorded-event profiler cost)."),
]


def _definitions(doc: ExplainDoc) -> Html:
    items = "".join(
        f'<dt class="{"sub" if k.startswith("  ") else ""}">{esc(k.strip())}</dt><dd>{esc(v)}</dd>'
        for k, v in DEFINITIONS)
    return _section("Definitions", f'<dl class="defs">{items}</dl>', sid="definitions")


def _footer(doc: ExplainDoc) -> Html:
    return Html(f"<footer>Generated by tracekit {esc(doc.get('tracekit_version'))} · schema "
                f"{esc(doc.get('schema'))} · the JSON document is embedded in this file "
                "(<code>#tracekit-doc</code>).</footer>")



# -- for notebooks and the Python API ---------------------------------------------------------
def figures(doc: ExplainDoc, timeline: dict | None = None) -> dict[str, go.Figure]:
    """The report's plotly figures by name (``waterfall``, ``steps``, ``timeline``), for a
    notebook; a figure with nothing to draw is left out. They are the page's figures, validated
    into ``graph_objects``."""
    out: dict[str, Figure] = {}
    if (doc.get("decomposition") or {}).get("latency_ms") is not None:
        out["waterfall"] = _waterfall(doc)
    shown = [r for r in doc.get("steps") or [] if r.get("kind") == "decode"
             and r.get("latency_ms") is not None and r.get("gpu_busy_ms") is not None]
    if shown:
        out["steps"] = _step_bars(shown)
    if timeline and timeline.get("ops"):
        out["timeline"] = _timeline_fig(timeline)
    return {name: go.Figure(fig) for name, fig in out.items()}


def render_compact(doc: ExplainDoc) -> Html:
    """The compact report a notebook cell shows for an Explanation: verdict, key numbers, the
    decomposition and the what-ifs (no plotly.js, no figures: ``figures()`` has those)."""
    dec = doc.get("decomposition") or {}
    lat = dec.get("latency_ms")
    parts: list[str] = [
        Html(f'<div class="eyebrow">tracekit · {esc(_subject(doc))}</div>'), _verdict(doc),
        _kpis(doc), _warnings(doc)]
    if lat is not None:
        parts.append(Html("<h3>Where each step's time goes</h3>") + _decomposition_table(doc))
    parts.append(Html("<h3>What-ifs</h3>") + _whatif_table(doc))
    return Html(f'<div class="tracekit-compact"><style>{COMPACT_CSS}</style>{"".join(parts)}'
                "</div>")


COMPACT_CSS = """
.tracekit-compact{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;
  color:#1a202c;max-width:1100px}
.tracekit-compact .eyebrow{font-size:11px;letter-spacing:.08em;text-transform:uppercase;
  color:#5f6b7a;font-weight:650}
.tracekit-compact .verdict{margin:8px 0 12px;border-left:5px solid #1f4e8c;padding:6px 14px;
  background:#f7f9fc}
.tracekit-compact .verdict p{font-size:16px;margin:2px 0;font-weight:550}
.tracekit-compact .verdict .eyebrow{display:none}
.tracekit-compact .kpis{display:grid;grid-template-columns:repeat(6,minmax(0,1fr));gap:8px}
.tracekit-compact .kpi{border:1px solid #e3e8ee;border-radius:8px;padding:8px 10px}
.tracekit-compact .kpi .label{font-size:11px;color:#5f6b7a;text-transform:uppercase}
.tracekit-compact .kpi .value{font-size:18px;font-weight:700}
.tracekit-compact .kpi .note{font-size:12px;color:#5f6b7a}
.tracekit-compact h3{font-size:14px;margin:14px 0 4px}
.tracekit-compact table{border-collapse:collapse;font-size:13px}
.tracekit-compact th,.tracekit-compact td{padding:3px 10px;border-bottom:1px solid #e3e8ee;
  text-align:left}
.tracekit-compact .num{text-align:right;font-variant-numeric:tabular-nums}
.tracekit-compact tr.sub td:first-child{padding-left:24px}
.tracekit-compact tr.total td{font-weight:700}
.tracekit-compact .swatch{display:inline-block;width:10px;height:10px;border-radius:2px;
  margin-right:6px}
.tracekit-compact .callout{background:#fffaeb;border:1px solid #f5d88a;padding:6px 12px;
  margin-top:8px}
"""

CSS = """
:root{--ink:#1a202c;--muted:#5f6b7a;--line:#e3e8ee;--bg:#f4f6f9;--accent:#1f4e8c}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);
  font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1280px;margin:0 auto;padding:28px 28px 40px}
.eyebrow{font-size:11.5px;letter-spacing:.09em;text-transform:uppercase;color:var(--muted);
  font-weight:650}
h1{font-size:28px;line-height:1.2;margin:6px 0 4px;font-weight:700}
h2{font-size:19px;margin:0 0 2px;font-weight:650}
h3{font-size:15px;margin:22px 0 8px;font-weight:650}
.sub{color:var(--muted);margin:0;font-size:14px;word-break:break-all}
.verdict{margin:20px 0 16px;background:#fff;border:1px solid var(--line);
  border-left:6px solid var(--accent);border-radius:10px;padding:16px 22px}
.verdict p{font-size:20px;line-height:1.45;margin:4px 0 0;font-weight:550}
.kpis{display:grid;grid-template-columns:repeat(6,minmax(0,1fr));gap:12px}
.kpi{background:#fff;border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.kpi .label{font-size:11.5px;color:var(--muted);text-transform:uppercase;letter-spacing:.06em;
  font-weight:600}
.kpi .value{font-size:23px;font-weight:700;font-variant-numeric:tabular-nums;margin-top:2px}
.kpi .note{font-size:12.5px;color:var(--muted);line-height:1.35}
section.card{background:#fff;border:1px solid var(--line);border-radius:10px;
  padding:20px 24px;margin-top:18px}
.lead{color:var(--muted);margin:0 0 12px;font-size:14px}
.small{color:var(--muted);font-size:12.5px;margin:8px 0 0}
.grid2{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:28px;align-items:start}
table{border-collapse:collapse;width:100%;font-size:14px}
th{text-align:left;font-weight:650;color:var(--muted);font-size:12.5px;
  border-bottom:2px solid var(--line);padding:6px 10px}
td{padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.sub td:first-child{padding-left:28px;color:#3d4757}
tr.total td{font-weight:700;border-top:2px solid var(--ink);border-bottom:none}
.swatch{display:inline-block;width:11px;height:11px;border-radius:3px;margin-right:8px;
  vertical-align:-1px}
.sharebar{display:inline-block;width:70px;height:8px;background:#edf1f5;border-radius:4px;
  margin-right:8px;vertical-align:1px;overflow:hidden;text-align:left}
.sharebar span{display:block;height:100%;background:var(--accent)}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;
  font-size:12.5px}
table.top td:first-child{word-break:break-all}
/* the stall table: fixed column shares, so that a long op name or URL wraps inside its cell and
   the cause and advice keep room for a sentence (at 1280 px and up the card is ~1180 px wide) */
table.stalls{table-layout:fixed}
table.stalls th:nth-child(1){width:17%}
table.stalls th:nth-child(2),table.stalls th:nth-child(3),table.stalls th:nth-child(4){width:7%}
table.stalls th:nth-child(5){width:8%}
table.stalls th:nth-child(6){width:20%}
table.stalls th:nth-child(7){width:16%}
table.stalls th:nth-child(8){width:18%}
table.stalls td{overflow-wrap:anywhere}
table.stalls .num{white-space:normal}
ul.sources{margin:0;padding-left:16px;font-size:12.5px}
ul.sources li{margin:0 0 3px}
.callout{background:#fffaeb;border:1px solid #f5d88a;border-radius:8px;padding:12px 16px}
.warn{margin-top:16px}
.warn ul{margin:6px 0 0;padding-left:20px}
dl.env,dl.defs{display:grid;grid-template-columns:230px minmax(0,1fr);gap:7px 18px;margin:0;
  font-size:14px}
dt{color:var(--muted);font-weight:600}
dt.sub{padding-left:18px;font-weight:500}
dd{margin:0;word-break:break-word}
footer{color:var(--muted);font-size:12.5px;margin-top:26px;text-align:center}
@media (max-width:1000px){.kpis{grid-template-columns:repeat(3,minmax(0,1fr))}
  .grid2{grid-template-columns:1fr}}
@media print{body{background:#fff}section.card,.kpi,.verdict{break-inside:avoid}}
"""
