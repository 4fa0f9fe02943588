"""The hostile corpus (tests/hostile/corpus.py) over the CLI, in every output mode (two runs: the
terminal report written with ``--html`` and ``--markdown`` in the same run, and ``--json``).

Most cases run **in this process**: the CLI's click group invoked through click's ``CliRunner``
in the case's own working directory, with its own ``$TMPDIR`` (``tempfile.tempdir``), stdout and
stderr captured apart. Per case and mode this asserts the contract: the exit code; for bad input
exactly one line ``Error: …`` and nothing on stdout; never a ``Traceback``; no file left behind
(no partial report, no temp file beside it, nothing in ``$TMPDIR``); no raw control or bidi
character where a terminal, a Markdown viewer or a browser would show it; a warning naming the
field where the case asks for one; and, for valid traces, the invariants of the numbers
(``corpus.step_checks``).

The cases whose defence is about the process — a bound on time or memory (hangs, bombs, a sparse
5 GB file, a FIFO with no writer), standard input — and one or two of each other class (in one
mode), as a true end-to-end check, run as ``python -m tracekit …`` in a child with an address-space limit
(``RLIMIT_AS``) and a wall-clock timeout, where the time and peak RSS are asserted too (see
:func:`end_to_end`). Those children run concurrently (one per core) as soon as the first of them
is collected. The multi-GB bombs run in ``test_hostile_slow``; they and the other bounded children
are ``slow`` (``pytest -m slow``; CI runs them too), the in-process cases and the samples are not.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "hostile"))
from corpus import CASES, Case  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
AS_LIMIT = 3 << 30  # bytes of address space per child: polars alone reserves ~1.5 GB

#: cases whose defence belongs to the streaming reader (tracekit/trace/*) and is not on main yet
READER_PENDING: set[str] = set()

#: besides the cases bound in time or memory, one or two of each class also run as a child
#: process: the CLI end to end (entry point, exit status, streams) on every kind of input
E2E_SAMPLES = {
    "deep_nesting_events", "meta_list", "op_crosses_step_boundary", "pytorch_1_8_inference",
    "correlation_string", "ts_1e300", "nsys_valid", "nsys_truncated", "gzip_truncated",
    "missing_file", "out_proc", "out_dev_full", "str_kernel_esc_clear_screen",
    "config_zero_heads", "compare_no_decode_steps", "compare_str_kernel", "annotate_output_exists",
    "deep_config_floor", "launch_tid_superscript", "meta_median_fast", "copy_bytes_1e30",
}


def end_to_end(c: Case, mode: str | None = None) -> bool:
    """Whether a case (in ``mode``; None: in any mode) runs as a child process: its bound is on
    time or memory (only a process can be limited and killed), it reads standard input, or it
    samples its class end to end — in one mode (json where it has one), the other one running in
    this process."""
    if (c.stdin or c.slow or c.timeout_s != 30.0 or c.max_rss_mb != 1200
            or c.cls == "hang"):
        return True
    sample_mode = "json" if "json" in c.modes else c.modes[0]
    return c.id in E2E_SAMPLES and mode in (None, sample_mode)

#: control characters a terminal acts on, and bidi overrides/isolates (Trojan Source)
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_mb: float
    timed_out: bool
    left_in_tmp: list[str]
    new_files: list[str]
    outputs: dict[str, list[str]]  # report name → what is wrong with it
    argv: list[str]


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


#: ``text`` prints the terminal report and writes both reports in the same run; the page links
#: plotly.js (``--plotlyjs cdn``) instead of embedding the 4.6 MB library, which holds no string of
#: the trace: each case writes, reads and scans 0.3 MB instead of 5 (the inline page is checked on
#: real traces in test_reports and test_html_browser)
MODE_ARGS = {"text": ["--html", "out.html", "--markdown", "out.md", "--plotlyjs", "cdn"],
             "json": ["--json"]}


def _extra(args: list[str], mode: str) -> list[str]:
    if mode == "json":
        return MODE_ARGS["json"]
    if args[0] in ("explain", "compare") and "--html" not in args and "--markdown" not in args:
        return MODE_ARGS["text"]
    return []


# The children's environment, copied once here on the main thread: run_case runs on pool threads
# while pytest sets and unsets PYTEST_CURRENT_TEST in os.environ, and iterating os.environ then
# races with it (KeyError: 'PYTEST_CURRENT_TEST').
_BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
_BASE_ENV["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])


def run_case(c: Case, mode: str, base: Path) -> Result:
    work, tmp = base / "work", base / "tmp"
    work.mkdir(parents=True)
    tmp.mkdir()
    args = c.make(work)
    before = _files(work)
    extra = _extra(args, mode)
    env = dict(_BASE_ENV)
    env.update(TMPDIR=str(tmp), COLUMNS="120", PYTHONWARNINGS="ignore")
    stdin = open(work / c.stdin, "rb") if c.stdin else subprocess.DEVNULL
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "tracekit", *args, *extra], cwd=work, env=env,
                         stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=_limit, start_new_session=True)
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(c.timeout_s, kill)
    timer.start()
    out_chunks: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda k=k, f=f: out_chunks.__setitem__(k, f.read()))
               for k, f in (("out", p.stdout), ("err", p.stderr))]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    timer.cancel()
    for r in readers:
        r.join()
    seconds = time.monotonic() - t0
    if c.stdin:
        stdin.close()
    after = _files(work)
    # what is wrong with the reports, not the reports: keeping 5 MB of HTML per run in this process
    # would grow it, and a forked child's peak RSS counts the parent's pages before exec
    outputs = _outputs(work, args)
    return Result(
        rc=p.returncode, stdout=out_chunks.get("out", b"").decode(errors="replace"),
        stderr=out_chunks.get("err", b"").decode(errors="replace"), seconds=seconds,
        max_rss_mb=usage.ru_maxrss / 1024, timed_out=timed_out.is_set(),
        left_in_tmp=sorted(_files(tmp)), new_files=sorted(after - before), outputs=outputs,
        argv=[*args, *extra])


def run_in_process(c: Case, mode: str, base: Path) -> Result:
    """The case through the CLI's click group in this process (see the module docstring)."""
    from click.testing import CliRunner

    from tracekit.cli import app

    work, tmp = base / "work", base / "tmp"
    work.mkdir(parents=True)
    tmp.mkdir()
    here = Path.cwd()
    os.chdir(work)
    try:
        args = c.make(work)
        before = _files(work)
        extra = _extra(args, mode)
        saved_tmp, tempfile.tempdir = tempfile.tempdir, str(tmp)
        t0 = time.monotonic()
        try:
            with warnings.catch_warnings():  # as PYTHONWARNINGS=ignore does for the children
                warnings.simplefilter("ignore")
                res = CliRunner().invoke(app, [*args, *extra],
                                         env={"COLUMNS": "120", "TMPDIR": str(tmp)})
        finally:
            tempfile.tempdir = saved_tmp
        seconds = time.monotonic() - t0
        stdout, stderr = res.stdout, res.stderr
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            import traceback

            stderr += "".join(traceback.format_exception(res.exception))  # "Traceback" fails it
        after = _files(work)
        outputs = _outputs(work, args)
    finally:
        os.chdir(here)
    return Result(rc=res.exit_code, stdout=stdout, stderr=stderr, seconds=seconds, max_rss_mb=0.0,
                  timed_out=False, left_in_tmp=sorted(_files(tmp)),
                  new_files=sorted(after - before), outputs=outputs, argv=[*args, *extra])


