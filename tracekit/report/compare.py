"""Render a comparison (``Comparison.to_dict()``, schema tracekit.compare/1): terminal, Markdown.

Renders only: every number comes from the document. Strings from the traces (file names, GPU and
model names, modes, warnings) are untrusted and handled as the explain renderers handle them:
first :func:`tracekit.report.safe.clean` (every control or bidi character becomes a visible
escape), then the medium's own escaping — rich markup for the terminal,
:func:`tracekit.report.markdown.md_text` for Markdown. The HTML page is
:mod:`tracekit.report.compare_html`.

    $ tracekit compare eager.json.gz graphs.json.gz --markdown ab.md
"""

from __future__ import annotations

from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from tracekit.contract import CompareDoc, CompareSide, Term
from tracekit.report.console import report_console
from tracekit.report.markdown import md_text
from tracekit.report.safe import clean
from tracekit.report.text import fmt

#: the rows of the terms table, in order; groups the document has but this list lacks still print
TERM_GROUPS = ("decomposition", "launch_overhead", "host", "unprofiled", "gpu", "counts",
               "categories")
COUNT_TERMS = {"kernels", "launches", "graph_launches"}


def _fmt_term(key: str, v) -> str:
    if v is None:
        return "—"
    if key in COUNT_TERMS:
        return f"{v:.0f}"
    if key == "r_floor":
        return f"{v:.1%}"
    return f"{v:.3f}"


def _delta(key: str, v) -> str:
    if v is None:
        return "—"
    if key in COUNT_TERMS:
        return f"{v:+.0f}"
    if key == "r_floor":
        return f"{v * 100:+.1f} pt"
    return f"{v:+.3f}"


def _ci(doc: CompareDoc) -> str:
    ci = doc.get("ci95")
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "—"


def _side_line(s: CompareSide) -> str:
    bits = [s.get("model") or "model ?", f"ctx {s['ctx']}" if s.get("ctx") is not None else None,
            s.get("mode"), s.get("attention"), s.get("dtype"), s.get("gpu")]
    return ", ".join(str(b) for b in bits if b)


def _files(s: CompareSide) -> str:
    f = s["files"]
    return f[0] if len(f) == 1 else f"{f[0]} (+{len(f) - 1} more)"


def ordered_terms(doc: CompareDoc) -> list[tuple[str, Term]]:
    t = doc.get("terms") or {}
    groups = list(TERM_GROUPS) + [g for g in {v["group"] for v in t.values()} if g not in TERM_GROUPS]
    return [(k, v) for g in groups for k, v in t.items() if v["group"] == g]


def term_rows(doc: CompareDoc) -> list[tuple[str, list[str]]]:
    """The what-moved table: (role, [term, A, B, B − A]) rows, a gap class as a "sub" row of the
    launch overhead (the roles of report.text's tables)."""
    return [("sub" if v["group"] == "launch_overhead" else "",
             [str(v["label"]), _fmt_term(k, v["a"]), _fmt_term(k, v["b"]), _delta(k, v["delta"])])
            for k, v in ordered_terms(doc)]


def side_cells(s: CompareSide) -> dict[str, str]:
    """One side's latency row, by column: label, trace, setup, latency, ci, p10_p90, sessions,
    steps, tokens_s, session_medians; each renderer draws the columns it has room for."""
    ci = s.get("latency_ci95_ms")
    return {"label": str(s["label"]), "trace": _files(s), "setup": _side_line(s),
            "latency": fmt(s["latency_ms"]), "ci": f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "—",
            "p10_p90": (f"{fmt(s['p10_ms'])}–{fmt(s['p90_ms'])}" if s.get("p10_ms") is not None
                        else "—"),
            "sessions": str(s["sessions"]), "steps": str(s["steps"]),
            "tokens_s": fmt(s.get("tokens_per_s"), "{:.1f}"),
            "session_medians": ", ".join(f"{m:.3f}" for m in s.get("session_medians_ms") or [])}


# -- terminal -----------------------------------------------------------------------------------
def render_terminal(doc: CompareDoc, console: Console | None = None) -> None:
    """Print the comparison: the speed-up with its interval, both sides, the term deltas."""
    group = _group(clean(doc))  # no control or bidi character from a trace
    report_console([group], console).print(group)


