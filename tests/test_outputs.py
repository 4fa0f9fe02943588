"""Output files: mode from the umask, modes kept, symlinks written through, devices written in
place, and no temp file left by SIGTERM, Ctrl-C or a failure — checked through the real CLI."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NSYS_GZ = REPO / "sample_traces/qwen2.5-7b_ctx2048_eager_nsys.sqlite.gz"


def _env(tmp: Path) -> dict:
    return {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}


def _cli(args: list[str], cwd: Path, *, umask: int = 0o022, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracekit", *args], cwd=cwd, env=_env(cwd),
                          capture_output=True, preexec_fn=lambda: os.umask(umask), **kw)


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_new_report_gets_the_umask_mode(tmp_path, umask):
    r = _cli(["explain", "--sample", "--markdown", "r.md"], tmp_path, umask=umask)
    assert r.returncode == 0, r.stderr
    assert _mode(tmp_path / "r.md") == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.md"]


def test_overwritten_report_keeps_its_mode(tmp_path):
    (tmp_path / "r.md").write_text("old")
    os.chmod(tmp_path / "r.md", 0o640)
    r = _cli(["explain", "--sample", "--markdown", "r.md"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert _mode(tmp_path / "r.md") == 0o640
    assert (tmp_path / "r.md").read_text().startswith("#")


def test_symlink_to_a_file_is_written_through(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real/r.md").write_text("old")
    os.symlink("real/r.md", tmp_path / "link.md")
    r = _cli(["explain", "--sample", "--markdown", "link.md"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "link.md").is_symlink()
    assert (tmp_path / "real/r.md").read_text().startswith("#")
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["r.md"]


def test_dev_stdout_is_written_not_replaced(tmp_path):
    link = tmp_path / "out"
    os.symlink("/dev/stdout", link)  # what /dev/stdout is: a link into /proc/self/fd
    r = _cli(["explain", "--sample", "--markdown", str(link), "--json"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and os.readlink(link) == "/dev/stdout"
    assert b"# " in r.stdout  # the Markdown went down the pipe


def test_failing_second_report_removes_the_first(tmp_path):
    r = _cli(["explain", "--sample", "--markdown", "r.md", "--html", "/proc/x/r.html"], tmp_path)
    assert r.returncode == 1
    assert r.stderr.decode().startswith("Error: cannot write /proc/x/r.html")
    assert list(tmp_path.iterdir()) == []


def test_sigterm_inside_a_write_removes_the_temp_file(tmp_path):
    code = (
        "import os, signal, sys\n"
        "from tracekit.cli import Terminated, _on_sigterm\n"
        "from tracekit.fileio import open_output\n"
        "signal.signal(signal.SIGTERM, _on_sigterm)\n"
        "try:\n"
        "    with open_output('r.html') as f:\n"
        "        f.write(b'half')\n"
        "        assert [p for p in os.listdir('.') if p.endswith('.tmp')]\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "except Terminated:\n"
        "    sys.exit(143)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(tmp_path))
    assert r.returncode == 143
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("delay", [0.4, 0.9, 1.5])
def test_signal_mid_run_leaves_no_file(tmp_path, sig, delay):
    """Whenever the signal lands: a complete report and exit 0, or one Error line and nothing."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**_env(tmp_path), "TMPDIR": str(tmp)}
    p = subprocess.Popen([sys.executable, "-m", "tracekit", "explain", "--sample", "--html",
                          "r.html", "--markdown", "r.md"], cwd=tmp_path, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(delay)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    files = sorted(x.name for x in tmp_path.iterdir() if x.name != "tmp")
    if p.returncode == 0:
        assert files == ["r.html", "r.md"]
    elif p.returncode == -sig:
        # the signal landed outside tracekit's handlers: in the interpreter's own start-up
        # (nothing written yet) or its tear-down after main returned (Python restores the default
        # handlers there; the reports were already complete). Either way: silent, and no partial
        # file — which is what the contract is about (the reports, if written, said so)
        assert err.decode().splitlines() in ([], ["wrote r.md", "wrote r.html"]), err
        assert files in ([], ["r.html", "r.md"])
        if files:
            assert (tmp_path / "r.html").read_text().rstrip().endswith("</html>")
    else:
        assert p.returncode in (130, 143), err
        # each report written says so ("wrote PATH") before the signal's one Error line
        lines = [x for x in err.decode().splitlines() if x.strip()]
        wrote = [x for x in lines if x.startswith("wrote ")]
        assert [x for x in lines if not x.startswith("wrote ")] in (
            ["Error: interrupted"], ["Error: terminated"]), err
        assert wrote in ([], ["wrote r.md", "wrote r.html"]), err
        # nothing, or (the signal came after both were written) both reports complete
        assert files in ([], ["r.html", "r.md"])
        if files:
            assert (tmp_path / "r.html").read_text().rstrip().endswith("</html>")
    assert list(tmp.iterdir()) == []


@pytest.mark.parametrize("delay", [0.5, 1.5])
def test_sigterm_while_inflating_an_nsys_export(tmp_path, delay):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**_env(tmp_path), "TMPDIR": str(tmp)}
    p = subprocess.Popen([sys.executable, "-m", "tracekit", "explain", str(NSYS_GZ), "--json"],
                         cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(delay)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    # 143: tracekit's handler ran; 0: the run ended first; -SIGTERM: the signal came while the
    # interpreter was starting or exiting, outside the handler's reach (nothing is being written)
    assert p.returncode in (0, 143, -signal.SIGTERM), err
    assert "Traceback" not in err.decode()
    assert list(tmp.iterdir()) == []


# --- output_path: the same rules for writers that want a file name (parquet tables, capture) ---
def test_output_path_keeps_the_mode_and_leaves_no_temp(tmp_path):
    import polars as pl

    from tracekit.fileio import output_path

    dst = tmp_path / "t.parquet"
    dst.write_bytes(b"old")
    os.chmod(dst, 0o640)
    with output_path(dst) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".t.parquet.")
        pl.DataFrame({"a": [1, 2]}).write_parquet(tmp)
        assert dst.read_bytes() == b"old"  # not replaced before the block ends
    assert pl.read_parquet(dst)["a"].to_list() == [1, 2]
    assert _mode(dst) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


@pytest.mark.parametrize("exc", [RuntimeError("polars failed"), KeyboardInterrupt()])
def test_output_path_failure_leaves_the_old_file(tmp_path, exc):
    from tracekit.fileio import output_path

    dst = tmp_path / "t.parquet"
    dst.write_bytes(b"old")
    with pytest.raises(type(exc)), output_path(dst) as tmp:
        tmp.write_bytes(b"half")
        raise exc
    assert dst.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


def test_output_path_errors_are_one_line(tmp_path):
    from tracekit.errors import BadInput
    from tracekit.fileio import output_path

    with pytest.raises(BadInput, match="does not exist"), output_path(tmp_path / "no/t.parquet"):
        pass
    with pytest.raises(BadInput, match="is a directory"), output_path(tmp_path):
        pass