def _outputs(work: Path, args: list[str]) -> dict[str, list[str]]:
    """What is wrong with the reports a run wrote (report name → problems)."""
    outputs = {}
    for name in ("out.html", "out.md"):
        if (work / name).is_file():
            text = (work / name).read_text(errors="replace")
            problems = []
            if BIDI.search(text):
                problems.append(f"raw bidi control in {name}")
            if "\x1b" in text:
                problems.append(f"raw ESC in {name}")
            if name == "out.html" and ("<script>alert(1)" in text or "<img src=x" in text):
                problems.append("unescaped HTML payload in out.html")
            if name == "out.md":
                problems += _markdown_tables(text)
            outputs[name] = problems
    if (work / "out.json.gz").is_file() and args[0] == "annotate":
        outputs["out.json.gz"] = _annotated_names(work / "out.json.gz")
    return outputs


def _markdown_tables(text: str) -> list[str]:
    """A cell holding an unescaped ``|`` splits the row: every row of a table must have as many
    unescaped pipes as its header."""
    problems, width = [], None
    for line in text.splitlines():
        if not line.startswith("|"):
            width = None
            continue
        n = len(re.findall(r"(?<!\\)\|", line))
        if width is None:
            width = n
        elif n != width:
            problems.append(f"table row with {n} cells' pipes, header {width}: {line[:120]!r}")
    return problems


def _annotated_names(path: Path) -> list[str]:
    """The slices annotate adds are shown by name in Perfetto: no raw control or bidi character."""
    try:
        events = json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
    except (OSError, ValueError, KeyError) as exc:
        return [f"annotated trace unreadable: {exc}"]
    ours = [e for e in events if isinstance(e, dict) and e.get("cat") == "tracekit"]
    if not any(e.get("ph") == "X" for e in ours):
        return ["annotate added no slices"]
    return [f"raw control/bidi in annotate's slice name {e['name'][:80]!r}" for e in ours
            if UNSAFE.search(str(e.get("name", "")).replace("\n", ""))]


# -- scheduling: every selected case starts at once, on a pool of one worker per core ----------
_POOL: ThreadPoolExecutor | None = None
_FUTURES: dict[tuple[str, str], Future] = {}


def _params(slow: bool):
    out = []
    for c in CASES:
        if c.slow != slow:
            continue
        for mode in c.modes:
            marks = []
            if c.id in READER_PENDING:
                marks.append(pytest.mark.xfail(strict=True, reason="reader: " + c.cls))
            if slow or (end_to_end(c, mode) and c.id not in E2E_SAMPLES):
                # the multi-GB bombs, and the children bound in time or memory (hangs, a 200 MB
                # bomb, a sparse 5 GB file, a FIFO, stdin): out of the edit-test loop
                marks.append(pytest.mark.slow)
            out.append(pytest.param(c, mode, id=f"{c.cls}/{c.id}/{mode}", marks=marks))
    return out


@pytest.fixture(scope="session")
def corpus_runs(request, tmp_path_factory):
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=max(os.cpu_count() or 2, 2))
        root = tmp_path_factory.mktemp("hostile")
        for item in request.session.items:
            cs = getattr(item, "callspec", None)
            if cs is None or "case" not in cs.params or cs.params["case"].slow:
                continue
            c, mode = cs.params["case"], cs.params["mode"]
            if not end_to_end(c, mode):
                continue  # runs in this process, in the test itself
            _FUTURES[(c.id, mode)] = _POOL.submit(run_case, c, mode, root / f"{c.id}-{mode}")
    yield _FUTURES
    _POOL.shutdown(wait=False, cancel_futures=True)


def check(c: Case, mode: str, r: Result) -> None:
    assert not r.timed_out, f"hung: killed after {c.timeout_s:.0f} s"
    both = r.stdout + r.stderr
    assert "Traceback" not in both, both[-3000:]
    want = {0: (0,), 1: (1,), 2: (2,), -1: (0, 1), -2: (1, 2)}[c.expect]
    assert r.rc in want, f"exit {r.rc}, expected {want}; stderr: {r.stderr[-2000:]}"
    assert r.max_rss_mb < c.max_rss_mb, f"peak RSS {r.max_rss_mb:.0f} MB"  # children only
    assert not r.left_in_tmp, f"left in $TMPDIR: {r.left_in_tmp}"
    if r.rc != 0:
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr[-2000:]
        assert r.stdout == "", r.stdout[:500]
        assert not UNSAFE.search(lines[0]), f"raw control character in {lines[0]!r}"
        if c.error:
            assert c.error.lower() in lines[0].lower(), lines[0]
        assert r.new_files == [], f"left behind: {r.new_files}"
        return
    assert "Error:" not in r.stderr
    expected = sorted([*(["out.html", "out.md"] if "out.html" in r.argv else []), *c.writes])
    assert sorted(r.new_files) == expected, f"written: {r.new_files}, expected {expected}"
    assert not [p for problems in r.outputs.values() for p in problems], r.outputs
    if mode == "text":
        assert not UNSAFE.search(r.stdout.replace("\n", "")), \
            f"raw control/bidi character on the terminal: {UNSAFE.search(r.stdout.replace(chr(10), ''))!r}"
    warned = " ".join((r.stdout + r.stderr).split())  # the terminal wraps a warning over lines
    if mode == "json":
        doc = json.loads(r.stdout)
        if c.check is not None:
            c.check(doc)
        warned += " " + " ".join((doc.get("warnings") if isinstance(doc, dict) else None) or [])
    if c.warns:
        assert c.warns.lower() in warned.lower(), f"no warning naming {c.warns!r}: {warned[-2000:]}"
    if c.no_warning:
        assert c.no_warning.lower() not in warned.lower(), warned[-2000:]


@pytest.mark.parametrize(("case", "mode"), _params(slow=False))
def test_hostile(case: Case, mode: str, corpus_runs, tmp_path):
    if case.root_skip and os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    if not end_to_end(case, mode):
        check(case, mode, run_in_process(case, mode, tmp_path / "run"))
        return
    fut = corpus_runs.get((case.id, mode))
    r = fut.result() if fut is not None else run_case(case, mode, tmp_path / "run")
    check(case, mode, r)


@pytest.mark.parametrize(("case", "mode"), _params(slow=True))
def test_hostile_slow(case: Case, mode: str, tmp_path):
    check(case, mode, run_case(case, mode, tmp_path / "run"))


def test_end_to_end_runs_are_few_and_cover_every_class():
    """Few runs are children (the bounded cases in each mode, a sample of each class in one mode;
    534 children took 2.5 minutes), and every class has at least one of them."""
    ids = {c.id for c in CASES}
    assert E2E_SAMPLES <= ids, E2E_SAMPLES - ids
    children = [(c, m) for c in CASES if not c.slow for m in c.modes if end_to_end(c, m)]
    assert 25 <= len(children) <= 75, len(children)
    assert {c.cls for c, _ in children} == {c.cls for c in CASES}
    assert all(len([m for m in c.modes if end_to_end(c, m)]) == 1 for c in CASES
               if c.id in E2E_SAMPLES and not end_to_end(c, "no such mode"))


def test_corpus_covers_every_class():
    classes = {c.cls for c in CASES}
    assert len(CASES) >= 150, len(CASES)
    assert {"json-decode", "int-overflow", "args-types", "tracekit-metadata", "wrong-numbers",
            "old-format-training", "hang", "input-files", "gzip", "sqlite", "output-files",
            "strings", "options", "compare", "annotate"} <= classes
