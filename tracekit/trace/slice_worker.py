"""Decode Kineto slices in a second process, so reading uses two cores.

The streaming reader (:mod:`tracekit.trace.kineto`) spends most of its time in msgspec's decode of
each ~2 MB slice and the Python pass that turns that slice's events into columns. Inflating and
cutting the stream is cheap, so the main process keeps doing that, and hands slices to one worker
process. While the worker is busy the main process decodes the next slice itself.

The worker is forked from the reader on Linux (:class:`_Forked`): it starts in milliseconds with
msgspec, numpy and the reader already imported, and touches nothing else (no polars, no thread
of the parent's), which is what makes a fork of a process with other threads safe. Elsewhere, or
with ``TRACEKIT_READER_FORK=0``, it is a fresh interpreter (``python -c ...``, ~0.15 s of imports).

Protocol, over the worker's stdin/stdout: each message is an 8-byte little-endian length and a
payload. A request is one slice as a JSON array (``[`` + whole events + ``]``), written with one
``writev`` of the inflated chunks it is made of (no copy, and no GIL taken between pieces: the
main thread may hold it for a whole decode, which used to leave the worker waiting); a reply is a
msgpack map: the status (``ok``, ``badcut`` when the slice does not parse — a cut inside a string,
which the main process then redoes itself — or an error to raise in slice order), the slice's
counters, its *local* name dictionary and its columns as raw numpy bytes (dtype string and
buffer per column, validity masks as bool bytes; the main process reads them with
``numpy.frombuffer``). The main process merges replies strictly in slice order and remaps the
local name codes into its one dictionary, so the result is identical to reading in one process.

The worker ignores Ctrl-C (the main process handles it and kills the worker) and exits when its
stdin closes, so it never outlives the reader. ``TRACEKIT_READER_WORKERS=0`` turns it off.

This module is the main process's side and the protocol; it imports nothing of the reader. The
worker's loop is :mod:`tracekit.trace.slice_child`, which imports both.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import warnings

import msgspec

from tracekit.child import child_env

#: a frame's length prefix (little-endian)
LENGTH_BYTES = 8
#: the pipe buffer asked for (Linux's default ceiling for a user, /proc/sys/fs/pipe-max-size)
_PIPE_BYTES = 1 << 20
#: what the worker process runs (:func:`tracekit.trace.slice_child.main`); Ctrl-C is ignored from
#: before the reader's imports, which a fresh interpreter spends ~0.15 s in
_CODE = ("import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
         "from tracekit.trace.slice_child import main; main()")


def encode_part(part: tuple) -> bytes:
    """The reply for what :func:`tracekit.trace.kineto.decode_part` returned."""
    status = part[0]
    if status != "ok":
        return msgspec.msgpack.encode({"s": status, "m": part[1] if len(part) > 1 else None})
    b = part[1]
    cols, masks = {}, {}
    for key, parts in b.parts.items():
        if parts:  # one slice: at most one part per table
            c, m = parts[0]
            cols[key] = {k: (v.dtype.str, memoryview(v)) for k, v in c.items()}
            masks[key] = {k: memoryview(v) for k, v in m.items()}
    return msgspec.msgpack.encode({
        "s": "ok", "events": b.events, "no_ts": b.no_ts, "no_dur": b.no_dur,
        "bad_args": b.bad_args, "skipped": b.skipped, "names": list(b.codes), "cols": cols,
        "masks": masks,
    })


class Reply(msgspec.Struct):
    """A worker's reply, as :func:`encode_part` writes it."""

    s: str
    m: str | None = None
    events: int = 0
    no_ts: int = 0
    no_dur: int = 0
    bad_args: int = 0
    bad_bytes: int = 0
    skipped: dict[str, int] = {}
    names: list[str] = []
    #: per table, per column: (numpy dtype string, the array's bytes); views into the reply
    cols: dict[str, dict[str, tuple[str, memoryview]]] = {}
    #: per table, the validity masks (bool bytes) of columns with unknowns
    masks: dict[str, dict[str, memoryview]] = {}


REPLY_DECODER = msgspec.msgpack.Decoder(Reply)


def read_frame(stream) -> bytes | None:
    """One length-prefixed frame from ``stream``; None at the end of the stream or a cut frame."""
    head = stream.read(LENGTH_BYTES)
    if len(head) < LENGTH_BYTES:
        return None
    n = int.from_bytes(head, "little")
    body = stream.read(n)
    return body if len(body) == n else None


