"""Write output files so that a reader never sees half a file and a failure leaves none.

The rules, as ``cp`` and editors follow them:

* a regular file (new, or one to replace) is written to a temp file beside it and renamed into
  place; the temp file is removed on every exception, Ctrl-C and SIGTERM (the CLI turns SIGTERM
  into an exception, so ``finally`` runs);
* the new file gets the mode the umask gives (``0644`` under umask 022), not ``mkstemp``'s
  ``0600``; a replaced file keeps its mode;
* a symlink is written *through*: the file it points to is replaced and the link stays. A path
  that is not a regular file — ``/dev/stdout``, a pipe, a terminal, ``/dev/full`` — is opened and
  written in place, never replaced by a file;
* every ``OSError`` (read-only directory, ``/proc``, a name too long, a full disk) becomes one
  :class:`~tracekit.errors.BadInput` naming the path and the reason.

Every output option of the command line (``explain --markdown/--html``, ``compare
--markdown/--html``, ``annotate -o``, ``capture -o``) and every table a batch or sweep writes
goes through :func:`open_output` or, for a writer that wants a file name, :func:`output_path`.
The command line's outputs behave the same way: an existing file is
replaced, an output that is one of the command's input traces is refused
(:func:`refuse_input`), and the CLI says ``wrote PATH`` on stderr for each file written.

    >>> atomic_write_text("report.md", "# hi\\n")   # doctest: +SKIP
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from tracekit.errors import BadInput, BadUsage


def _target(p: Path) -> tuple[Path, os.stat_result | None, bool]:
    """Where to write for the path the user named, what is there now (None: nothing), and whether
    to write in place (a device, a pipe, or a link into ``/proc``/``/dev`` such as ``/dev/stdout``)
    rather than by a temp file and a rename."""
    try:
        st = os.stat(p)  # follows symlinks
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise _cannot_write(p, exc) from None
    if st is not None and not stat.S_ISREG(st.st_mode) and not stat.S_ISDIR(st.st_mode):
        return p, st, True
    if p.is_symlink():
        hop = os.readlink(p)
        if hop.startswith(("/proc/", "/dev/")):
            return p, st, True  # /dev/stdout and friends: the descriptor, not a file to replace
        return Path(os.path.realpath(p)), st, False  # write through to the file the link names
    return p, st, False


@contextmanager
def open_output(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write ``path`` through; see the module docstring for the rules."""
    p = Path(path)
    target, st, in_place = _checked_target(p)
    if in_place:
        try:
            f = open(target, "wb")  # noqa: SIM115 - a device or pipe: write in place
        except OSError as exc:
            raise _cannot_write(p, exc) from None
        try:
            with f:
                yield f
        except OSError as exc:
            raise _cannot_write(p, exc) from None
        return
    with _replacing(p, target) as (fd, _tmp), os.fdopen(fd, "wb") as f:
        if st is not None:
            os.fchmod(f.fileno(), stat.S_IMODE(st.st_mode))  # a replaced file keeps its mode
        yield f


@contextmanager
def output_path(path: str | Path) -> Iterator[Path]:
    """A path to give a writer that wants a file name rather than a file (polars'
    ``write_parquet``/``sink_parquet``, the capture's gzip splice), with the same rules as
    :func:`open_output`: a temp file beside ``path``, renamed onto it when the block ends and
    removed on any exception; for a device or pipe, the path itself."""
    p = Path(path)
    target, st, in_place = _checked_target(p)
    if in_place:
        try:
            yield target
        except OSError as exc:
            raise _cannot_write(p, exc) from None
        return
    with _replacing(p, target) as (fd, tmp):
        try:
            if st is not None:
                os.fchmod(fd, stat.S_IMODE(st.st_mode))
        finally:
            os.close(fd)
        yield tmp


def _cannot_write(p: Path, exc: OSError) -> BadInput:
    """The one error for a failed write: the output's name and the system's reason."""
    return BadInput(f"cannot write {p}: {exc.strerror or exc}")


def _checked_target(p: Path) -> tuple[Path, os.stat_result | None, bool]:
    target, st, in_place = _target(p)
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise BadInput(f"{p} is a directory; name an output file")
    return target, st, in_place


@contextmanager
def _replacing(p: Path, target: Path) -> Iterator[tuple[int, Path]]:
    """A new temp file beside ``target`` (its descriptor and path), renamed onto ``target`` when
    the block ends; removed on any exception. ``OSError`` becomes ``BadInput`` naming ``p``."""
    parent = target.parent
    if not parent.exists():
        raise BadInput(f"cannot write {p}: directory {parent} does not exist")
    tmp = None
    try:
        for _ in range(100):
            # os.urandom, not secrets: secrets loads OpenSSL, ~10 ms of every CLI start-up
            tmp = parent / f".{target.name}.{os.urandom(4).hex()}.tmp"
            try:
                # 0o666 minus the umask, as open(..., "w") would create it
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                continue
        else:
            tmp = None
            raise BadInput(f"cannot write {p}: no free temp-file name in {parent}")
        yield fd, tmp
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise _cannot_write(p, exc) from None
    finally:
        if tmp is not None:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass


def refuse_input(output: str | Path, inputs: list) -> None:
    """An output path that names one of the inputs (the same file by any path) is a usage error:
    replacing it would destroy the trace being read."""
    out = Path(output)
    for src in inputs:
        if src is None or not isinstance(src, (str, Path)):
            continue
        src = Path(src)
        try:
            same = out.resolve() == src.resolve() or (out.exists() and src.exists()
                                                      and out.samefile(src))
        except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
            continue  # the reader says what is wrong with the input
        if same:
            raise BadUsage(f"the output {out} is the input trace {src}; write to another file")


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` (see the module docstring)."""
    with open_output(path) as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_all(outputs: list[tuple[str | Path, bytes]]) -> None:
    """Write several outputs, all or none: if one fails, those already written that did not exist
    before are removed again (a file that was replaced cannot be brought back)."""
    done: list[Path] = []
    try:
        for path, data in outputs:
            existed = os.path.lexists(path)
            atomic_write_bytes(path, data)
            if not existed:
                done.append(Path(path))
    except BaseException:
        for p in done:
            try:
                p.unlink(missing_ok=True)
            except OSError:
                pass
        raise
