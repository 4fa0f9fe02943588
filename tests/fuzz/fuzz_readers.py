"""Coverage-guided fuzzing of tracekit's input front end with atheris (libFuzzer for Python).

One target per reader, chosen by the first argument: ``kineto`` (JSON bytes), ``gzip`` (the bytes
of a .json.gz) and ``nsys`` (the bytes of an Nsight SQLite export). Each input is written to a file
and read with :func:`tracekit.trace.load`, as the CLI reads it. Refusing an input with a
:class:`~tracekit.errors.TracekitError` is the contract; any other exception is a crash, which
libFuzzer saves as ``crash-<sha1>``: copy it to ``tests/fuzz/crashers/<target>/`` and it becomes
a regression case (tests/test_fuzz.py replays every file there).

    python tests/fuzz/fuzz_readers.py kineto -max_total_time=60 -rss_limit_mb=3000
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["tracekit"]):
    from tracekit.errors import TracekitError
    from tracekit.trace import load

TARGET = sys.argv.pop(1) if len(sys.argv) > 1 else "kineto"
SUFFIX = {"kineto": ".json", "gzip": ".json.gz", "nsys": ".sqlite"}[TARGET]
_DIR = tempfile.mkdtemp(prefix="tracekit-fuzz-")
_PATH = Path(_DIR) / f"input{SUFFIX}"


def read_one(data: bytes) -> None:
    """The property: load() returns a trace or raises TracekitError, nothing else."""
    _PATH.write_bytes(data)
    try:
        load(_PATH)
    except TracekitError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, read_one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
