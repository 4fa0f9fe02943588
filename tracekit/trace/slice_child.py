"""The slice worker's process: read slices from stdin, decode each, write the replies to stdout.

The reader (:mod:`tracekit.trace.kineto`) starts it through :class:`tracekit.trace.slice_worker.Worker`,
which says how (forked, or ``python -c``) and defines the protocol. This loop is a module of its
own because it is the one place that needs both the reader's decode and the protocol: the
reader imports the worker's handle, and this imports the reader.
"""

from __future__ import annotations

import signal
import sys

from tracekit.trace.kineto import decode_part
from tracekit.trace.slice_worker import LENGTH_BYTES, encode_part, read_frame


def main() -> None:  # pragma: no cover - runs in the worker process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    path = sys.argv[1]
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    try:
        while (data := read_frame(inp)) is not None:
            reply = encode_part(decode_part(data, path))
            out.write(len(reply).to_bytes(LENGTH_BYTES, "little"))
            out.write(reply)
            out.flush()
    except (OSError, ValueError):  # the main process went away
        return
