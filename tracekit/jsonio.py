"""JSON that tracekit reads besides a trace's events, through one decoder with one set of limits.

A model's ``config.json`` (``--model``), the capture metadata in an Nsight export's
``TRACEKIT_CAPTURE`` table or at the head of a trace (``compare``, ``capture --sessions``), the
lines of a sweep's ``cells.jsonl``: each is a small document from a file anyone can edit. The
stdlib's ``json`` and msgspec both recurse once per nesting level, so a document nested 100,000
levels deep raised ``RecursionError`` wherever it was read. Here every such read goes through
:func:`decode` (or :func:`raw_decode` for a document that is followed by more text), and every
failure — nesting too deep, bad syntax, bytes that are not UTF-8 — is one :class:`JSONError`, a
``ValueError`` whose message says what was wrong. Callers turn it into ``BadInput`` naming their
file. The events of a trace are read by the streaming reader (:mod:`tracekit.trace.kineto`),
which has the same bound. What tracekit writes goes through :func:`json_safe` first, so it stays
strict JSON (a ``NaN`` becomes ``null``).

    >>> decode(b'{"a": [1, 2]}')
    {'a': [1, 2]}
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec

#: what a RecursionError means to a user: the file is not what its name says
TOO_DEEP = ("nested deeper than tracekit reads (a config or metadata block is a few levels deep, "
            "so the file is corrupt or not what it claims to be)")


class JSONError(ValueError):
    """A JSON document tracekit cannot read; the message says why, without a file name."""


def decode(data: bytes | str) -> Any:
    """The document in ``data`` (msgspec: strict JSON, so ``NaN`` and trailing text are errors)."""
    try:
        return msgspec.json.decode(data)
    except RecursionError:
        raise JSONError(TOO_DEEP) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise JSONError(str(exc)) from None


def raw_decode(text: str, index: int = 0) -> tuple[Any, int]:
    """The document that starts at ``text[index]`` and where it ends (``json.JSONDecoder.raw_decode``,
    for a document followed by more text), with the same errors as :func:`decode`."""
    try:
        return json.JSONDecoder().raw_decode(text, index)
    except RecursionError:
        raise JSONError(TOO_DEEP) from None
    except json.JSONDecodeError as exc:
        raise JSONError(str(exc)) from None


def json_safe(value):
    """``value`` with every non-finite float as ``None`` (``null``), dict keys as strings and tuples
    as lists: what tracekit writes must stay strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value
