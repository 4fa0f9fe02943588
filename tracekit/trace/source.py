"""The input front end: open a trace path (or ``-``), inflate it as a bounded stream.

Every reader gets its bytes from here, so every input kind has the same guarantees:

* **what can be read** — a regular file, a pipe or FIFO (``zcat t.gz | tracekit explain -``,
  ``/dev/stdin``). Terminals, character and block devices (``/dev/zero``), sockets and
  directories are refused by their type before a byte is read. A pipe or FIFO that sends nothing
  for :data:`READ_TIMEOUT_S` seconds (a FIFO nobody writes to) is an error, not a hang.
* **gzip or not** — decided from the first bytes, never the name. Gzip is inflated incrementally
  with Intel ISA-L (``isal``; stdlib ``zlib`` if absent), member after member (``pigz`` and
  ``cat a.gz b.gz`` write several); zero padding after the last member is allowed, anything
  else there is "trailing garbage". A stream that ends inside a member is "truncated".
* **bounded** — the inflated stream stops at a limit the caller names (and the error says it).
  Memory is bounded by the chunk size: nothing here holds more than one chunk.
* **sniffing does not consume** — :meth:`Source.peek` inflates only what it needs and keeps it;
  :meth:`Source.chunks` yields those bytes first. So a pipe can be sniffed and then read.

    >>> with open_source("trace.json.gz") as src:           # doctest: +SKIP
    ...     magic = src.peek(16)
    ...     for chunk in src.chunks(limit=8 << 30): ...
"""

from __future__ import annotations

import os
import select
import stat
import sys
import types
import zlib
from collections.abc import Iterator
from pathlib import Path

from tracekit.errors import TraceFormatError

_zlib: types.ModuleType
try:  # Intel ISA-L inflates gzip about twice as fast as zlib; same API, same bytes out
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal is a dependency, but zlib is always there
    _zlib = zlib

GZIP_MAGIC = b"\x1f\x8b"
#: compressed bytes read per system call
RAW_BLOCK = 1 << 20
#: inflated bytes per chunk handed to a reader (half a Kineto slice: see kineto.SLICE_BYTES)
CHUNK = 1 << 20
#: the most inflated bytes read whole (a document the slicer cannot cut, a trace's capture
#: metadata when it is not at the head)
MAX_WHOLE_BYTES = 512 << 20
#: a pipe or FIFO that sends nothing for this long is an error ("no writer?")
READ_TIMEOUT_S = 10.0
_INFLATE_ERRORS: tuple[type[Exception], ...] = (
    (zlib.error,) if _zlib is zlib else (zlib.error, _zlib.error))


def mib(n: int) -> str:
    """A byte bound as people read it in an error: ``4096 MiB``."""
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n} bytes"


