"""The streaming Kineto reader and the input front end.

* streamed == whole-document: on every committed trace and a scaled one, the tables, the meta and
  the ``--json`` document are identical whether the JSON is decoded whole or in small slices;
* awkward cuts: events split across inflate chunks and slices, multi-byte UTF-8 and ``},{``
  inside names, ``traceEvents`` not the first key, compact and pretty layouts, a bare array —
  checked against an oracle over ``json.load``, not against tracekit;
* bad input: every case is one clean :class:`TraceFormatError` (the CLI prints it as one line).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import JSON_TRACES, explain_bytes, layouts, nasty_events, same_trace

import tracekit.trace.kineto as kineto
import tracekit.trace.source as source
from tracekit.errors import TraceFormatError
from tracekit.trace import load

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_traces"
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.mark.parametrize("path", JSON_TRACES, ids=lambda p: p.name)
def test_streamed_equals_whole_document(path: Path) -> None:
    whole = load(path, slice_bytes=1 << 30)
    streamed = load(path, slice_bytes=len(gzip.open(path).read()) // 5)
    assert "one decode" in whole.notes[0]
    assert streamed.notes[0].startswith("streamed"), streamed.notes
    same_trace(whole, streamed)
    assert explain_bytes(whole) == explain_bytes(streamed)


def test_streamed_equals_whole_document_scaled(tmp_path: Path) -> None:
    from scale import write_scaled

    p = tmp_path / "x2.json.gz"
    write_scaled(SAMPLES / "qwen2.5-7b_ctx2048_cuda-graphs.json.gz", 2, p)
    whole, streamed = load(p, slice_bytes=1 << 30), load(p, slice_bytes=1 << 20)
    assert streamed.notes[0].startswith("streamed")
    same_trace(whole, streamed)
    one = load(SAMPLES / "qwen2.5-7b_ctx2048_cuda-graphs.json.gz")
    assert streamed.gpu_ops.height == 2 * one.gpu_ops.height  # an independent count: the copies
    assert explain_bytes(whole) == explain_bytes(streamed)


# --- awkward cuts --------------------------------------------------------------------------
def _oracle(data: bytes) -> dict[str, list]:
    doc = json.loads(data)
    ev = doc if isinstance(doc, list) else doc["traceEvents"]
    out: dict[str, list] = {"kernel": [], "cpu_op": []}
    for e in ev:
        if e.get("ph") == "X" and e.get("cat") in out:
            whole, _, frac = repr(e["ts"]).partition(".")  # json.loads keeps the literal's digits
            ns = int(whole) * 1000 + int((frac + "000")[:3])
            out[e["cat"]].append((e["name"], ns))
    return out


@pytest.mark.parametrize("layout", ["compact", "pretty", "spaces", "bare-array"])
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("chunk", [1, 7, 4093])
def test_awkward_cuts(tmp_path, monkeypatch, layout, gz, chunk) -> None:
    data = layouts(nasty_events())[layout]
    p = tmp_path / ("t.json.gz" if gz else "t.json")
    p.write_bytes(gzip.compress(data) if gz else data)
    monkeypatch.setattr(source, "RAW_BLOCK", chunk if not gz else max(chunk, 64))
    monkeypatch.setattr(source, "CHUNK", chunk)
    streamed = load(p, slice_bytes=2000 + chunk)
    assert streamed.notes[0].startswith("streamed"), streamed.notes
    whole = load(p, slice_bytes=1 << 30)
    same_trace(whole, streamed)
    want = _oracle(data)
    got_k = list(zip(streamed.gpu_ops["name"], streamed.gpu_ops["start_ns"]))
    got_c = list(zip(streamed.cpu_ops["name"], streamed.cpu_ops["start_ns"]))
    assert got_k == want["kernel"] and got_c == want["cpu_op"]
    assert streamed.meta["events"] == 480
    if layout != "bare-array":
        assert streamed.meta["devices"][0]["name"] == "NVIDIA H100 80GB HBM3"


def test_slice_boundaries_at_every_offset(tmp_path, monkeypatch) -> None:
    """A slice that ends at each byte of an event (multi-byte UTF-8 included) reads the same."""
    ev = nasty_events()[:40]
    data = layouts(ev)["compact"]
    want = _oracle(data)
    p = tmp_path / "t.json"
    p.write_bytes(data)
    monkeypatch.setattr(source, "RAW_BLOCK", 97)
    for size in range(600, 1400, 37):
        t = load(p, slice_bytes=size)
        assert list(zip(t.cpu_ops["name"], t.cpu_ops["start_ns"])) == want["cpu_op"]


# --- inputs ----------------------------------------------------------------------------------
def _err(path, **kw) -> str:
    with pytest.raises(TraceFormatError) as e:
        load(path, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def _tiny() -> bytes:
    return layouts(nasty_events()[:8])["pretty"]


def test_multi_member_gzip_and_zero_padding(tmp_path) -> None:
    data = _tiny()
    p = tmp_path / "mm.json.gz"
    p.write_bytes(gzip.compress(data[:100]) + gzip.compress(data[100:]) + b"\0" * 10)
    q = tmp_path / "one.json"
    q.write_bytes(data)
    same_trace(load(p), load(q))
    p.write_bytes(gzip.compress(data) + b"garbage")
    assert "trailing garbage" in _err(p)


def test_pipe_and_dash(tmp_path) -> None:
    p = tmp_path / "t.json.gz"
    p.write_bytes(gzip.compress(_tiny()))
    code = ("import sys; from tracekit.trace import load; t = load(sys.argv[1]); "
            "print(t.gpu_ops.height, t.cpu_ops.height)")
    for arg in ("-", "/dev/stdin"):
        r = subprocess.run(f"cat {p} | {sys.executable} -c '{code}' {arg}", shell=True,
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["2", "2"]


def test_fifo_without_writer_and_devices(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(source, "READ_TIMEOUT_S", 0.5)
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    assert "sent no data" in _err(fifo)
    assert "not a regular file or a pipe" in _err("/dev/zero")
    assert "is a directory" in _err(tmp_path)


def test_bounds_say_the_bound(tmp_path, monkeypatch) -> None:
    p = tmp_path / "bomb.json.gz"
    p.write_bytes(gzip.compress(b'{"traceEvents": [' + b" " * (20 << 20)))
    monkeypatch.setattr(kineto, "MAX_STREAM_BYTES", 8 << 20)
    assert "inflates to more than 8 MiB" in _err(p)
    monkeypatch.setattr(kineto, "MAX_STREAM_BYTES", 1 << 40)
    monkeypatch.setattr(kineto, "MAX_EVENT_BYTES", 4 << 20)
    huge = b'{"traceEvents": [{"name": "' + b"a" * (12 << 20) + b'"}]}'
    p.write_bytes(gzip.compress(huge))
    assert "larger than 4 MiB" in _err(p, slice_bytes=1 << 20)


def _with(ev_extra: dict | None = None, doc_extra: dict | None = None, raw: bytes | None = None):
    ev = {"ph": "X", "cat": "kernel", "name": "k", "pid": 0, "tid": 7, "ts": 10, "dur": 1,
          "args": {"correlation": 1, "stream": 7}}
    ev.update(ev_extra or {})
    doc = {"traceEvents": [ev, {**ev, "ts": 20}], **(doc_extra or {})}
    return raw if raw is not None else json.dumps(doc).encode()


@pytest.mark.parametrize("slice_bytes", [1 << 30, 64], ids=["whole", "streamed"])
def test_hostile_values_give_one_clean_error_or_are_handled(tmp_path, slice_bytes) -> None:
    p = tmp_path / "t.json"

    def err(data: bytes) -> str:
        p.write_bytes(data)
        return _err(p, slice_bytes=slice_bytes)

    def ok(data: bytes):
        p.write_bytes(data)
        return load(p, slice_bytes=slice_bytes)

    deep = b'{"traceEvents": [{"args": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}]}"
    assert "nests JSON deeper" in err(deep)
    assert "not valid UTF-8" in err(_with({"name": "k\udcff"}).replace(b"\\udcff", b"\xff"))
    assert "outside the range" in err(_with({"ts": 1e300}))
    assert "outside the range" in err(_with({"dur": 1e300}))
    t = ok(_with({"pid": 2**40, "args": {"stream": 2**63, "correlation": "12"}}))
    assert t.gpu_ops["device"].to_list() == [None, None]  # does not fit Int32: unknown
    assert t.gpu_ops["stream"].to_list() == [None, None]  # does not fit Int64
    assert t.gpu_ops["correlation"].to_list() == [12, 12]
    t = ok(_with({"args": {"correlation": 5.0}}))
    assert t.gpu_ops["correlation"].to_list() == [5, 5]
    t = ok(_with({"args": ["not", "an", "object"]}))
    assert t.gpu_ops["correlation"].to_list() == [None, None]
    assert any("'args' that is not an object" in w for w in t.warnings)
    assert "Expected" in err(_with({"name": 5}))


@pytest.mark.parametrize("ts", [20.5, 1712195495505543.237], ids=["float", "decimal"])
def test_fields_of_events_tracekit_does_not_read_are_not_checked(tmp_path, ts) -> None:
    """An instant event with a boolean tid (tracekit reads complete events only) is skipped the
    same way whether the document is decoded whole or in slices, and whether the slice's
    timestamps need a second, decimal decode; a bad value in a complete event is one clean error
    naming its index in the document, the same way in each of those readings."""
    p = tmp_path / "t.json"
    kernels = [{"ph": "X", "cat": "kernel", "name": f"k{i}", "pid": 0, "tid": 7, "ts": ts + i,
                "dur": 1.5, "args": {"correlation": i}} for i in range(400)]
    odd = {"ph": "i", "name": "marker", "tid": False, "pid": [1], "ts": "now", "s": "t"}
    p.write_text(json.dumps({"traceEvents": kernels[:200] + [odd] + kernels[200:]}))
    want = [(ts + i) for i in range(400)]
    for slice_bytes in (1 << 30, 2000):
        t = load(p, slice_bytes=slice_bytes)
        assert t.meta["events"] == 401
        assert len(t.gpu_ops) == 400 and t.gpu_ops["correlation"].to_list() == list(range(400))
        assert t.gpu_ops["start_ns"].to_list() == [_oracle_ns(v) for v in want]
    bad = {**kernels[0], "tid": False}
    p.write_text(json.dumps({"traceEvents": kernels[:300] + [bad] + kernels[300:]}))
    for slice_bytes in (1 << 30, 2000):
        assert "`$.traceEvents[300].tid`" in _err(p, slice_bytes=slice_bytes)


def _oracle_ns(us: float) -> int:
    from decimal import ROUND_HALF_EVEN, Decimal

    return int((Decimal(repr(us)) * 1000).to_integral_value(ROUND_HALF_EVEN))


def test_capture_block_is_untrusted(tmp_path) -> None:
    p = tmp_path / "t.json"
    bad = {"ctx": "2048", "ctx_first_step": -5, "timing": {"median_ms": "fast", "steps": 3},
           "model": {"name": "m", "layers": "32"}, "versions": {"torch": 2}, "mode": "eager"}
    p.write_bytes(_with(doc_extra={"tracekit": bad}))
    t = load(p)
    assert t.capture == {"timing": {"steps": 3}, "model": {"name": "m"}, "versions": {},
                         "mode": "eager"}
    assert sum("capture metadata: ignored" in w for w in t.warnings) == 5
    p.write_bytes(_with(doc_extra={"tracekit": [1, 2]}))
    t = load(p)
    assert t.capture is None and any("'tracekit' block" in w for w in t.warnings)


def test_committed_capture_blocks_are_kept_whole() -> None:
    raw = json.loads(gzip.open(SAMPLES / "llama-3.1-8b_ctx4096_eager.json.gz").read())
    t = load(SAMPLES / "llama-3.1-8b_ctx4096_eager.json.gz")
    assert t.capture == raw["tracekit"]
    assert not [w for w in t.warnings if "capture metadata" in w]


# --- Nsight SQLite inputs --------------------------------------------------------------------
def _export(path: Path) -> Path:
    from helpers import build_export

    return build_export(path, meta={"ctx": 2048, "mode": "eager", "versions": {"torch": "2.11"}})


@pytest.mark.parametrize("name", ["x%41.sqlite", "q#1.sqlite", "a?mode=rw.sqlite", "sp ace.sqlite"])
def test_sqlite_names_are_uri_encoded(tmp_path, name) -> None:
    ref = load(_export(tmp_path / "ref.sqlite"))
    p = _export(tmp_path / name)
    (tmp_path / "xA.sqlite").write_bytes(b"not this one")
    t = load(p)
    assert t.gpu_ops.equals(ref.gpu_ops) and t.meta["format"] == "nsys"
    assert sorted(x.name for x in tmp_path.iterdir()) == sorted({"ref.sqlite", name, "xA.sqlite"})


def test_sqlite_text_and_blob_values_and_views(tmp_path) -> None:
    import sqlite3

    p = _export(tmp_path / "r.sqlite")
    ref = load(p)
    con = sqlite3.connect(p)
    con.execute("UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET streamId = 'seven', deviceId = x'00' "
                "WHERE rowid = 1")
    con.execute("UPDATE CUPTI_ACTIVITY_KIND_KERNEL SET start = 'soon' WHERE rowid = 2")
    con.execute("UPDATE CUPTI_ACTIVITY_KIND_RUNTIME SET correlationId = 'x'")
    con.commit()
    con.close()
    t = load(p)
    assert t.gpu_ops.height == ref.gpu_ops.height - 1  # the row without an integer start
    assert t.gpu_ops["stream"].null_count() == 1 and t.launches["correlation"].null_count() == \
        t.launches.height
    con = sqlite3.connect(p)
    con.execute("ALTER TABLE CUPTI_ACTIVITY_KIND_KERNEL RENAME TO k_real")
    con.execute("CREATE VIEW CUPTI_ACTIVITY_KIND_KERNEL AS WITH RECURSIVE r(x) AS "
                "(SELECT 1 UNION ALL SELECT x + 1 FROM r) SELECT x AS start FROM r")
    con.commit()
    con.close()
    assert "no CUPTI_ACTIVITY_KIND_KERNEL table" in _err(p)


def test_sqlite_temp_copy_removed_on_sigterm(tmp_path) -> None:
    import signal
    import time

    p = _export(tmp_path / "r.sqlite")
    gz = tmp_path / "r.sqlite.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    code = ("import sys, time, tracekit.trace.nsys as n\n"
            "orig = n._read\n"
            "def slow(con, p):\n"
            "    print('reading', flush=True); time.sleep(30); return orig(con, p)\n"
            "n._read = slow\n"
            "from tracekit.trace import load\n"
            "load(sys.argv[1])\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(gz)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmpdir)})
    assert proc.stdout.readline().strip() == "reading"
    assert len(list(tmpdir.iterdir())) == 1  # the inflated copy exists while reading
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    time.sleep(0.1)
    assert proc.returncode == 143 and "Traceback" not in proc.stderr.read()
    assert list(tmpdir.iterdir()) == []


def test_verbose_says_how_the_trace_was_read(tmp_path) -> None:
    p = tmp_path / "t.json"
    p.write_bytes(_tiny())
    code = ("import sys, tracekit.trace.kineto as k; k.SLICE_BYTES = 500; "
            "from tracekit.cli import main; main(sys.argv[1:])")
    r = subprocess.run([sys.executable, "-c", code, "explain", str(p), "--json", "-v"],
                       capture_output=True, text=True)
    notes = [ln for ln in r.stderr.splitlines() if ln.startswith("tracekit: ")]
    assert notes and notes[0].startswith("tracekit: streamed 8 events in ")
    r = subprocess.run([sys.executable, "-m", "tracekit", "explain", str(p), "--json"],
                       capture_output=True, text=True)
    assert "tracekit: " not in r.stderr


def test_a_name_full_of_braces_reads_in_bounded_time(tmp_path) -> None:
    """A cut search over 3 M '}' inside one name is bounded, and the events still read right."""
    import time

    name = "}" * (3 << 20)
    ev = [{"ph": "X", "cat": "cpu_op", "name": name, "pid": 1, "tid": 1, "ts": 1, "dur": 1},
          {"ph": "X", "cat": "cpu_op", "name": "b},{", "pid": 1, "tid": 1, "ts": 2, "dur": 1}]
    p = tmp_path / "t.json"
    p.write_bytes(json.dumps({"traceEvents": ev}).encode())
    t0 = time.monotonic()
    t = load(p, slice_bytes=1 << 20)
    assert time.monotonic() - t0 < 30
    assert t.cpu_ops["name"].to_list() == [name, "b},{"]


def test_sqlite_text_that_is_not_utf8_reads_with_replacement_characters(tmp_path) -> None:
    import sqlite3

    p = _export(tmp_path / "r.sqlite")
    con = sqlite3.connect(p)
    con.execute("UPDATE StringIds SET value = CAST(x'6b5fff5f6b' AS TEXT) WHERE id = "
                "(SELECT demangledName FROM CUPTI_ACTIVITY_KIND_KERNEL LIMIT 1)")
    con.commit()
    con.close()
    t = load(p)
    assert "k_\ufffd_k" in t.gpu_ops["name"].to_list()


def test_stdin_redirected_from_a_file(tmp_path) -> None:
    """``tracekit explain - < file``: a regular file as stdin, JSON and SQLite alike."""
    j = tmp_path / "t.json.gz"
    j.write_bytes(gzip.compress(_tiny()))
    s = _export(tmp_path / "r.sqlite")
    code = ("import sys; from tracekit.trace import load; t = load('-'); "
            "print(t.meta['format'], t.gpu_ops.height)")
    for path, want in ((j, ["kineto", "2"]), (s, ["nsys", "8"])):
        with open(path, "rb") as f:
            r = subprocess.run([sys.executable, "-c", code], stdin=f, capture_output=True,
                               text=True)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == want
