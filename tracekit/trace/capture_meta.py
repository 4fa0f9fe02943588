"""Check the capture metadata a trace carries (the top-level ``tracekit`` block) before trusting it.

``tracekit capture`` writes a ``tracekit`` block into each trace (schema ``tracekit.capture/1``;
Nsight exports carry it in a ``TRACEKIT_CAPTURE`` table). Later stages read numbers from it (the
context length, the unprofiled timing, the model's shapes), so a trace from anywhere must not be
able to smuggle a string where a number goes. :func:`clean_capture` keeps every key whose value has
the expected type, drops the others with one warning each, and passes unknown keys through
untouched (nothing reads them). ``null`` is "not measured" wherever capture may write it (the copy
bandwidth and the CUDA and Triton versions of a ``--device cpu`` capture): kept, without a warning.

:func:`read_capture_meta` reads the block alone, without the events (``compare``'s later sessions,
a sweep's results rows, ``capture --sessions``): from the head of the file, where capture writes
it, through the same source as the trace reader (gzip sniffed, inflation bounded) and the same
JSON limits (:mod:`tracekit.jsonio`).

    >>> read_capture_meta("sample_traces/qwen2.5-7b_ctx2048_eager.json.gz")["ctx"]  # doctest: +SKIP
    2048
"""

from __future__ import annotations

import codecs
import math
from pathlib import Path
from typing import Any

import msgspec

from tracekit import jsonio
from tracekit.trace.source import MAX_WHOLE_BYTES, open_source

#: the key capture writes its block under, first in the trace's top-level object
META_KEY = "tracekit"
#: the table that carries the same block in an Nsight Systems SQLite export (one row, key 'meta')
META_TABLE = "TRACEKIT_CAPTURE"
#: the most inflated bytes read for a block at the head (it is a few KiB; past this, the file is
#: read as one document, bounded by MAX_WHOLE_BYTES)
META_HEAD_BYTES = 16 << 20
_PREFIX = '{"' + META_KEY + '":'


class _Top(msgspec.Struct):
    """A trace's top-level object with only the capture block kept (the events are skipped)."""

    tracekit: msgspec.Raw = msgspec.Raw(b"null")


_BLOCK_ONLY = msgspec.json.Decoder(_Top)


def _value_at(text: str) -> int:
    """Where the block's value starts in ``text`` (which starts with the key): past any blanks."""
    return len(text) - len(text[len(_PREFIX):].lstrip(" \t\r\n"))


def read_capture_meta(path: str | Path) -> Any:
    """The ``tracekit`` block of the trace at ``path`` as written (not checked: see
    :func:`clean_capture`), reading only the head of the file when the block comes first, as
    capture writes it. ``None`` when there is no such key.

    Raises :class:`~tracekit.errors.TraceFormatError` for a file that cannot be read (missing,
    corrupt gzip, inflating past the bounds) and :class:`~tracekit.jsonio.JSONError` (a
    ``ValueError``) for JSON that is not valid or nests too deep."""
    with open_source(path) as src:
        chunks = src.chunks(limit=MAX_WHOLE_BYTES)
        utf8 = codecs.getincrementaldecoder("utf-8")()
        text, seen = "", 0
        for chunk in chunks:
            seen += len(chunk)
            try:
                text += utf8.decode(chunk)
            except UnicodeDecodeError as exc:
                raise jsonio.JSONError(f"not UTF-8 ({exc.reason})") from None
            if len(text) < len(_PREFIX):
                continue
            if not text.startswith(_PREFIX):
                break
            try:
                return jsonio.raw_decode(text, _value_at(text))[0]
            except jsonio.JSONError:
                if seen > META_HEAD_BYTES:
                    break
        else:
            if text.startswith(_PREFIX):  # the file ends inside the block: say why
                jsonio.raw_decode(text, _value_at(text))
    # not first (a trace another tool rewrote): the whole document, events skipped unbuilt
    with open_source(path) as src:
        data = src.read_all(limit=MAX_WHOLE_BYTES)
    try:
        return jsonio.decode(_BLOCK_ONLY.decode(data).tracekit)
    except msgspec.ValidationError:
        return None  # valid JSON, but not an object: no block
    except RecursionError:
        raise jsonio.JSONError(jsonio.TOO_DEEP) from None
    except msgspec.DecodeError as exc:
        raise jsonio.JSONError(str(exc)) from None


def _is_int(v: Any, lo: int = 0) -> bool:
    return type(v) is int and v >= lo


def _is_num(v: Any, lo: float = 0.0) -> bool:
    return type(v) in (int, float) and math.isfinite(v) and v >= lo


def _is_str(v: Any) -> bool:
    return type(v) is str


def _opt(check):
    return lambda v: v is None or check(v)


def _str_list(v: Any) -> bool:
    return type(v) is list and all(type(x) is str for x in v)


def _num_list(v: Any) -> bool:
    return type(v) is list and all(_is_num(x) for x in v)


_BOOL = (lambda v: type(v) is bool, "true or false")
_INT = (_is_int, "an integer >= 0")
_POS_INT = (lambda v: _is_int(v, 1), "an integer >= 1")
_NUM = (_is_num, "a finite number >= 0")
_STR = (_is_str, "a string")

