"""Write output files atomically: a reader never sees half a file, a failure leaves none."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tracekit.errors import BadInput


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to a temp file beside ``path``, then rename it into place."""
    p = Path(path)
    if p.is_dir():
        raise BadInput(f"{p} is a directory; name an output file")
    if not p.parent.exists():
        raise BadInput(f"cannot write {p}: directory {p.parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))
