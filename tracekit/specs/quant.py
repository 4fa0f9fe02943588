"""Weight-only quantized formats as data: bytes a decode step reads per weight, overhead included.

A 4-bit weight is not 0.5 bytes: every group of weights carries a scale (and, asymmetric, a zero
point) that the kernel must read too. The floor of a quantized model therefore counts

* the quantized **linear weights of every layer** (q, k, v, o, gate, up, down): packed values plus
  the format's per-group / per-channel / per-block metadata, exactly as the format stores it;
* everything else at the activation dtype, bf16: embedding table and output projection (AWQ,
  GPTQ and bitsandbytes keep ``lm_head`` unquantized by default), norms, q/k/v biases, and the
  KV cache (weight-only quantization leaves the cache alone).

Formats (``--dtype``):

``int8``  8-bit integers, one bf16 scale per output channel (LLM.int8()/torchao int8 weight-only).
``fp8``   e4m3 values, one fp32 scale per tensor (per-tensor dynamic/static FP8 checkpoints).
``int4``  4-bit integers in groups of ``--group-size`` (default 128) input weights, each group with
          an fp16 scale and a packed 4-bit zero point: the AWQ / GPTQ layout (``qweight``,
          ``scales``, ``qzeros``) that Marlin and ExLlamaV2 kernels read. Spelled ``int4-g64``
          for another group size.
``nf4``   bitsandbytes 4-bit NormalFloat: blocks of 64 weights, each with an absmax; with double
          quantization (the usual QLoRA setting) that absmax is stored as 8 bits, with one fp32
          absmax per 256 blocks. The shared 16- and 256-entry code books are not counted.

    >>> fmt = weight_format("int4")
    >>> round(fmt.bytes_per_weight(in_features=3584), 4)   # 0.5 + (2 + 0.5) / 128
    0.5195
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from tracekit.errors import BadInput

DEFAULT_GROUP_SIZE = 128
#: the dtype everything that is not a quantized linear weight keeps (embeddings, lm_head, KV)
UNQUANTIZED_DTYPE = "bf16"


@dataclass(frozen=True)
class WeightFormat:
    """How a quantized linear weight ``[out_features, in_features]`` is stored."""

    name: str
    bits: int
    #: which weights share one scale: "group" (``group`` consecutive input weights of a row),
    #: "channel" (one output row), "tensor" (the whole matrix) or "block" (``group`` consecutive
    #: weights of the flattened matrix, bitsandbytes' layout)
    granularity: str
    group: int | None
    scale_bytes: float  # per group / channel / tensor / block
    zero_bytes: float  # per group (0: symmetric)
    #: nf4 double quantization: fp32 bytes per ``second_block`` blocks
    second_level_bytes: float = 0.0
    second_block: int = 0

    def matrix_bytes(self, out_features: int, in_features: int) -> float:
        """Bytes one weight matrix occupies (what a decode step reads)."""
        n = out_features * in_features
        values = n * self.bits / 8
        if self.granularity == "channel":
            groups = out_features
        elif self.granularity == "tensor":
            groups = 1
        elif self.granularity == "group":
            groups = out_features * math.ceil(in_features / self.group)
        else:  # block, over the flattened tensor
            groups = math.ceil(n / self.group)
        meta = groups * (self.scale_bytes + self.zero_bytes)
        if self.second_block:
            meta += math.ceil(groups / self.second_block) * self.second_level_bytes
        return values + meta

    def bytes_per_weight(self, *, in_features: int, out_features: int = 4096) -> float:
        return self.matrix_bytes(out_features, in_features) / (out_features * in_features)

    @property
    def label(self) -> str:
        return f"{self.name}-g{self.group}" if self.granularity == "group" else self.name


def _int4(group: int) -> WeightFormat:
    return WeightFormat("int4", 4, "group", group, scale_bytes=2.0, zero_bytes=0.5)


FORMATS: dict[str, WeightFormat] = {
    "int8": WeightFormat("int8", 8, "channel", None, scale_bytes=2.0, zero_bytes=0.0),
    "fp8": WeightFormat("fp8", 8, "tensor", None, scale_bytes=4.0, zero_bytes=0.0),
    "int4": _int4(DEFAULT_GROUP_SIZE),
    "nf4": WeightFormat("nf4", 4, "block", 64, scale_bytes=1.0, zero_bytes=0.0,
                        second_level_bytes=4.0, second_block=256),
}
_INT4 = re.compile(r"^int4-g(\d+)$")


def is_quantized(dtype: str) -> bool:
    d = dtype.lower()
    return d in FORMATS or bool(_INT4.match(d))


def weight_format(dtype: str) -> WeightFormat:
    """The format for ``--dtype`` (``int4-g64`` gives int4 with group size 64)."""
    d = dtype.lower()
    if d in FORMATS:
        return FORMATS[d]
    m = _INT4.match(d)
    if m:
        group = int(m.group(1))
        if group < 1:
            raise BadInput(f"--group-size must be a positive integer, got {group}")
        return _int4(group)
    raise BadInput(f"unknown quantized format {dtype!r}; known: {', '.join(FORMATS)}")


def with_group_size(dtype: str, group_size: int | None) -> str:
    """``--dtype int4 --group-size 64`` → ``int4-g64``; BadInput for a group size elsewhere."""
    if group_size is None:
        return dtype
    if group_size < 1:
        raise BadInput(f"--group-size must be a positive integer, got {group_size}")
    if dtype.lower() != "int4":
        raise BadInput(f"--group-size applies to --dtype int4 only, not {dtype!r}")
    return "int4" if group_size == DEFAULT_GROUP_SIZE else f"int4-g{group_size}"
