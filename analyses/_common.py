"""What the analysis scripts share: reading the results table, naming GPUs, escaping, formatting.

Outputs must be byte-for-byte reproducible from the committed table (tests/test_analyses.py
re-runs every script and compares), so nothing here depends on the clock, the machine, a random
seed other than the bootstrap's fixed one, or a plotting library's version: tables are written as
text and the figure as hand-assembled SVG.
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import polars as pl  # noqa: E402

from tracekit.fileio import atomic_write_text  # noqa: E402
from tracekit.report.compare import md_escape  # noqa: E402
from tracekit.specs.gpus import match_gpu  # noqa: E402

RESULTS = ROOT / "analyses" / "results"


def args(description: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--results", type=Path, default=RESULTS / "study.parquet",
                    help="the results table (default: analyses/results/study.parquet)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="output folder")
    return ap.parse_args()


def load(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise SystemExit(f"Error: {path} does not exist: run analyses/collect.py first")
    return pl.read_parquet(path)


def gpu_label(device_name: str | None) -> str:
    """The datasheet name (``H100 SXM5``) of a device name, else the device name itself."""
    spec = match_gpu(device_name)
    return spec.name if spec else str(device_name)


def peak(device_name: str | None) -> float | None:
    spec = match_gpu(device_name)
    return float(spec.peak_gbps) if spec else None


def f(v, fmt: str = "{:.2f}") -> str:
    return "—" if v is None else fmt.format(v)


def pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f}%"


def esc(v) -> str:
    return html.escape("—" if v is None else str(v), quote=True)


def md(v) -> str:
    return md_escape(v)


def write(out: Path, name: str, text: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(out / name, text)


def md_table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" if i in right else "---" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(md(c) for c in r) + " |" for r in rows]
    return lines


def html_table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    def cell(tag, i, v):
        cls = ' class="num"' if i in right else ""
        return f"<{tag}{cls}>{esc(v)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>"
                   for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


PAGE_CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;
color:#2d3748;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{padding:4px 10px;
border-bottom:1px solid #e2e8f0;text-align:left}td.num,th.num{text-align:right;
font-variant-numeric:tabular-nums}h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}
.note{color:#4a5568;font-size:14px}"""


def page(title: str, body: str) -> str:
    return ("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{PAGE_CSS}</style>\n</head>\n<body>\n"
            f"{body}\n</body>\n</html>\n")
