"""``tracekit compare``: the speed-up against the captures' own metadata, sessions vs steps, the
per-term deltas against each side's explanation, and the bad-input rules."""

from __future__ import annotations

import gzip
import json
import re
import statistics
from pathlib import Path

import pytest
from helpers import error_line, lookup_windows, run, stdlib_trace, write_capture
from synth import decode_steps, write_trace

from tracekit.compare import compare

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_traces"
EAGER = SAMPLES / "qwen2.5-7b_ctx2048_eager.json.gz"
GRAPHS = SAMPLES / "qwen2.5-7b_ctx2048_cuda-graphs.json.gz"
LLAMA = SAMPLES / "llama-3.1-8b_ctx4096_eager.json.gz"
PLAIN = SAMPLES / "plain_qwen2.5-7b_ctx2048_eager_annotated.json.gz"
PLAIN_GRAPH = SAMPLES / "plain_qwen2.5-7b_ctx2048_graph_replay.json.gz"


def _meta(path: Path) -> dict:
    return stdlib_trace(path)["tracekit"]


@pytest.fixture(scope="module")
def eager_vs_graphs():
    return compare(EAGER, GRAPHS).to_dict()


# --- the validation the issue asks for -----------------------------------------------------------
def test_speedup_is_the_ratio_of_the_unprofiled_medians(eager_vs_graphs):
    d = eager_vs_graphs
    a, b = _meta(EAGER)["timing"], _meta(GRAPHS)["timing"]
    want = statistics.median(a["unprofiled_ms"]) / statistics.median(b["unprofiled_ms"])
    assert d["speedup"] == pytest.approx(want, rel=1e-12)
    assert d["speedup"] == pytest.approx(a["median_ms"] / b["median_ms"], rel=1e-6)
    lo, hi = d["ci95"]
    assert lo < d["speedup"] < hi
    assert (d["basis"], d["n_a"], d["n_b"], d["latency_source"]) == ("steps", 30, 30, "unprofiled")
    assert any("CI over steps, not sessions" in w for w in d["warnings"])
    assert d["a"]["latency_ms"] == pytest.approx(statistics.median(a["unprofiled_ms"]))


def test_real_multi_session_captures_resample_sessions():
    a = SAMPLES / "h100" / "qwen2.5-7b_ctx2048_eager_sdpa-flash.json.gz"
    b = SAMPLES / "h100" / "qwen2.5-7b_ctx2048_cuda-graphs.json.gz"
    d = compare(a, b).to_dict()
    ma, mb = ([statistics.median(r["timing"]["unprofiled_ms"]) for r in _meta(p)["sessions"]["runs"]]
              for p in (a, b))
    assert len(ma) >= 2 and len(mb) >= 2
    assert d["speedup"] == pytest.approx(statistics.mean(ma) / statistics.mean(mb), rel=1e-12)
    assert (d["basis"], d["n_a"], d["n_b"]) == ("sessions", len(ma), len(mb))
    assert d["ci95"][0] < d["speedup"] < d["ci95"][1]
    assert d["a"]["attention"] == "sdpa-flash" and d["b"]["mode"] == "cuda-graphs"
    assert not any("CI over steps" in w for w in d["warnings"])


def test_terms_are_each_sides_explanation(eager_vs_graphs, explained):
    d = eager_vs_graphs
    ea, eb = explained(EAGER).to_dict(), explained(GRAPHS).to_dict()
    t = d["terms"]
    for key, path in (("floor_ms", ("decomposition", "floor_ms")),
                      ("launch_overhead_ms", ("decomposition", "launch_overhead_ms")),
                      ("kernels", ("summary", "kernels")), ("launches", ("summary", "launches"))):
        va, vb = ea[path[0]][path[1]], eb[path[0]][path[1]]
        assert (t[key]["a"], t[key]["b"]) == (va, vb)
        assert t[key]["delta"] == pytest.approx(vb - va)
    host = t["launch_overhead_host_bound_ms"]
    assert host["a"] > 10 * host["b"]  # graphs remove the host-bound gaps
    assert t["graph_launches"]["b"] >= 1 and t["graph_launches"]["a"] == 0
    assert "B is" in d["verdict"] and "faster" in d["verdict"]


