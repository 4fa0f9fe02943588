"""One behaviour where a newcomer would expect one: the Python API takes the CLI's option names,
every output option replaces a file and says so, ``to_html(path)`` returns the path, and what
``requires-python`` promises is what the code imports."""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path

import pytest
from helpers import error_line, run
from synth import decode_steps, write_trace

import tracekit
from tracekit.cli import app
from tracekit.errors import BadInput

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
#: explain's options that are about output, not about the analysis (the API returns an object)
OUTPUT_ONLY = {"trace", "sample", "as_json", "markdown", "html", "plotlyjs", "verbose"}


def test_api_takes_every_analysis_option_of_the_cli_by_its_name():
    cli = {p.name for p in app.commands["explain"].params} - OUTPUT_ONLY
    api = set(inspect.signature(tracekit.explain.explain).parameters)
    assert cli <= api, f"CLI options the API lacks: {sorted(cli - api)}"


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return write_trace(tmp_path_factory.mktemp("t") / "t.json.gz", decode_steps(4, kernels_per_step=4))


def test_api_bandwidth_is_the_cli_bandwidth(small):
    a = tracekit.explain(small, model="tiny", ctx=10, bandwidth=1000).floor
    b = tracekit.explain(small, model="tiny", ctx=10, bandwidth_gbps=1000).floor  # the old name
    assert a["peak_gbps"] == b["peak_gbps"] == 1000
    with pytest.raises(BadInput, match="not both"):
        tracekit.explain(small, bandwidth=1000, bandwidth_gbps=2000)


@pytest.mark.parametrize(("kw", "name"), [
    ({"bandwidth": "fast"}, "bandwidth"), ({"bandwidth": True}, "bandwidth"),
    ({"ctx": "2048"}, "ctx"), ({"ctx": 2048.5}, "ctx"), ({"model": 7}, "model"),
    ({"dtype": 16}, "dtype"), ({"gpu": ["H100"]}, "gpu"), ({"group_size": "64"}, "group-size"),
    ({"unprofiled_ms": "55"}, "unprofiled-ms"),
])
def test_api_values_of_the_wrong_type_are_bad_input_naming_the_option(small, kw, name):
    with pytest.raises(BadInput, match=re.escape(name)):
        tracekit.explain(small, **kw)


def test_api_group_size_matches_the_cli(small):
    api = tracekit.explain(small, model="tiny", ctx=10, dtype="int4", group_size=64).to_dict()
    r = run("explain", small, "--model", "tiny", "--ctx", "10", "--dtype", "int4",
            "--group-size", "64", "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["floor"] == api["floor"]


def test_to_html_and_to_markdown_with_a_path_return_the_path(small, tmp_path):
    e = tracekit.explain(small)
    for method, name in ((e.to_html, "r.html"), (e.to_markdown, "r.md")):
        out = method(tmp_path / name)
        assert out == tmp_path / name and out.stat().st_size > 0
    assert e.to_markdown() == (tmp_path / "r.md").read_text()


OUTPUT_RUNS = {
    "explain --html": (["explain", "T", "--html", "OUT"], "OUT"),
    "explain --markdown": (["explain", "T", "--markdown", "OUT"], "OUT"),
    "compare --markdown": (["compare", "T", "T2", "--markdown", "OUT"], "OUT"),
    "annotate -o": (["annotate", "T", "-o", "OUT"], "OUT"),
}


@pytest.mark.parametrize("what", sorted(OUTPUT_RUNS))
def test_every_output_option_replaces_and_says_wrote(small, tmp_path, what):
    argv, _ = OUTPUT_RUNS[what]
    other = tmp_path / "t2.json.gz"
    other.write_bytes(small.read_bytes())
    out = tmp_path / ("out.json.gz" if what.startswith("annotate") else "out.txt")
    out.write_bytes(b"old")
    argv = [{"T": small, "T2": other, "OUT": out}.get(a, a) for a in argv]
    r = run(*argv)
    assert r.exit_code == 0, r.output
    assert out.read_bytes() != b"old"
    assert re.match(rf"wrote {re.escape(str(out))}\b", r.stderr), r.stderr
    assert f"wrote {out}" not in r.stdout


@pytest.mark.parametrize("argv", [["explain", "T", "--html", "T"], ["explain", "T", "--markdown", "T"],
                                  ["compare", "T", "T2", "--html", "T2"],
                                  ["annotate", "T", "-o", "T"]])
def test_no_output_option_writes_over_an_input(small, tmp_path, argv):
    src = tmp_path / "t.json.gz"
    src.write_bytes(small.read_bytes())
    other = tmp_path / "t2.json.gz"
    other.write_bytes(small.read_bytes())
    r = run(*[{"T": src, "T2": other}.get(a, a) for a in argv])
    assert r.exit_code == 2 and "is the input trace" in error_line(r)
    assert src.read_bytes() == other.read_bytes() == small.read_bytes()


def test_sweep_reads_toml_on_every_python_that_requires_python_allows():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.10"
    # tomllib joined the stdlib in 3.11: on 3.10 the same parser comes from tomli
    assert "tomli>=1.1; python_version<'3.11'" in project["dependencies"]
    src = (ROOT / "tracekit" / "sweep.py").read_text()
    assert re.search(r"if sys.version_info >= \(3, 11\):\s+import tomllib\s+else:.*\n\s+import tomli as tomllib", src)