def _group(doc: CompareDoc) -> Group:
    a, b = doc["a"], doc["b"]
    head = Table.grid(padding=(0, 1))
    head.add_column(style="bold")
    head.add_column()
    for s in (a, b):
        head.add_row(escape(s["label"]), escape(f"{_files(s)}  ({_side_line(s)})"))
    lat = Table(title="Step latency (ms)", title_justify="left")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("side", "left"), ("latency", "right"), ("95% CI", "right"), ("p10–p90", "right"),
        ("sessions", "right"), ("steps", "right"), ("tokens/s", "right"))
    for col, j in columns:
        lat.add_column(col, justify=j)
    for s in (a, b):
        c = side_cells(s)
        lat.add_row(*[escape(c[k]) for k in ("label", "latency", "ci", "p10_p90", "sessions", "steps",
                                             "tokens_s")])
    src = doc["latency_source"]
    speed = (f"[bold]speed-up B vs A: {doc['speedup']:.3f}×[/]  95% CI {_ci(doc)}  "
             f"(basis: {doc['basis']}, n_a={doc['n_a']}, n_b={doc['n_b']}, "
             f"{'unprofiled' if src == 'unprofiled' else '[bold red]PROFILED[/]'} latency; "
             f"{escape(doc['statistic'])})")
    terms = Table(title="What moved (per step; profiled trace of each side)", title_justify="left")
    for col in ("term", "A", "B", "B − A"):
        terms.add_column(col, justify="left" if col == "term" else "right")
    for role, (label, *cells) in term_rows(doc):
        terms.add_row(escape(f"  {label}" if role == "sub" else label), *cells)
    parts: list[RenderableType] = [
        Panel(escape(doc["verdict"]), title="compare", border_style="cyan"), head, speed, lat]
    if doc.get("terms"):
        parts.append(terms)
    if doc.get("warnings"):
        parts.append("[yellow]" + "\n".join("warning: " + escape(w) for w in doc["warnings"]) + "[/]")
    return Group(*parts)


# -- Markdown -----------------------------------------------------------------------------------
def md_escape(value: object) -> str:
    """Text safe inside a Markdown table cell: no pipes, no newlines, no HTML, no backticks.

    The analyses' tables (``analyses/_common.py``) use it; reports from traces use
    :func:`tracekit.report.markdown.md_text` after :func:`tracekit.report.safe.clean`."""
    s = "—" if value is None else str(value)
    for a, b in (("\\", "\\\\"), ("|", "\\|"), ("`", "'"), ("<", "&lt;"), (">", "&gt;"),
                 ("\r", " "), ("\n", " "), ("*", "\\*"), ("_", "\\_"), ("[", "\\["), ("]", "\\]")):
        s = s.replace(a, b)
    return s


def render_markdown(doc: CompareDoc) -> str:
    """A Markdown summary to paste into an issue or a pull request."""
    doc = clean(doc)  # no control or bidi character from a trace reaches the reader
    a, b = doc["a"], doc["b"]
    src = doc["latency_source"]
    lines = [
        "## tracekit compare", "",
        f"**{md_text(doc['verdict'])}**", "",
        f"Speed-up of B over A: **{doc['speedup']:.3f}×**, 95% CI {_ci(doc)} (bootstrap over "
        f"{doc['basis']}: n_a = {doc['n_a']}, n_b = {doc['n_b']}; "
        f"{'unprofiled' if src == 'unprofiled' else '**profiled**'} latency; "
        f"{md_text(doc['statistic'])}).", "",
        "| side | trace | setup | latency ms | 95% CI | p10–p90 ms | sessions | steps |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for s in (a, b):
        c = side_cells(s)
        lines.append("| " + " | ".join(md_text(c[k]) for k in (
            "label", "trace", "setup", "latency", "ci", "p10_p90", "sessions", "steps")) + " |")
    if doc.get("terms"):
        lines += ["", "What moved, per step (from each side's profiled trace):", "",
                  "| term | A | B | B − A |", "|---|---:|---:|---:|"]
        for role, (label, *cells) in term_rows(doc):
            label = ("&nbsp;&nbsp;" if role == "sub" else "") + md_text(label)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if doc.get("warnings"):
        lines += ["", "Warnings:", ""] + [f"- {md_text(w, line_start=True)}"
                                          for w in doc["warnings"]]
    lines += ["", f"<sub>tracekit {md_text(doc.get('tracekit_version'))} · schema "
                  f"{doc['schema']} · {doc['bootstrap']['method']} bootstrap, "
                  f"{doc['bootstrap']['resamples']} resamples, seed {doc['bootstrap']['seed']}</sub>",
              ""]
    return "\n".join(lines)