def test_sessions_basis_uses_mean_of_session_medians(tmp_path):
    a = [[10.0, 10.4, 10.1], [11.0, 11.2, 10.8], [10.5, 10.5, 10.6]]
    b = [[5.0, 5.1, 5.2], [5.3, 5.2, 5.1], [4.9, 5.0, 5.0], [5.1, 5.1, 5.2]]
    pa, pb = write_capture(tmp_path / "a.json.gz", a), write_capture(tmp_path / "b.json.gz", b)
    d = compare(pa, pb).to_dict()
    want = (statistics.mean(statistics.median(s) for s in a)
            / statistics.mean(statistics.median(s) for s in b))
    assert d["speedup"] == pytest.approx(want, rel=1e-12)
    assert (d["basis"], d["n_a"], d["n_b"]) == ("sessions", 3, 4)
    assert d["ci95"][0] < d["speedup"] < d["ci95"][1]
    assert d["terms"] == {}  # timing-only captures: no profiled trace to explain
    assert d["a"]["session_medians_ms"] == [statistics.median(s) for s in a]


def test_several_traces_per_side_are_sessions(tmp_path):
    a = [[10.0, 10.2], [10.6, 10.4]]
    for i, s in enumerate(a):
        write_capture(tmp_path / f"eager_{i}.json.gz", [s], legacy=True)
    (tmp_path / "g").mkdir()
    write_capture(tmp_path / "g" / "graphs.json.gz", [[5.0, 5.0], [5.2, 5.2]])
    d = compare(str(tmp_path / "eager_*.json.gz"), tmp_path / "g").to_dict()
    assert d["basis"] == "sessions" and d["a"]["sessions"] == 2
    assert d["speedup"] == pytest.approx(10.3 / 5.1)


def test_a_side_mixing_setups_is_warned_about():
    a = str(SAMPLES / "h100" / "qwen2.5-7b_ctx2048_eager*.json.gz")  # default and flash SDPA
    d = compare(a, SAMPLES / "h100" / "qwen2.5-7b_ctx2048_cuda-graphs.json.gz").to_dict()
    assert d["a"]["sessions"] == 10 and d["basis"] == "sessions"
    assert "side A mixes attentions: sdpa, sdpa-flash" in d["warnings"]


def test_one_session_side_falls_back_to_steps_and_says_so(tmp_path):
    pa = write_capture(tmp_path / "a.json.gz", [[10.0, 11.0, 12.0], [20.0, 21.0, 22.0]])
    pb = write_capture(tmp_path / "b.json.gz", [[5.0, 6.0, 7.0]])
    d = compare(pa, pb).to_dict()
    assert d["basis"] == "steps" and (d["n_a"], d["n_b"]) == (6, 3)
    assert d["speedup"] == pytest.approx(statistics.median([10, 11, 12, 20, 21, 22]) / 6.0)
    assert any("CI over steps" in w for w in d["warnings"])


def test_profiled_fallback_is_loud():
    d = compare(PLAIN, PLAIN_GRAPH).to_dict()
    assert d["latency_source"] == "profiled"
    assert d["warnings"][0].startswith("PROFILED latency")
    # each side's profiled latency: the median of its steps' windows, from json.load
    lat = [statistics.median(w[1] for w in lookup_windows(p)) / 1e6 for p in (PLAIN, PLAIN_GRAPH)]
    assert (d["a"]["latency_ms"], d["b"]["latency_ms"]) == pytest.approx(lat, rel=1e-9)
    assert d["speedup"] == pytest.approx(lat[0] / lat[1], rel=1e-9)
    r = run("compare", PLAIN, PLAIN_GRAPH)
    assert r.exit_code == 0 and "PROFILED" in r.output


def test_different_models_and_contexts_still_compare_with_warnings(tmp_path):
    pa = write_capture(tmp_path / "a.json.gz", [[10.0, 10.0]], gpu="NVIDIA H200")
    pb = write_capture(tmp_path / "b.json.gz", [[9.0, 9.0]], model="llama-3.1-8b", ctx=4096)
    d = compare(pa, pb).to_dict()
    text = " ".join(d["warnings"])
    assert "different models: A is qwen2.5-7b, B is llama-3.1-8b" in text
    assert "different contexts: A is 2048, B is 4096" in text
    assert "different GPUs" in text
    assert d["speedup"] == pytest.approx(10 / 9)


# --- renderers and the CLI ---------------------------------------------------------------------
def test_cli_json_markdown_and_terminal(tmp_path):
    md = tmp_path / "ab.md"
    r = run("compare", EAGER, GRAPHS, "--json", "--markdown", md)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # stderr says "wrote ab.md"
    assert doc["schema"] == "tracekit.compare/1"
    for key in ("a", "b", "speedup", "ci95", "basis", "n_a", "n_b", "terms"):
        assert key in doc
    assert "NaN" not in r.stdout and "Infinity" not in r.stdout
    text = md.read_text()
    assert f"**{doc['speedup']:.3f}×**" in text and "| launches per step |" in text
    r = run("compare", EAGER, GRAPHS)
    assert r.exit_code == 0 and "speed-up B vs A" in r.output


def test_markdown_escapes_trace_strings(tmp_path):
    from tracekit.report.compare import render_markdown

    evil = tmp_path / "a|b<script>.json.gz"
    pa = write_capture(evil, [[10.0, 10.0]], gpu="GPU | <img src=x onerror=alert(1)>")
    pb = write_capture(tmp_path / "b.json.gz", [[9.0, 9.0]])
    text = render_markdown(compare(pa, pb).to_dict())
    # every "<" and "|" from the trace is backslash-escaped: Markdown shows them as text
    assert not re.search(r"(?<!\\)<(script|img)", text), text
    assert "a\\|b\\<script\\>" in text and "GPU \\| \\<img src=x" in text


def test_defaults_come_from_the_library():
    import tracekit.bootstrap as bs
    import tracekit.cli as cli

    assert (cli._BOOT_RESAMPLES, cli._BOOT_SEED) == (bs.RESAMPLES, bs.SEED)


# --- bad input: one Error line naming the file and the key ----------------------------------------
def test_trace_with_no_decode_steps(tmp_path):
    bad = write_trace(tmp_path / "one.json.gz", decode_steps(1, kernel_us=2, annotate=None))
    r = run("compare", bad, GRAPHS)
    assert r.exit_code == 1
    line = error_line(r)
    assert line.startswith(f"Error: {bad}: no decode steps found")


def test_basis_sessions_needs_unprofiled_timings(tmp_path):
    r = run("compare", PLAIN, GRAPHS, "--basis", "sessions")
    assert r.exit_code == 1
    line = error_line(r)
    assert str(PLAIN) in line and "tracekit.timing.unprofiled_ms" in line


def test_basis_sessions_needs_two_sessions():
    r = run("compare", EAGER, GRAPHS, "--basis", "sessions")
    assert r.exit_code == 1
    line = error_line(r)
    assert str(EAGER) in line and "at least 2 sessions" in line and "tracekit.sessions.runs" in line


def test_session_without_timings_names_the_key(tmp_path):
    pa = write_capture(tmp_path / "a.json.gz", [[10.0], [11.0]])
    doc = json.loads(gzip.open(pa, "rt").read())
    doc["tracekit"]["sessions"]["runs"][1]["timing"] = None
    with gzip.open(pa, "wt") as f:
        json.dump(doc, f)
    r = run("compare", pa, pa)
    line = error_line(r)
    assert f"{pa}: key tracekit.sessions.runs[1].timing.unprofiled_ms is missing" in line


@pytest.mark.parametrize(("args", "needle"), [
    (["nope.json.gz", GRAPHS], "Error: nope.json.gz does not exist"),
    (["missing_*.json.gz", GRAPHS], "Error: missing_*.json.gz: the pattern matches no files"),
    ([EAGER, GRAPHS, "--basis", "median"], "Error: unknown --basis 'median'"),
])
def test_bad_arguments(args, needle):
    r = run("compare", *args)
    assert r.exit_code in (1, 2)
    assert error_line(r).startswith(needle)


def test_compare_help_has_an_example():
    r = run("compare", "--help")
    assert r.exit_code == 0 and "$ tracekit compare" in r.output  # the examples tests/test_help.py runs


def test_html_is_self_contained_and_escapes_trace_strings(tmp_path):
    import html as htmllib
    import re

    evil = "GPU</script><img src=x onerror=alert(1)>"
    pa = write_capture(tmp_path / "a<b>.json.gz", [[10.0, 10.1], [10.2, 10.3]], gpu=evil)
    out = tmp_path / "ab.html"
    r = run("compare", pa, GRAPHS, "--html", out)
    assert r.exit_code == 0, r.output
    page = out.read_text()
    assert "<img" not in page and "a<b>" not in page
    assert htmllib.escape(evil) in page
    assert not re.search(r"<script[^>]+src=", page)  # plotly.js inline: opens offline
    doc = json.loads(re.search(r'<script type="application/json" id="tracekit-doc">(.*?)</script>',
                               page, re.S).group(1))
    assert doc["a"]["gpu"] == evil and doc["schema"] == "tracekit.compare/1"
    assert 'id="waterfall-ab"' in page and "different GPUs" in page


def test_html_side_by_side_waterfalls_of_two_profiled_traces(tmp_path):
    from tracekit.report.compare_html import render_compare_html

    page = render_compare_html(compare(EAGER, GRAPHS).to_dict(), plotlyjs="cdn")
    assert page.count('"type":"bar"') == 2  # one waterfall per side
    assert "unprofiled latency" in page and "host-bound" in page
