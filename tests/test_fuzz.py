"""Fuzzing of the input front end: atheris for a bounded time, hypothesis bytes, saved crashers.

* ``test_atheris[target]`` runs tests/fuzz/fuzz_readers.py (coverage-guided, libFuzzer) on the
  Kineto reader, the gzip front end and the Nsight reader for ``TRACEKIT_FUZZ_SECONDS`` each
  (5 by default, a smoke run that the suite can afford; CI runs it; a longer campaign is
  ``TRACEKIT_FUZZ_SECONDS=600 pytest tests/test_fuzz.py -k atheris``), seeded with small valid
  inputs, with a per-input timeout and an RSS limit, and fails on any crash, hang or
  out-of-memory. ``slow``. Skipped where atheris is not installed (``pip install -e '.[fuzz]'``).
* ``test_random_bytes`` is the same property over hypothesis' byte strategies, where atheris is
  not needed.
* ``test_saved_crashers`` replays every input a fuzzer ever crashed on (tests/fuzz/crashers/).
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from synth import _dumps, decode_steps

from tracekit.errors import TracekitError
from tracekit.trace import load

HERE = Path(__file__).parent / "fuzz"
REPO = Path(__file__).resolve().parents[1]
SECONDS = int(os.environ.get("TRACEKIT_FUZZ_SECONDS", "5"))


def _kineto_seed() -> bytes:
    ev = decode_steps(3, kernels_per_step=2)
    return _dumps({"deviceProperties": [{"id": 0, "name": "NVIDIA H100 80GB HBM3"}],
                   "traceEvents": ev}).encode()


def _nsys_seed(tmp: Path) -> bytes:
    from helpers import build_export

    return build_export(tmp / "seed.sqlite").read_bytes()


def _seeds(target: str, tmp: Path) -> dict[str, bytes]:
    k = _kineto_seed()
    if target == "kineto":
        return {"trace": k, "array": b"[" + k[k.index(b"[") + 1:k.rindex(b"]")] + b"]"}
    if target == "gzip":
        half = len(k) // 2
        return {"one": gzip.compress(k), "two": gzip.compress(k[:half]) + gzip.compress(k[half:])}
    return {"export": _nsys_seed(tmp)}


#: crashers whose fix belongs to the reader (tracekit/trace/*) and is not on main yet
READER_PENDING: set[str] = set()


@pytest.mark.slow
@pytest.mark.parametrize("target", [
    "kineto", "gzip", "nsys",
])
def test_atheris(target, tmp_path):
    pytest.importorskip("atheris")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, data in _seeds(target, tmp_path).items():
        (corpus / name).write_bytes(data)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "TMPDIR": str(work), "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    r = subprocess.run(
        [sys.executable, str(HERE / "fuzz_readers.py"), target, f"-max_total_time={SECONDS}",
         "-timeout=20", "-rss_limit_mb=3000", "-max_len=200000", f"-artifact_prefix={work}/",
         str(corpus)],
        env=env, cwd=work, capture_output=True, text=True, timeout=SECONDS + 120)
    crashes = sorted(p.name for p in work.iterdir() if p.name.startswith(("crash-", "timeout-",
                                                                          "oom-")))
    assert r.returncode == 0 and not crashes, (
        f"{target}: {crashes} (copy them to tests/fuzz/crashers/{target}/)\n{r.stderr[-4000:]}")


def _load_bytes(tmp: Path, data: bytes, suffix: str) -> None:
    p = tmp / f"in{suffix}"
    p.write_bytes(data)
    try:
        load(p)
    except TracekitError:
        pass


_PREFIXES = [b"", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff", b"SQLite format 3\x00",
             b'{"traceEvents": [', b'{"traceEvents": [{"ph": "X", "cat": "kernel", "ts": ']


@settings(max_examples=examples(300), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.sampled_from(_PREFIXES), body=st.binary(max_size=2000))
def test_random_bytes(prefix, body, tmp_path):
    _load_bytes(tmp_path, prefix + body, ".json")


@settings(max_examples=examples(200), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_mutated_valid_trace(data, tmp_path):
    """Flip, cut and splice bytes of a valid trace (plain or gzipped)."""
    raw = bytearray(_kineto_seed())
    if data.draw(st.booleans()):
        raw = bytearray(gzip.compress(bytes(raw)))
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "dup"]))
        if op == "flip":
            raw[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del raw[i:i + data.draw(st.integers(1, 50))]
        else:
            raw[i:i] = raw[i:i + data.draw(st.integers(1, 50))]
        if not raw:
            raw = bytearray(b"x")
    _load_bytes(tmp_path, bytes(raw), ".json")


def _crashers():
    root = HERE / "crashers"
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != "README.md")


@pytest.mark.parametrize("path", [
    pytest.param(p, marks=pytest.mark.xfail(strict=True, reason="reader: not fixed on main yet"))
    if f"{p.parent.name}/{p.name}" in READER_PENDING else p for p in _crashers()],
    ids=lambda p: f"{p.parent.name}/{p.name}")
def test_saved_crashers(path, tmp_path):
    suffix = {"kineto": ".json", "gzip": ".json.gz", "nsys": ".sqlite"}[path.parent.name]
    _load_bytes(tmp_path, path.read_bytes(), suffix)
