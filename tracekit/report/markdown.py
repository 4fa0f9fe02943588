"""Render an explanation as Markdown to paste into a GitHub issue.

The verdict comes first, then the decomposition (floor + kernel excess + launch overhead =
latency), the per-step summary, the what-ifs, the kernel categories, the top kernels, the
environment and the conventions behind the numbers. It renders only: every number is read from
``Explanation.to_dict()``; shares (value ÷ latency) are the only arithmetic.

Nothing from the trace is trusted. Kernel names go into code spans (a fence longer than any
backtick run inside, ``|`` escaped so tables hold); other trace strings have every
Markdown-significant character backslash-escaped, so nothing renders as HTML, a link, a mention
or emphasis.

    $ tracekit explain --sample --markdown summary.md
"""

from __future__ import annotations

import re
from typing import cast

from tracekit.contract import ExplainDoc
from tracekit.report.safe import clean
from tracekit.report.text import (
    capture_rows,
    category_rows,
    context_line,
    decomposition_rows,
    fmt,
    gpu_label,
    has_bytes,
    quantization_rows,
    stall_rows,
    step_summary_rows,
    top_kernel_rows,
    unprofiled_lead,
    unprofiled_rows,
    unprofiled_whatif_text,
    whatif_basis,
    whatif_rows,
)

#: characters that start Markdown/GFM syntax anywhere in a line (``_`` is handled separately:
#: GFM never opens emphasis inside a word, so ``R_floor`` stays readable)
_SPECIAL = re.compile(r"([\\`*\[\]<>|~&#$@!{}])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_LINE_START = re.compile(r"^(\s*)([-+=>]|\d+(?=[.)]))")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")
KERNEL_NAME_CHARS = 120


def md_text(value: object, *, line_start: bool = False) -> str:
    """Plain text with Markdown syntax escaped, on one line (safe in a table cell).

    ``line_start``: the text begins a line or a list item, where "-", "+", "=", ">" or "1." would
    start a block of their own.
    """
    s = _CONTROL.sub(" ", str(value))
    s = _SPECIAL.sub(lambda m: "\\" + m.group(0), s)
    m = _LINE_START.match(s) if line_start else None
    if m:
        lead, tok = m.group(1), m.group(2)
        s = lead + (tok + "\\" if tok[0].isdigit() else "\\" + tok) + s[m.end():]
    return s


def md_code(value: object, *, table: bool = False, limit: int | None = None) -> str:
    """A code span holding ``value`` verbatim (truncated to ``limit`` characters with "…")."""
    s = _CONTROL.sub(" ", str(value))
    if not s:
        return "—"
    if limit is not None and len(s) > limit:
        s = s[: limit - 1] + "…"
    runs = [len(r) for r in re.findall(r"`+", s)]
    fence = "`" * (max(runs, default=0) + 1)
    # one space each side is stripped by the parser; needed when s starts/ends with a backtick
    pad = " " if s[:1] == "`" or s[-1:] == "`" or (s[:1] == " " and s[-1:] == " ") else ""
    if table:  # GFM splits cells before parsing code spans; "\|" is a literal "|" inside them
        s = s.replace("|", "\\|")
    return f"{fence}{pad}{s}{pad}{fence}"


def _table(headers: list[str], rows: list[list[str]], align: str) -> list[str]:
    """A GFM table; ``align`` holds one of l/r per column. Cells must already be escaped."""
    sep = {"l": "---", "r": "---:"}
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(sep[a] for a in align) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


# -- sections ---------------------------------------------------------------------------------
def render_markdown(doc: ExplainDoc) -> str:
    """The Markdown summary of an ``Explanation.to_dict()`` document."""
    doc = clean(doc)  # no control or bidi character from the trace reaches the reader
    parts = [
        _title(doc), _verdict(doc), _context(doc), _decomposition(doc), _quantization(doc),
        _host(doc), _unprofiled(doc), _per_step(doc),
        _whatifs(doc), _categories(doc), _top_kernels(doc), _capture(doc), _environment(doc),
        _conventions(doc), _warnings(doc),
    ]
    return "\n\n".join("\n".join(p) for p in parts if p) + "\n"


def _title(doc: ExplainDoc) -> list[str]:
    model = (doc.get("model") or {}).get("name")
    gpu = (doc.get("gpu") or {}).get("name") or (doc.get("source") or {}).get("gpu")
    what = " on ".join(md_text(x) for x in (model, gpu) if x) or "decode trace"
    return [f"### tracekit: {what}"]


def _verdict(doc: ExplainDoc) -> list[str]:
    return [f"> **{md_text(doc.get('verdict') or '—')}**"]


def _context(doc: ExplainDoc) -> list[str]:
    line = context_line(doc)
    return [f"Context: {md_text(line)}."] if line else []


