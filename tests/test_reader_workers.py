"""The streaming reader with a worker process (``workers=1``) reads exactly what it reads alone.

* every committed JSON trace, and a scaled one through the CLI: tables, meta, warnings and the
  ``--json`` document are identical with and without the worker;
* a slice's error (bad UTF-8, a ts out of range, a wrong type) is the same one line, at the same
  ``$.traceEvents[i]``, raised in slice order;
* a worker that dies, or a reader interrupted (Ctrl-C), leaves no process behind and no hang;
* a cut inside a string (``},{`` in a name) is redone here, with the same events.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tracekit.trace.slice_worker as slice_worker
import tracekit.trace.source as source
from tracekit.errors import TraceFormatError
from tracekit.trace import load

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_stream_reader import JSON_TRACES, _events, _json, _layouts, _same  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _inflated(path: Path) -> int:
    return len(gzip.open(path).read())


@pytest.fixture
def procs(monkeypatch) -> list:
    """Every worker process started, to check that each one has exited."""
    started: list = []
    init = slice_worker.Worker.__init__

    def spy(self, path: str) -> None:
        init(self, path)
        started.append(self.proc)

    monkeypatch.setattr(slice_worker.Worker, "__init__", spy)
    return started


def _reaped(started: list) -> None:
    assert started, "the worker path was not taken"
    assert all(p.poll() is not None for p in started)


@pytest.mark.parametrize("path", JSON_TRACES, ids=lambda p: p.name)
def test_worker_reads_every_committed_trace_the_same(path: Path, procs) -> None:
    size = _inflated(path) // 5 + 1
    alone = load(path, slice_bytes=size, workers=0)
    shared = load(path, slice_bytes=size, workers=1)
    assert shared.notes[0].startswith("streamed"), shared.notes
    _same(alone, shared)
    assert _json(alone) == _json(shared)
    _reaped(procs)


def test_cli_json_is_byte_identical_on_a_scaled_trace(tmp_path: Path) -> None:
    from scale import write_scaled

    p = tmp_path / "x2.json.gz"
    write_scaled(ROOT / "sample_traces" / "llama-3.1-8b_ctx4096_eager.json.gz", 2, p)
    assert _inflated(p) > 6 * (8 << 20)  # many slices: the worker takes part
    out = {}
    for w in ("0", "1"):
        env = {**os.environ, "TRACEKIT_READER_WORKERS": w}
        r = subprocess.run([sys.executable, "-m", "tracekit.cli", "explain", "--json", str(p)],
                           capture_output=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        out[w] = (r.stdout, r.stderr)
    assert out["0"] == out["1"]
    assert json.loads(out["1"][0])["steps"]


def _big(tmp_path: Path, bad: bytes | None = None, at: int = 300) -> Path:
    """A trace of 480 kernels (many slices at slice_bytes=2000) with event ``at`` replaced."""
    lines = [json.dumps({"ph": "X", "cat": "kernel", "name": f"k{i % 7}", "pid": 0, "tid": 7,
                         "ts": 10 + i, "dur": 1, "args": {"correlation": i}}).encode()
             for i in range(480)]
    if bad is not None:
        lines[at] = bad
    p = tmp_path / "t.json"
    p.write_bytes(b'{"traceEvents": [' + b",\n".join(lines) + b"]}")
    return p


def _err(path: Path, **kw) -> str:
    with pytest.raises(TraceFormatError) as e:
        load(path, slice_bytes=2000, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("bad, says", [
    (b'{"ph": "X", "cat": "kernel", "name": "k\xff", "ts": 1, "dur": 1}', "not valid UTF-8"),
    (b'{"ph": "X", "cat": "kernel", "name": "k", "ts": 1e300, "dur": 1}', "outside the range"),
    (b'{"ph": "X", "cat": "kernel", "name": 5, "ts": 1, "dur": 1}', "$.traceEvents[300]"),
    (b'{"ph": "X", "cat": "kernel", "name": "k", "ts": 1, "args": {"a": '
     + b"[" * 100_000 + b"]" * 100_000 + b"}}", "nests JSON deeper"),
], ids=["utf8", "ts", "type", "deep"])
@pytest.mark.parametrize("at", [300, 479], ids=["mid", "last-slice"])
def test_a_slice_error_is_the_same_line(tmp_path, procs, bad, says, at) -> None:
    """In a slice the worker reads, and in the last one (read here while the worker finishes)."""
    p = _big(tmp_path, bad, at)
    alone = _err(p, workers=0)
    assert says.replace("300", str(at)) in alone
    assert _err(p, workers=1) == alone
    _reaped(procs)


def test_truncated_stream_after_worker_slices(tmp_path, procs) -> None:
    data = _layouts(_events())["compact"]
    p = tmp_path / "t.json.gz"
    p.write_bytes(gzip.compress(data)[:-4000])
    alone = _err(p, workers=0)
    assert _err(p, workers=1) == alone
    _reaped(procs)


@pytest.mark.parametrize("fork", ["1", "0"], ids=["forked", "fresh-interpreter"])
@pytest.mark.parametrize("code", [
    "import sys; sys.exit(3)",  # dies at once
    "import sys; sys.stdin.buffer.read(100); sys.exit(3)",  # dies inside the first request
    "import os; os.kill(os.getpid(), 9)",
], ids=["exit", "mid-request", "killed"])
def test_a_dead_worker_is_survived(tmp_path, monkeypatch, procs, code, fork) -> None:
    monkeypatch.setenv("TRACEKIT_READER_FORK", fork)
    monkeypatch.setattr(slice_worker, "_CODE", code)
    _alone_and_shared_agree(tmp_path, procs, "compact")


def _alone_and_shared_agree(tmp_path, procs, layout: str) -> None:
    p = tmp_path / "t.json"
    p.write_bytes(_layouts(_events())[layout])
    _same(load(p, slice_bytes=2000, workers=0), load(p, slice_bytes=2000, workers=1))
    _reaped(procs)


def test_interrupt_kills_the_worker(tmp_path, monkeypatch, procs) -> None:
    monkeypatch.setattr(source, "RAW_BLOCK", 1000)
    monkeypatch.setattr(source, "CHUNK", 1000)
    data = _layouts(_events())["compact"]
    p = tmp_path / "t.json.gz"
    p.write_bytes(gzip.compress(data))
    calls = []

    def progress(n, total) -> None:
        calls.append(n)
        if len(calls) == 30:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        load(p, slice_bytes=2000, workers=1, progress=progress)
    _reaped(procs)


def test_environment_variable_turns_it_on_and_off(tmp_path, monkeypatch, procs) -> None:
    data = _layouts(_events())["compact"]
    p = tmp_path / "t.json"
    p.write_bytes(data)
    monkeypatch.setenv("TRACEKIT_READER_WORKERS", "0")
    load(p, slice_bytes=2000)
    assert not procs
    monkeypatch.setenv("TRACEKIT_READER_WORKERS", "1")
    load(p, slice_bytes=2000)
    _reaped(procs)


@pytest.mark.parametrize("fork", ["1", "0"], ids=["forked", "fresh-interpreter"])
def test_both_ways_of_starting_the_worker_read_the_same(tmp_path, monkeypatch, procs,
                                                        fork) -> None:
    """The worker forked from this process (Linux) and one started as a fresh interpreter."""
    monkeypatch.setenv("TRACEKIT_READER_FORK", fork)
    _alone_and_shared_agree(tmp_path, procs, "pretty")
    assert all(type(w).__name__ == ("_Forked" if fork == "1" else "Popen") for w in procs)


@pytest.mark.parametrize("layout", sorted(_layouts(_events())), ids=str)
def test_every_layout_reads_the_same_with_the_worker(tmp_path, procs, layout) -> None:
    """Each layout's last slice holds a ``}]`` before the array's end (an event's args end in a
    list of objects), so the end taken first is a wrong one and the last events are read again;
    the same events either way."""
    _alone_and_shared_agree(tmp_path, procs, layout)


def test_the_last_slice_ends_the_array_at_its_first_bracket(tmp_path, procs) -> None:
    """Here the first ``}]`` is the array's end: the last slice is taken as decoded the first
    time, and what follows the array is read as the document's rest."""
    p = _big(tmp_path)
    text = p.read_bytes()
    assert text.count(b"}]") == 1
    p.write_bytes(text[:-1] + b', "deviceProperties": [{"id": 0, "name": "NVIDIA H100"}]}')
    alone, shared = load(p, slice_bytes=2000, workers=0), load(p, slice_bytes=2000, workers=1)
    _same(alone, shared)
    assert shared.meta["devices"][0]["name"] == "NVIDIA H100"
    assert shared.notes == alone.notes
    _reaped(procs)
