"""The reports tell one story in every medium: the context lengths, the capture's unprofiled
ground truth, integer counts, bytes only where the trace has them, the calibration of each
what-if; and the terminal layout holds in a real 80- and 120-column pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from helpers import stdlib_trace
from rich.cells import cell_len

import tracekit

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_traces"
GRAPHS = SAMPLES / "plain_qwen2.5-7b_ctx2048_graph_eager_kernels.json.gz"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def in_pty(args: list[str], columns: int) -> str:
    """Run the CLI with stdout and stderr on a pseudo-terminal ``columns`` wide; its text."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(PYTHONPATH=str(ROOT), TERM="xterm-256color")
    p = subprocess.Popen([sys.executable, "-m", "tracekit", *args], stdin=slave, stdout=slave,
                         stderr=slave, env=env, close_fds=True)
    os.close(slave)
    out = b""
    while True:
        r, _, _ = select.select([master], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    p.wait(timeout=60)
    os.close(master)
    assert p.returncode == 0, out.decode(errors="replace")[-2000:]
    return ANSI.sub("", out.decode()).replace("\r\n", "\n")


@pytest.fixture(scope="module")
def sample():
    return tracekit.explain(tracekit.sample_path())


@pytest.mark.parametrize("columns", [80, 120])
def test_terminal_layout_holds_in_a_real_terminal(columns):
    text = in_pty(["explain", "--sample", "--graph-trace", str(GRAPHS)], columns)
    lines = text.splitlines()
    assert max(cell_len(x) for x in lines) <= columns
    # headings are lines of their own, never wrapped
    for heading in ("Per decode step (median, min–max)", "What-ifs", "Top 8 kernels (per decode step)",
                    "Decomposition (medians over decode steps, exact bytes)", "Capture (eager)"):
        assert heading in lines, heading
    assert "kineto trace · GPU: NVIDIA H100 80GB HBM3" in lines
    # every table keeps its shape: all lines of one box are equally wide
    boxes, cur = [], []
    for x in lines:
        if x.startswith(("┏", "┃", "┡", "│", "└")):
            cur.append(cell_len(x.rstrip()))
        elif cur:
            boxes.append(cur)
            cur = []
    assert len(boxes) >= 5 and all(len(set(b)) == 1 for b in boxes)
    # one line per top kernel, the cut marked with "…"
    top = text[text.index("Top 8 kernels"):text.index("╭")]  # up to the verdict panel
    assert sum(1 for x in top.splitlines() if x.startswith("│")) == 8
    # the calibration of the CUDA-Graphs what-if sits in its row: the graph trace's file name
    whatifs = text[text.index("What-ifs"):text.index("Kernel categories")]
    flat = re.sub(r"[│ \n]+", "", whatifs)
    assert "(graphtrace" in flat and GRAPHS.name in flat


def test_one_context_story_in_every_medium(sample):
    meta = stdlib_trace(tracekit.sample_path())["tracekit"]
    doc = sample.to_dict()
    n = doc["source"]["decode_steps"]
    c = doc["context"]
    assert c["prompt_tokens"] == meta["ctx"]
    assert (c["first_step"], c["last_step"]) == (meta["ctx_first_step"], meta["ctx_first_step"] + n - 1)
    assert c["first_step"] <= c["floor_ctx"] == doc["floor"]["ctx"] <= c["last_step"]
    phrase = (f"prompt {meta['ctx']} tokens; KV context {c['first_step']}–{c['last_step']} tokens "
              f"over the {n} profiled decode steps")
    from rich.console import Console

    from tracekit.report.terminal import render

    con = Console(record=True, width=200)
    render(doc, con)
    for text in (con.export_text(), sample.to_markdown(), sample.to_html()):
        assert phrase in text
        assert f"ctx {meta['ctx_first_step']}" not in text  # no unnamed third number


def test_unprofiled_ground_truth_in_every_medium(sample):
    timing = stdlib_trace(tracekit.sample_path())["tracekit"]["timing"]
    ms = sorted(timing["unprofiled_ms"])
    median = (ms[len(ms) // 2 - 1] + ms[len(ms) // 2]) / 2  # 30 samples
    want = f"{median:.3f} ms/step (median of {len(ms)} steps"
    from rich.console import Console

    from tracekit.report.terminal import render

    con = Console(record=True, width=120)
    render(sample.to_dict(), con)
    page = sample.to_html()
    for text in (con.export_text(), sample.to_markdown(), page):
        assert want in text
        assert "profiler overhead" in text and "tracekit capture --model qwen2.5-7b" in text
    cap = page[page.index('id="capture"'):]
    cap = cap[:cap.index("</section>")]
    assert "<table" in cap and "unprofiled_ms" not in page.split("tracekit-doc")[0]


def test_counts_are_integers_in_the_json():
    paths = [tracekit.sample_path(), *sorted(SAMPLES.glob("*.json.gz"))[:3]]
    for p in paths:
        doc = tracekit.explain(p).to_dict()
        for key in ("kernels", "memcpys", "memsets", "launches", "graph_launches", "steps",
                    "steps_with_latency"):
            v = doc["summary"][key]
            assert v is None or type(v) is int, (p.name, key, v)
        for r in doc["steps"]:
            assert all(type(r[k]) is int for k in ("kernels", "launches", "graph_launches"))
        assert all(type(x) is int for x in doc["summary"]["range"]["kernels"] or [])


def test_bytes_only_where_the_trace_has_them(sample):
    """The copy category holds copy kernels (no byte count) and memsets (with one): its bytes
    cover only the memsets, and every medium says over how many ops."""
    raw = stdlib_trace(tracekit.sample_path())["traceEvents"]
    with_bytes = [e for e in raw if e.get("cat") in ("gpu_memset", "gpu_memcpy")
                  and (e.get("args") or {}).get("bytes") is not None]
    n = sample.source["decode_steps"]
    copy = next(c for c in sample.kernels_by_category if c["category"] == "copy")
    assert copy["ops_with_bytes_per_step"] == len(with_bytes) / n
    assert copy["bytes_per_step"] == sum(e["args"]["bytes"] for e in with_bytes) / n
    assert copy["ops_with_bytes_per_step"] < copy["ops_per_step"]
    phrase = (f"{copy['bytes_per_step']:.0f} B on {copy['ops_with_bytes_per_step']:.0f} of "
              f"{copy['ops_per_step']:.0f} ops")
    assert phrase in sample.to_markdown() and phrase in sample.to_html()


def test_no_byte_column_without_bytes(tmp_path):
    from synth import decode_steps, write_trace

    e = tracekit.explain(write_trace(tmp_path / "t.json.gz", decode_steps(4)))
    assert all(c["bytes_per_step"] is None for c in e.kernels_by_category)
    assert "bytes / step" not in e.to_markdown() and "bytes / step" not in e.to_html()


def test_version_flag():
    out = subprocess.run([sys.executable, "-m", "tracekit", "--version"], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0 and out.stdout == f"tracekit {tracekit.__version__}\n"
    import tomllib

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["version"] == tracekit.__version__
