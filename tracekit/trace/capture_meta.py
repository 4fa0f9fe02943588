"""Check the capture metadata a trace carries (the top-level ``tracekit`` block) before trusting it.

``tracekit capture`` writes a ``tracekit`` block into each trace (schema ``tracekit.capture/1``;
Nsight exports carry it in a ``TRACEKIT_CAPTURE`` table). Later stages read numbers from it (the
context length, the unprofiled timing, the model's shapes), so a trace from anywhere must not be
able to smuggle a string where a number goes. :func:`clean_capture` keeps every key whose value has
the expected type, drops the others with one warning each, and passes unknown keys through
untouched (nothing reads them). ``null`` is "not measured" wherever capture may write it (the copy
bandwidth and the CUDA and Triton versions of a ``--device cpu`` capture): kept, without a warning.
"""

from __future__ import annotations

import math
from typing import Any


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
_GPU = {"name": _STR, "total_memory_bytes": (_opt(_is_int), "an integer >= 0 or null"),
        "sm_count": (_opt(_is_int), "an integer >= 0 or null"), "cc": (_opt(_is_str), "a string or null")}
_TOP = {
    "schema": _STR, "tracekit_version": _STR, "model_name": _STR, "ctx": _INT,
    "ctx_first_step": _INT, "mode": _STR, "dtype": _STR, "device": _STR,
    # a string before issue 7's capture work; now {"requested": ..., "kernels": [...]}
    "attention": (lambda v: type(v) in (str, dict), "a string or an object"),
    "profiler_overhead_ratio": _NUM,
    "copy_bandwidth_gbps": (_opt(lambda v: _is_num(v) and v > 0), "a finite number > 0 or null"),
    "command": (_str_list, "a list of strings"), "created": _STR, "profiler": _STR,
    "profiler_activities": (_str_list, "a list of strings"), "session": (_opt(_is_int), "an integer >= 0 or null"),
}
_NESTED = {"model": _MODEL, "timing": _TIMING, "timing_after": _TIMING, "profiled": _PROFILED,
           "timing_sessions": _TIMING_SESSIONS, "gpu_clocks_before": _CLOCKS,
           "gpu_clocks_after": _CLOCKS, "sessions": _SESSIONS, "gpu": _GPU}


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
