"""Helpers for running tracekit in child processes: what a capture session, an Nsight run, a
sweep cell and the reader's slice worker share.

* :func:`child_env`: the environment for a child ``python`` that must import this same tracekit,
  installed or not (the package's root first on ``PYTHONPATH``);
* :func:`sigterm_as_interrupt`: SIGTERM (``timeout``, a batch scheduler, a sweep stopping a
  cell) unwinds like Ctrl-C while a capture or a sweep runs, so ``finally`` blocks stop the
  children and remove temp files.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: the directory that holds the ``tracekit`` package
ROOT = str(Path(__file__).resolve().parents[1])


def child_env() -> dict:
    """This process's environment with tracekit's root first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C (``KeyboardInterrupt``) inside the block, so temp files are
    removed; outside the main thread (where Python cannot set a handler) the block runs as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)