def _quantization(doc: ExplainDoc) -> list[str]:
    """``explain --baseline``: the quantized step against the bf16 one (tracekit.quantized)."""
    q = doc.get("quantization")
    if not q:
        return []
    a, b = md_text(q.get("baseline_dtype")), md_text(q.get("dtype"))
    rows = [[md_text(c) for c in r] for r in quantization_rows(q)]
    return [f"**Quantized step vs baseline** — {b} against {a}", "",
            *_table(["", a, b, "change"], rows, "lrrr"), "", md_text(q.get("verdict") or "")]


def _capture(doc: ExplainDoc) -> list[str]:
    """How the trace was captured, with the unprofiled ground truth first."""
    rows = [[md_text(k), md_code(v, table=True) if k == "command" else md_text(v)]
            for k, v in capture_rows(doc) if k != "context"]
    if not rows:
        return []
    return ["**Capture** — `tracekit capture`", "", *_table(["", "value"], rows, "ll")]


def _md_row(role: str, cells: list[str]) -> list[str]:
    """A view-model row in Markdown: a part indented under its term, a total in bold."""
    label, *rest = cells
    if role == "sub":
        return [f"&nbsp;&nbsp;↳ {md_text(label)}", *rest]
    if role == "total":
        return [f"**{c}**" if c != "—" else c for c in (md_text(label), *rest)]
    return [md_text(label), *rest]


def _decomposition(doc: ExplainDoc) -> list[str]:
    dec = doc.get("decomposition") or {}
    head = (f"**Decomposition** — {md_text(dec.get('basis', 'medians over decode steps'))}, "
            f"`{md_text(dec.get('convention', '—'))}` byte convention")
    rows = [_md_row(role, cells) for role, cells in decomposition_rows(doc)]
    out = [head, "", *_table(["term", "ms", "share"], rows, "lrr")] if rows else [
        head, "", "No step latency to decompose."]
    missing = (doc.get("floor") or {}).get("missing")
    if missing:
        out += ["", f"Memory floor not computed: {md_text(missing)}."]
    elif dec.get("r_floor") is not None:
        out += ["", _floor_line(doc)]
    return out


def _floor_line(doc: ExplainDoc) -> str:
    dec, fl = doc["decomposition"], doc.get("floor") or {}
    gb = fl.get("bytes")
    bits = [f"R_floor {fmt(dec.get('r_floor'), '{:.1%}')}"
            f" (all-weights {fmt(dec.get('r_floor_all_weights'), '{:.1%}')})"]
    if gb is not None:
        bits.append(f"{gb / 1e9:.2f} GB per step at KV context {fmt(fl.get('ctx'), '{}')}")
    bits.append(f"achieved {fmt(dec.get('achieved_gbps_latency'), '{:.0f}')} GB/s over the step, "
                f"{fmt(dec.get('achieved_gbps_busy'), '{:.0f}')} GB/s while busy")
    return " · ".join(bits)


def _host(doc: ExplainDoc) -> list[str]:
    """Launch issue vs stalls, and the stalls with their cause and advice."""
    h = doc.get("host")
    if not h:
        return []
    per = (f" ({fmt(h.get('us_per_launch'), '{:.1f}')} µs of host time per launch)"
           if h.get("us_per_launch") else "")
    out = [f"**Host** — while the GPU waited: launch issue {fmt(h.get('launch_issue_ms'))} ms{per}, "
           f"stalls {fmt(h.get('stall_ms'))} ms per step (profiled; medians over the steps)"]
    rows = [[md_code(op, table=True, limit=KERNEL_NAME_CHARS), *cells,
             md_text(st.get("cause") or "unknown"), md_text(st.get("advice") or "—")]
            for st, (op, *cells) in zip(h.get("stalls") or [], stall_rows(doc, 5))]
    if rows:
        out += ["", *_table(["stall op", "mean ms/step", "per step", "share", "call in step", "cause",
                             "advice"], rows, "lrrrrll")]
    return out


def _unprofiled(doc: ExplainDoc) -> list[str]:
    """Profiled vs unprofiled latency and the unprofiled decomposition."""
    u = doc.get("unprofiled")
    if not u:
        return []
    head = f"**The real step** — {md_text(unprofiled_lead(cast(dict, doc)))}"
    # text.py's what-if and unprofiled rows still take a plain dict
    rows = [_md_row(role, cells) for role, cells in unprofiled_rows(cast(dict, doc))]
    out = [head, "", *_table(["term", "profiled ms", "unprofiled ms"], rows, "lrr")]
    what = unprofiled_whatif_text(cast(dict, doc))
    if what:
        out += ["", md_text(what[0].upper() + what[1:]) + "."]
    note = u.get("model") or u.get("calibration")
    if note:
        out += ["", f"Split model: {md_text(note)}."]
    return out