def _widen(pipe) -> None:
    """A 1 MiB pipe buffer instead of 64 KiB: a 2 MB slice then crosses in 2 writes, not 32
    (each a switch between the processes). Linux only; elsewhere, or over the limit, as is."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
    except (ImportError, AttributeError, OSError):
        pass


class _Forked:
    """A worker forked from this process (Linux): it has numpy, msgspec and the reader already
    imported, so it starts in milliseconds instead of ~0.15 s of imports in a fresh interpreter.
    It runs :data:`_CODE` as the spawned worker would, on the pipes as its stdin/stdout, and
    leaves with ``os._exit`` (no atexit handlers, no flushing of this process's buffers). Has the
    part of :class:`subprocess.Popen` that :class:`Worker` uses."""

    def __init__(self, path: str) -> None:
        down_r, down_w = os.pipe()
        up_r, up_w = os.pipe()
        with warnings.catch_warnings():  # 3.12+ warns on fork() with threads running; the
            warnings.simplefilter("ignore", DeprecationWarning)  # worker uses none of theirs
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the worker process
            code = 1
            try:
                os.close(down_w)
                os.close(up_r)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                sys.stdin = open(down_r)  # noqa: SIM115 - the process's own stdin
                sys.stdout = open(up_w, "w")  # noqa: SIM115
                sys.stderr = open(os.devnull, "w")  # noqa: SIM115
                sys.argv = ["-c", path]
                exec(_CODE, {"__name__": "__main__"})
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - any failure is a dead worker to the parent
                code = 1
            finally:
                os._exit(code)
        os.close(down_r)
        os.close(up_w)
        self.pid = pid
        self.returncode: int | None = None
        self.stdin = open(down_w, "wb")  # noqa: SIM115 - closed by Worker
        self.stdout = open(up_r, "rb")  # noqa: SIM115

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # pragma: no cover - reaped elsewhere
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:  # pragma: no cover - a SIGKILL is not refused
                raise subprocess.TimeoutExpired("worker", timeout)
            time.sleep(0.001)
        return self.returncode


def can_fork() -> bool:
    """Fork the worker on Linux (fast, and safe there: the worker touches nothing but its pipes,
    msgspec and numpy); elsewhere start a fresh interpreter. ``TRACEKIT_READER_FORK=0`` always
    starts a fresh interpreter."""
    return (sys.platform.startswith("linux") and hasattr(os, "fork")
            and os.environ.get("TRACEKIT_READER_FORK", "1") != "0")


class Worker:
    """The main process's handle on one worker: :meth:`submit` slices, :meth:`get` replies in the
    same order (None once the worker has died), :meth:`close` always (kills it)."""

    def __init__(self, path: str) -> None:
        if can_fork():
            self.proc = _Forked(path)
        else:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _CODE, path], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=child_env(), close_fds=True,
            )
        for pipe in (self.proc.stdin, self.proc.stdout):
            _widen(pipe)
        self.outstanding = 0
        self.dead = False
        self._send: queue.SimpleQueue = queue.SimpleQueue()
        self._recv: queue.SimpleQueue = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._writer, daemon=True),
                         threading.Thread(target=self._reader, daemon=True)]
        for t in self._threads:
            t.start()

    def _writer(self) -> None:
        w = self.proc.stdin
        fd = w.fileno()
        try:
            while (parts := self._send.get()) is not None:
                # one writev for the whole request: the kernel copies it into the pipe as the
                # worker reads, without this thread taking the GIL back between pieces (the
                # main thread may hold it for a whole slice's decode, and the worker would wait)
                bufs = [memoryview(b).cast("B")
                        for b in (sum(map(len, parts)).to_bytes(LENGTH_BYTES, "little"), *parts)]
                while bufs:
                    n = os.writev(fd, bufs)
                    while bufs and n >= len(bufs[0]):
                        n -= len(bufs[0])
                        bufs.pop(0)
                    if bufs and n:
                        bufs[0] = bufs[0][n:]
        except (OSError, ValueError):
            pass
        finally:
            try:
                w.close()
            except (OSError, ValueError):
                pass

    def _reader(self) -> None:
        r = self.proc.stdout
        try:
            while (body := read_frame(r)) is not None:
                self._recv.put(body)
        except (OSError, ValueError):
            pass
        self._recv.put(None)

    def submit(self, parts: list) -> None:
        """Send one request: the buffers ``parts`` one after the other (not joined here)."""
        self.outstanding += 1
        self._send.put(parts)

    def ready(self) -> bool:
        return not self._recv.empty()

    def get(self) -> bytes | None:
        """The next reply (blocks); None if the worker died before sending it."""
        body = None if self.dead else self._recv.get()
        if body is None:
            self.dead = True
            return None
        self.outstanding -= 1
        return body

    def stop(self) -> None:
        """End the worker now without waiting for it (:meth:`close` waits)."""
        self.dead = True
        self._send.put(None)  # the writer ends (a second None is never read)
        try:
            self.proc.kill()
        except OSError:  # pragma: no cover
            pass

    def close(self) -> None:
        self.stop()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a kill is not refused
            pass
        for t in self._threads:
            t.join(timeout=5)
        try:
            self.proc.stdout.close()
        except (OSError, ValueError):  # pragma: no cover
            pass