class Source:
    """One opened input. Use :func:`open_source`; close it (or use ``with``) when done."""

    def __init__(self, fd: int, name: str, *, regular: bool, size: int | None,
                 owns_fd: bool = True) -> None:
        self.name = name
        self.regular = regular
        #: on-disk size of a regular file (for a progress bar); None for pipes
        self.size = size
        #: raw (compressed) bytes read so far
        self.consumed = 0
        #: the file's path when it can be opened again by name (not standard input)
        self.path: str | None = name if owns_fd and regular else None
        self._fd = fd
        self._owns_fd = owns_fd
        self._raw_peeked = b""
        self._gzip: bool | None = None
        self._inflated_peek = b""
        self._it: Iterator[bytes] | None = None
        self._started = False

    # -- context manager --------------------------------------------------------------------
    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0 and self._owns_fd:
            os.close(self._fd)
        self._fd = -1

    # -- raw reads ------------------------------------------------------------------------
    def _read_raw(self, n: int = RAW_BLOCK) -> bytes:
        if not self.regular:
            ready, _, _ = select.select([self._fd], [], [], READ_TIMEOUT_S)
            if not ready:
                raise TraceFormatError(
                    f"{self.name} sent no data for {READ_TIMEOUT_S:.0f} s (a pipe or FIFO with no "
                    "writer?); write the trace to a file and pass its path"
                )
        try:
            data = os.read(self._fd, n)
        except BlockingIOError:  # a non-blocking FIFO between select and read: try again
            return self._read_raw(n)
        except OSError as exc:
            raise TraceFormatError(f"cannot read {self.name}: {exc.strerror or exc}") from None
        self.consumed += len(data)
        return data

    @property
    def is_gzip(self) -> bool:
        if self._gzip is None:
            while len(self._raw_peeked) < 2:
                more = self._read_raw()
                if not more:
                    break
                self._raw_peeked += more
            self._gzip = self._raw_peeked[:2] == GZIP_MAGIC
        return self._gzip

    # -- inflated stream --------------------------------------------------------------------
    def peek(self, n: int, *, limit: int = 1 << 62) -> bytes:
        """The first ``n`` inflated bytes (fewer if the input is shorter); consumes nothing."""
        if self._started:
            raise RuntimeError("peek() after chunks()")
        if self._it is None:
            self._it = self._inflate(limit)
        while len(self._inflated_peek) < n:
            chunk = next(self._it, None)
            if chunk is None:
                break
            self._inflated_peek += chunk
        return self._inflated_peek[:n]

    def chunks(self, *, limit: int) -> Iterator[bytes]:
        """The inflated content in chunks of at most :data:`CHUNK` bytes, never past ``limit``."""
        if self._started:
            raise RuntimeError("chunks() can be iterated once")
        self._started = True
        total = 0
        if self._inflated_peek:
            total += len(self._inflated_peek)
            _check_limit(total, limit, self.name)
            yield self._inflated_peek
            self._inflated_peek = b""
        if self._it is None:
            self._it = self._inflate(limit)
        for chunk in self._it:
            total += len(chunk)
            _check_limit(total, limit, self.name)
            yield chunk

    def read_all(self, *, limit: int) -> bytes:
        """The whole inflated content (at most ``limit`` bytes) as one ``bytes``."""
        return b"".join(self.chunks(limit=limit))

    def _raw_blocks(self) -> Iterator[bytes]:
        if self._raw_peeked:
            yield self._raw_peeked
            self._raw_peeked = b""
        while block := self._read_raw():
            yield block

    def _inflate(self, limit: int) -> Iterator[bytes]:
        if not self.is_gzip:
            total = 0
            for block in self._raw_blocks():
                total += len(block)
                _check_limit(total, limit, self.name)
                yield block
            return
        yield from self._gunzip(limit)

    def _gunzip(self, limit: int) -> Iterator[bytes]:
        d = None  # the current member's inflater; None between members
        total = 0
        data = b""
        blocks = self._raw_blocks()
        while True:
            if not data:
                data = next(blocks, b"")
                if not data:
                    break
            if d is None:
                data = data.lstrip(b"\x00")  # zero padding after a member is allowed
                if not data:
                    continue
                if len(data) < 2:
                    more = next(blocks, b"")
                    if more:
                        data += more
                        continue
                if data[:2] != GZIP_MAGIC:
                    raise TraceFormatError(
                        f"{self.name} has trailing garbage after its gzip stream; "
                        "copy it again or re-export the trace"
                    )
                d = _zlib.decompressobj(wbits=31)
            while True:
                try:
                    out = d.decompress(data, CHUNK)
                except _INFLATE_ERRORS as exc:
                    raise TraceFormatError(
                        f"{self.name} is a corrupt gzip file ({exc}); copy it again"
                    ) from None
                if out:
                    total += len(out)
                    _check_limit(total, limit, self.name)
                    yield out
                if d.eof:
                    data = d.unused_data
                    d = None
                    break
                data = d.unconsumed_tail
                if not data and len(out) < CHUNK:
                    break  # this block is used up: read the next one
        if d is not None:
            raise TraceFormatError(
                f"{self.name} is a corrupt or truncated gzip file (it ends before the compressed "
                "stream does); copy it again or re-export the trace"
            )


def _check_limit(total: int, limit: int, name: str) -> None:
    if total > limit:
        raise TraceFormatError(
            f"{name} inflates to more than {mib(limit)}; refusing to read it "
            "(tracekit's bound for this input; profile a shorter window)"
        )


def open_source(path: str | Path) -> Source:
    """Open ``path`` for reading; ``-`` is standard input. Refuses what cannot be a trace file."""
    if str(path) == "-":
        fd = sys.stdin.fileno() if sys.stdin is not None else -1
        if fd < 0:
            raise TraceFormatError("standard input is closed; pass a trace file")
        return _from_fd(fd, "standard input", owns_fd=False)
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise TraceFormatError(f"{p} does not exist") from None
    except OSError as exc:
        raise TraceFormatError(f"cannot read {p}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise TraceFormatError(f"{p} is a directory; pass a trace file")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        raise TraceFormatError(
            f"{p} is not a regular file or a pipe (a device or socket); pass a trace file"
        )
    flags = os.O_RDONLY | (os.O_NONBLOCK if stat.S_ISFIFO(st.st_mode) else 0)
    try:
        fd = os.open(p, flags)
    except OSError as exc:
        raise TraceFormatError(f"cannot read {p}: {exc.strerror or exc}") from None
    return _from_fd(fd, str(p), owns_fd=True)


def _from_fd(fd: int, name: str, *, owns_fd: bool) -> Source:
    try:
        st = os.fstat(fd)
    except OSError as exc:
        raise TraceFormatError(f"cannot read {name}: {exc.strerror or exc}") from None
    if stat.S_ISREG(st.st_mode):
        return Source(fd, name, regular=True, size=st.st_size, owns_fd=owns_fd)
    if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode) and not owns_fd:
        return Source(fd, name, regular=False, size=None, owns_fd=owns_fd)
    if owns_fd:
        os.close(fd)
    what = "a terminal" if os.isatty(fd) else "not a regular file or a pipe"
    raise TraceFormatError(f"{name} is {what}; pass a trace file or pipe one in")