#: ModelSpec fields, as capture writes them
_MODEL = {
    "name": _STR, "family": _STR, "layers": _POS_INT, "hidden": _POS_INT,
    "intermediate": _POS_INT, "heads": _POS_INT, "kv_heads": _POS_INT, "head_dim": _POS_INT,
    "vocab": _POS_INT, "tied_embeddings": _BOOL, "qkv_bias": _BOOL,
    "rope_theta": (lambda v: _is_num(v) and v > 0, "a finite number > 0"),
    "max_position": _POS_INT, "published_params": (_opt(_is_num), "a finite number >= 0 or null"),
}
_TIMING = {
    "steps": _INT, "warmup": _INT, "median_ms": _NUM, "p10_ms": _NUM, "p90_ms": _NUM,
    "tokens_per_s": _NUM, "unprofiled_ms": (_num_list, "a list of finite numbers"),
}
_PROFILED = {"steps": _INT, "wall_ms_per_step": _NUM}
_OPT_NUM = (_opt(_is_num), "a finite number >= 0 or null")
#: capture --sessions N: the sessions' medians, their median, mean and spread
_TIMING_SESSIONS = {"sessions": _INT, "session_medians_ms": (_num_list, "a list of finite numbers"),
                    "median_ms": _NUM, "mean_ms": _NUM, "p10_ms": _NUM, "p90_ms": _NUM}
_CLOCKS = {"sm_mhz": _OPT_NUM, "mem_mhz": _OPT_NUM, "max_sm_mhz": _OPT_NUM,
           "temperature_c": (_opt(lambda v: _is_num(v, -273.0)), "a finite number or null"),
           "power_w": _OPT_NUM, "throttle_reasons": (_opt(_is_str), "a string or null")}
_SESSIONS = {"n": _INT, "profiled_session": (_opt(_is_int), "an integer >= 0 or null"),
             "runs": (lambda v: type(v) is list and all(type(x) is dict for x in v),
                      "a list of objects")}
_HOST_CPUS = {"policy": _STR, "allowed": (_opt(_is_str), "a string or null"),
              "gpu": (_opt(lambda v: type(v) is dict), "an object or null"),
              "launching_thread": (lambda v: type(v) is dict, "an object")}
_GPU = {"name": _STR, "total_memory_bytes": (_opt(_is_int), "an integer >= 0 or null"),
        "sm_count": (_opt(_is_int), "an integer >= 0 or null"), "cc": (_opt(_is_str), "a string or null")}
_TOP = {
    "schema": _STR, "tracekit_version": _STR, "model_name": _STR, "ctx": _INT,
    "ctx_first_step": _INT, "mode": _STR, "dtype": _STR, "device": _STR,
    # a string in the first capture format; now {"requested": ..., "kernels": [...]}
    "attention": (lambda v: type(v) in (str, dict), "a string or an object"),
    "profiler_overhead_ratio": _NUM,
    "copy_bandwidth_gbps": (_opt(lambda v: _is_num(v) and v > 0), "a finite number > 0 or null"),
    "command": (_str_list, "a list of strings"), "created": _STR, "profiler": _STR,
    "profiler_activities": (_str_list, "a list of strings"), "session": (_opt(_is_int), "an integer >= 0 or null"),
}
_NESTED = {"model": _MODEL, "timing": _TIMING, "timing_after": _TIMING, "profiled": _PROFILED,
           "timing_sessions": _TIMING_SESSIONS, "gpu_clocks_before": _CLOCKS,
           "gpu_clocks_after": _CLOCKS, "sessions": _SESSIONS, "gpu": _GPU,
           "host_cpus": _HOST_CPUS}


def _describe(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null", int: "an integer", float: "a number"}.get(type(v), type(v).__name__)


def _clean(d: dict, rules: dict, where: str, warnings: list[str]) -> dict:
    out = {}
    for k, v in d.items():
        rule = rules.get(k)
        if rule is not None and not rule[0](v):
            warnings.append(f"capture metadata: ignored {where}{k} (expected {rule[1]}, "
                            f"got {_describe(v)})")
            continue
        out[k] = v
    return out


def clean_capture(block: Any) -> tuple[dict | None, list[str]]:
    """The capture block with every mistyped value dropped, and a warning for each drop."""
    if block is None:
        return None, []
    if type(block) is not dict:
        return None, [f"capture metadata: ignored the 'tracekit' block (expected an object, got "
                      f"{_describe(block)})"]
    warnings: list[str] = []
    out = _clean(block, _TOP, "", warnings)
    for key, rules in _NESTED.items():
        if key not in out:
            continue
        if type(out[key]) is not dict:
            if out[key] is not None:
                warnings.append(f"capture metadata: ignored {key} (expected an object, got "
                                f"{_describe(out[key])})")
            del out[key]
            continue
        out[key] = _clean(out[key], rules, f"{key}.", warnings)
    if "versions" in out:
        v = out["versions"]
        if type(v) is not dict:
            warnings.append(f"capture metadata: ignored versions (expected an object, got "
                            f"{_describe(v)})")
            del out["versions"]
        else:
            bad = [k for k, x in v.items() if x is not None and type(x) is not str]
            if bad:
                warnings.append("capture metadata: ignored versions." + ", versions.".join(bad)
                                + " (expected strings or null)")
                out["versions"] = {k: x for k, x in v.items() if x is None or type(x) is str}
    return out, warnings