def _per_step(doc: ExplainDoc) -> list[str]:
    s, src = doc.get("summary") or {}, doc.get("source") or {}
    rows = step_summary_rows(doc)
    head = (f"**Per decode step** — median and min–max over {fmt(s.get('steps_with_latency'), '{}')}"
            f" timed of {fmt(src.get('decode_steps'), '{}')} decode steps "
            f"({fmt(src.get('steps_found'), '{}')} found by {md_text(src.get('detection_method'))})")
    return [head, "", *_table(["metric", "median", "min–max"], rows, "lrr")]


def _whatifs(doc: ExplainDoc) -> list[str]:
    w = doc.get("whatif") or {}
    # text.py's what-if and unprofiled rows still take a plain dict
    rows = [[*cells, md_text(model)] for *cells, model in whatif_rows(cast(dict, doc))]
    out = [f"**What-ifs** — {whatif_basis(cast(dict, doc))}", "",
           *_table(["scenario", "ms/step", "speed-up", "model"], rows, "lrrl")]
    if w.get("note"):
        out += ["", f"CUDA Graphs what-if: {md_text(w['note'])}."]
    return out


def _categories(doc: ExplainDoc) -> list[str]:
    rows = category_rows(doc)
    if not rows:
        return []
    headers, align = ["category", "ms", "share", "ops"], "lrrr"
    if has_bytes(rows):  # a byte column only where the trace has bytes
        headers, align = headers + ["bytes / step (recorded)"], align + "l"
    return ["**Kernel categories** — per decode step (sum of op durations)", "",
            *_table(headers, [[md_text(c) for c in r[:len(headers)]] for r in rows], align)]


def _top_kernels(doc: ExplainDoc, n: int = 5) -> list[str]:
    top = top_kernel_rows(doc, n)
    if not top:
        return []
    rows = [[md_code(name, table=True, limit=KERNEL_NAME_CHARS), *cells]
            for name, _kind, _category, *cells in top]
    return [f"**Top {len(top)} kernels** — per decode step", "",
            *_table(["kernel", "ms/step", "calls/step", "median µs"], rows, "lrrr")]


def _environment(doc: ExplainDoc) -> list[str]:
    g, m, src = doc.get("gpu") or {}, doc.get("model") or {}, doc.get("source") or {}
    gpu = md_text(gpu_label(doc))
    if g.get("matched"):
        gpu += (f" — datasheet entry `{md_text(g['matched'])}`"
                f"{' (' + md_text(g['arch']) + ')' if g.get('arch') else ''}")
    if g.get("peak_gbps") is not None:
        gpu += f", peak {g['peak_gbps']:g} GB/s ({md_text(g.get('peak_source') or '—')})"
    if g.get("measured_gbps") is not None:
        gpu += f", measured copy {g['measured_gbps']:.0f} GB/s"
    out = ["**Environment**", "", f"- GPU: {gpu}"]
    if m.get("name"):
        n = m.get("params")
        params = f"{n / 1e9:.2f} B params, " if n else ""
        out.append(f"- model: {md_text(m['name'])} ({params}{md_text(m.get('dtype'))}; "
                   f"from {md_text(m.get('source') or '—')})")
    else:
        out.append("- model: not given")
    versions = ", ".join(f"{md_text(k)} {md_text(v)}" for k, v in (src.get("versions") or {}).items()
                         if v is not None)
    out.append(f"- versions: {versions or '—'}; tracekit {md_text(doc.get('tracekit_version'))}")
    out.append(f"- steps: {md_text(src.get('detection_method'))} — {md_text(src.get('detection_detail'))}")
    if src.get("step_contents"):
        out.append(f"- {md_text(src['step_contents'])}")
    flagged = src.get("flagged_steps") or {}
    if flagged:
        out.append("- flagged steps (not decode): " + "; ".join(
            f"{md_text(k)} {', '.join(str(i) for i in v)}" for k, v in flagged.items()))
    out.append(f"- file: {md_code(src.get('file'))} ({md_text(src.get('format'))})")
    return out


def _conventions(doc: ExplainDoc) -> list[str]:
    dec, fl = doc.get("decomposition") or {}, doc.get("floor") or {}
    conv = fl.get("convention") or dec.get("convention")
    desc = {"exact": "every layer weight, one embedding row, lm_head in full, KV read at the step's "
                     "context, one token's K/V written",
            "all-weights": "the study's (W + K): all weight bytes plus the KV cache"}.get(conv, "")
    return [f"*Conventions: {md_text(dec.get('basis', 'medians over decode steps'))}; "
            f"latency = next step's first GPU op − this step's first GPU op; "
            f"floor = bytes ÷ datasheet peak bandwidth, `{md_text(conv)}` bytes"
            f"{' (' + md_text(desc) + ')' if desc else ''}; R_floor = floor ÷ latency. "
            f"Schema {md_text(doc.get('schema'))}.*"]


def _warnings(doc: ExplainDoc) -> list[str]:
    ws = doc.get("warnings") or []
    return ["**Warnings**", "", *[f"- {md_text(w, line_start=True)}" for w in ws]] if ws else []
