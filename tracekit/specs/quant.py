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

The layouts ``tracekit capture --quant`` makes with torchao (0.18) store their metadata
differently, and the floor of a capture counts them as stored (:data:`SCHEMES` maps each
``--quant`` to its format; the counts are checked against the ``nbytes`` of a quantized model's
tensors in the tests):

``int8-torchao``   int8 values, an fp32 scale and an int8 zero point per output row
                   (``Int8WeightOnlyConfig``, per-row).
``fp8-row``        e4m3 values, one fp32 scale per output row (``Float8WeightOnlyConfig``).
                   Float8 dynamic (``Float8DynamicActivationFloat8WeightConfig``) stores ``fp8``:
                   one fp32 scale per tensor.
``int4-tinygemm``  tinygemm's tile-packed int4 (``Int4WeightOnlyConfig(int4_packing_format=
                   "tile_packed_to_4d")``, run by PyTorch's ``_weight_int4pack_mm``): the matrix is
                   zero-padded to a multiple of 1024 input and 8 output features, and every group of
                   the padded matrix has a bf16 scale and a bf16 zero point. Qwen2.5-7B's 3584-wide
                   layers are stored 4096 wide: 14 % more bytes than the unpadded matrix.
``nf4-torchao``    torchao's ``NF4Tensor`` (what capture uses when bitsandbytes is absent): blocks of
                   64 with an int8 scaler each, one bf16 factor per 256 blocks, and per matrix a
                   bf16 mean and the 16-entry bf16 code book (34 bytes).

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
    #: the stored matrix is zero-padded to multiples of these (tinygemm's tile packing)
    pad_in: int = 1
    pad_out: int = 1
    #: bytes every matrix carries once (torchao NF4: its mean and code book)
    matrix_const_bytes: float = 0.0

    def matrix_bytes(self, out_features: int, in_features: int) -> float:
        """Bytes one weight matrix occupies (what a decode step reads)."""
        out_features = -(-out_features // self.pad_out) * self.pad_out
        in_features = -(-in_features // self.pad_in) * self.pad_in
        n = out_features * in_features
        values = n * self.bits / 8
        if self.granularity == "channel":
            groups = out_features
        elif self.granularity == "tensor":
            groups = 1
        else:
            group = self.group
            assert group, f"{self.name}: a {self.granularity} format names its group size"
            if self.granularity == "group":
                groups = out_features * math.ceil(in_features / group)
            else:  # block, over the flattened tensor
                groups = math.ceil(n / group)
        meta = groups * (self.scale_bytes + self.zero_bytes)
        if self.second_block:
            meta += math.ceil(groups / self.second_block) * self.second_level_bytes
        return values + meta + self.matrix_const_bytes

    def bytes_per_weight(self, *, in_features: int, out_features: int = 4096) -> float:
        return self.matrix_bytes(out_features, in_features) / (out_features * in_features)

    @property
    def label(self) -> str:
        return f"{self.name}-g{self.group}" if self.granularity == "group" else self.name


def _int4(group: int) -> WeightFormat:
    return WeightFormat("int4", 4, "group", group, scale_bytes=2.0, zero_bytes=0.5)


def _int4_tinygemm(group: int) -> WeightFormat:
    return WeightFormat("int4-tinygemm", 4, "group", group, scale_bytes=2.0, zero_bytes=2.0,
                        pad_in=1024, pad_out=8)


FORMATS: dict[str, WeightFormat] = {
    "int8": WeightFormat("int8", 8, "channel", None, scale_bytes=2.0, zero_bytes=0.0),
    "fp8": WeightFormat("fp8", 8, "tensor", None, scale_bytes=4.0, zero_bytes=0.0),
    "int4": _int4(DEFAULT_GROUP_SIZE),
    "nf4": WeightFormat("nf4", 4, "block", 64, scale_bytes=1.0, zero_bytes=0.0,
                        second_level_bytes=4.0, second_block=256),
    # the layouts torchao stores (see the module docstring)
    "int8-torchao": WeightFormat("int8-torchao", 8, "channel", None, scale_bytes=4.0,
                                 zero_bytes=1.0),
    "fp8-row": WeightFormat("fp8-row", 8, "channel", None, scale_bytes=4.0, zero_bytes=0.0),
    "int4-tinygemm": _int4_tinygemm(DEFAULT_GROUP_SIZE),
    "nf4-torchao": WeightFormat("nf4-torchao", 4, "block", 64, scale_bytes=1.0, zero_bytes=0.0,
                                second_level_bytes=2.0, second_block=256,
                                matrix_const_bytes=2.0 + 16 * 2.0),
}
_INT4 = re.compile(r"^(int4|int4-tinygemm)-g(\d+)$")
#: the formats whose group size ``--group-size`` sets
GROUPED = ("int4", "int4-tinygemm")


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
        group = int(m.group(2))
        if group < 1:
            raise BadInput(f"--group-size must be a positive integer, got {group}")
        return _int4(group) if m.group(1) == "int4" else _int4_tinygemm(group)
    raise BadInput(f"unknown quantized format {dtype!r}; known: {', '.join(FORMATS)}")


def with_group_size(dtype: str, group_size: int | None) -> str:
    """``--dtype int4 --group-size 64`` → ``int4-g64``; BadInput for a group size elsewhere."""
    if group_size is None:
        return dtype
    if group_size < 1:
        raise BadInput(f"--group-size must be a positive integer, got {group_size}")
    d = dtype.lower()
    if d not in GROUPED:
        raise BadInput(f"--group-size applies to --dtype int4 only (and int4-tinygemm, torchao's "
                       f"tile-packed int4), not {dtype!r}")
    return d if group_size == DEFAULT_GROUP_SIZE else f"{d}-g{group_size}"


@dataclass(frozen=True)
class QuantScheme:
    """One ``tracekit capture --quant`` scheme: which library quantizes, how, and the format
    (``--dtype``) its floor counts. ``kernels`` says what should run, for the reader of a trace."""

    name: str
    library: str
    method: str
    layout: str
    format: str
    kernels: str

    def floor_dtype(self, group_size: int | None = None) -> str:
        """The ``--dtype`` of this scheme's floor (``int4-tinygemm-g64`` for group size 64)."""
        if self.format in GROUPED:
            return with_group_size(self.format, group_size)
        return self.format


#: ``--quant`` → scheme. Linear layers of the decoder blocks only: ``lm_head`` and the embedding
#: stay bf16, as the study's quantized paths (AWQ, GPTQ, bitsandbytes) leave them.
SCHEMES: dict[str, QuantScheme] = {s.name: s for s in (
    QuantScheme("int8", "torchao", "weight-only", "Int8Tensor, per-row", "int8-torchao",
                "eager: int8→bf16 cast of the weight + bf16 GEMM + scale; compile may fuse them"),
    QuantScheme("int4", "torchao", "weight-only", "tile_packed_to_4d (tinygemm)", "int4-tinygemm",
                "_weight_int4pack_mm (tinygemm)"),
    QuantScheme("fp8", "torchao", "weight-only", "Float8Tensor, per-row", "fp8-row",
                "eager: dequantize (cast × scale) + bf16 GEMM; compile may fuse them"),
    QuantScheme("fp8-dynamic", "torchao", "dynamic activation + weight", "Float8Tensor, per-tensor",
                "fp8", "activation quantize + _scaled_mm (cuBLASLt fp8)"),
    QuantScheme("nf4", "torchao", "weight-only", "NF4Tensor (block 64, scaler block 256)",
                "nf4-torchao", "dequantize to bf16 (plain ops) + bf16 GEMM"),
)}
QUANT_CHOICES = ("none", *SCHEMES)


def capture_floor_dtype(meta: dict | None) -> str | None:
    """The floor format a ``tracekit capture --quant`` recorded (``quant.floor_dtype``), or None
    for an unquantized capture. The trace is not trusted: a format tracekit does not know is
    refused with the key named."""
    q = (meta or {}).get("quant") if isinstance(meta, dict) else None
    if not isinstance(q, dict):
        return None
    d = q.get("floor_dtype")
    if not isinstance(d, str) or not is_quantized(d):
        raise BadInput(f"tracekit.quant.floor_dtype must be a weight format tracekit knows "
                       f"({', '.join(FORMATS)}, int4-gN), got {d!r}")
    return d
