"""Make strings from a trace safe to show: no control or bidi character reaches a reader.

Every string in a report came from a file someone else wrote. A terminal acts on control
characters (``ESC [2J`` clears the screen, ``ESC ]0;`` retitles the window) and every viewer acts
on Unicode bidi controls (``U+202E`` shows ``exe.lmth`` as ``html.exe``: "Trojan Source"). Each
such character is replaced by its visible escape (``\\x1b``, ``\\u202e``), in every human output
(terminal, Markdown, HTML) and in the ``Error:`` line. ``--json`` keeps the data as it is; JSON
escapes control characters itself.

    >>> clean_text("kernel\\x1b[2J\\u202e")
    'kernel\\\\x1b[2J\\\\u202e'
"""

from __future__ import annotations

import re

#: C0 controls but tab and newline, DEL, C1 controls; bidi marks, embeddings, overrides, isolates
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(m: re.Match) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def clean_text(s: str) -> str:
    """``s`` with every control and bidi character replaced by its visible escape."""
    return UNSAFE.sub(_escape, s)


def clean(obj):
    """A copy of a JSON-like document with every string (keys too) cleaned."""
    if isinstance(obj, str):
        return clean_text(obj)
    if isinstance(obj, dict):
        return {clean(k) if isinstance(k, str) else k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj
