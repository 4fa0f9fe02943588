"""Model architectures as data: what a batch-1 decode step must read and write.

A decode step of a dense transformer reads every weight once (the embedding table only one row of
it), reads the whole KV cache at the step's context length and writes one token's K and V per
layer. Those bytes over the memory bandwidth are the step's floor (see ``tracekit/floor.py``).

Parameter counts are *computed* from the shapes below (tests compare them with the published
ones), never typed in. The shapes are the public ``config.json`` values of each model.

    >>> spec = get_model("qwen2.5-7b")
    >>> round(spec.param_count() / 1e9, 2)
    7.62
    >>> spec.kv_bytes_per_token("bf16")  # 28 layers x (K+V) x 4 kv heads x 128 x 2 bytes
    57344
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from tracekit import jsonio
from tracekit.errors import BadInput
from tracekit.specs.quant import UNQUANTIZED_DTYPE, is_quantized, weight_format

#: bytes per element of the dtypes tracekit knows
DTYPE_BYTES: dict[str, int] = {
    "fp32": 4, "float32": 4, "tf32": 4,
    "bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2, "half": 2,
}  # int8, fp8, int4, nf4: weight-only quantized formats, tracekit/specs/quant.py


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of a plain dtype (quantized formats: see :mod:`tracekit.specs.quant`)."""
    try:
        return DTYPE_BYTES[dtype.lower().removeprefix("torch.")]
    except KeyError:
        raise BadInput(f"unknown dtype {dtype!r}; known: {', '.join(sorted(DTYPE_BYTES))}, "
                       "and the weight-only formats int8, fp8, int4 (--group-size), nf4") from None


#: the largest value each shape may take (ten times the largest models of 2026), as a sanity bound
_SHAPE_LIMITS = {"layers": 10_000, "hidden": 1 << 20, "intermediate": 1 << 22, "heads": 1 << 14,
                 "kv_heads": 1 << 14, "head_dim": 1 << 14, "vocab": 1 << 26}
#: the longest context tracekit computes a floor for (tokens)
MAX_CTX = 1 << 30


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only GQA transformer (Llama/Qwen2/Mistral family), by its shapes."""

    name: str
    family: str  # transformers model_type: "qwen2", "llama", "mistral"
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied_embeddings: bool = False
    qkv_bias: bool = False
    rope_theta: float = 10000.0
    max_position: int = 32768
    published_params: float | None = None  # for the record; never used in arithmetic
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        # shapes come from files (config.json, a trace's metadata): 0 heads, Infinity or a negative
        # layer count would give a nonsense floor or divide by zero, so they are refused here
        for name, hi in _SHAPE_LIMITS.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
                raise BadInput(f"model config {self.name!r}: {name} must be a whole number from 1 "
                               f"to {hi}, got {v!r}")

    # -- parameter counts -------------------------------------------------------------------
    def layer_params(self) -> int:
        q = self.hidden * self.heads * self.head_dim
        kv = 2 * self.hidden * self.kv_heads * self.head_dim
        o = self.heads * self.head_dim * self.hidden
        bias = (self.heads + 2 * self.kv_heads) * self.head_dim if self.qkv_bias else 0
        mlp = 3 * self.hidden * self.intermediate  # gate, up, down (SwiGLU)
        norms = 2 * self.hidden
        return q + kv + o + bias + mlp + norms

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(out_features, in_features) of each linear weight of one layer: q, k, v, o, gate, up,
        down — the matrices a weight-only quantized format stores."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        h, i = self.hidden, self.intermediate
        return [(q, h), (kv, h), (kv, h), (h, q), (i, h), (i, h), (h, i)]

    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    def lm_head_params(self) -> int:
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    def param_count(self) -> int:
        return (
            self.embedding_params()
            + self.layers * self.layer_params()
            + self.hidden  # final norm
            + self.lm_head_params()
        )

    # -- bytes ------------------------------------------------------------------------------
    def kv_bytes_per_token(self, dtype: str = "bf16") -> int:
        """K and V of one token, all layers. A weight-only quantized ``dtype`` keeps a bf16 cache."""
        kv = UNQUANTIZED_DTYPE if is_quantized(dtype) else dtype
        return self.layers * 2 * self.kv_heads * self.head_dim * dtype_bytes(kv)

    def _layer_bytes(self, dtype: str) -> int:
        """One layer's weights: quantized linear matrices (with their scales and zeros) plus the
        rest (norms, biases) at bf16; or every parameter at a plain dtype."""
        if not is_quantized(dtype):
            return self.layer_params() * dtype_bytes(dtype)
        fmt = weight_format(dtype)
        linear = sum(fmt.matrix_bytes(o, i) for o, i in self.linear_shapes())
        rest = self.layer_params() - sum(o * i for o, i in self.linear_shapes())
        return round(linear) + rest * dtype_bytes(UNQUANTIZED_DTYPE)

    def _plain(self, dtype: str) -> int:
        """Bytes per element of what a quantized format leaves unquantized (or of ``dtype``)."""
        return dtype_bytes(UNQUANTIZED_DTYPE if is_quantized(dtype) else dtype)

    def weight_bytes(self, dtype: str = "bf16") -> int:
        """All weights, the embedding table counted once even when tied."""
        b = self._plain(dtype)
        return (self.layers * self._layer_bytes(dtype)
                + (self.embedding_params() + self.hidden + self.lm_head_params()) * b)

    def weight_bytes_read_per_step(self, dtype: str = "bf16") -> int:
        """What one decode step really reads: one embedding row; lm_head (or the tied table) in full."""
        b = self._plain(dtype)
        body = self.layers * self._layer_bytes(dtype) + self.hidden * b  # + the final norm
        if self.tied_embeddings:
            # the tied table is read in full by the output projection; the lookup row is inside it
            return body + self.embedding_params() * b
        return body + (self.hidden + self.lm_head_params()) * b

    def gemm_bytes(self, dtype: str = "bf16") -> int:
        """Weight bytes the GEMM/GEMV kernels of one step read: every layer's linear weights
        (quantized formats with their metadata) and the vocab × hidden output projection."""
        b = self._plain(dtype)
        if is_quantized(dtype):
            fmt = weight_format(dtype)
            linear = round(sum(fmt.matrix_bytes(o, i) for o, i in self.linear_shapes()))
        else:
            linear = sum(o * i for o, i in self.linear_shapes()) * b
        return self.layers * linear + self.vocab * self.hidden * b

    def step_bytes(self, ctx: int, dtype: str = "bf16", convention: str = "exact") -> dict[str, int]:
        """Bytes moved by one decode step at context length ``ctx``.

        ``exact``: weights actually read + KV read at ``ctx`` + one token's KV written.
        ``all-weights``: the study's (W + K): every weight byte + the KV cache at ``ctx``.
        """
        kv_read = ctx * self.kv_bytes_per_token(dtype)
        if convention == "exact":
            weights = self.weight_bytes_read_per_step(dtype)
            kv_write = self.kv_bytes_per_token(dtype)
        elif convention == "all-weights":
            weights = self.weight_bytes(dtype)
            kv_write = 0
        else:
            raise BadInput(f"unknown byte convention {convention!r}; known: exact, all-weights")
        return {
            "weights": weights,
            "kv_read": kv_read,
            "kv_write": kv_write,
            "total": weights + kv_read + kv_write,
        }

    # -- interop ----------------------------------------------------------------------------
    def hf_config(self) -> dict:
        """Keyword arguments for ``transformers.AutoConfig.for_model`` (no transformers import)."""
        cfg = dict(
            model_type=self.family,
            hidden_size=self.hidden,
            intermediate_size=self.intermediate,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            num_key_value_heads=self.kv_heads,
            head_dim=self.head_dim,
            vocab_size=self.vocab,
            tie_word_embeddings=self.tied_embeddings,
            rope_theta=self.rope_theta,
            max_position_embeddings=self.max_position,
        )
        if self.family == "llama":
            cfg["attention_bias"] = self.qkv_bias
        if self.family in ("mistral", "qwen2"):
            # full attention over the whole context, as the published checkpoints (Mistral-7B
            # v0.3's config.json has "sliding_window": null; Qwen2.5 has use_sliding_window false)
            # and as the floor counts it. transformers' MistralConfig defaults to a 4096-token
            # window, which would cap the KV read and, from ctx 4096 on, make CUDA Graphs capture
            # fail in its sliding-window cache.
            cfg["sliding_window"] = None
            if self.family == "qwen2":
                cfg["use_sliding_window"] = False
        return cfg

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("extra")
        d["params"] = self.param_count()
        d["kv_bytes_per_token_bf16"] = self.kv_bytes_per_token("bf16")
        return d


MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in [
        ModelSpec("qwen2.5-7b", "qwen2", 28, 3584, 18944, 28, 4, 128, 152064,
                  qkv_bias=True, rope_theta=1e6, published_params=7.62e9),
        ModelSpec("qwen2.5-1.5b", "qwen2", 28, 1536, 8960, 12, 2, 128, 151936,
                  tied_embeddings=True, qkv_bias=True, rope_theta=1e6, published_params=1.54e9),
        ModelSpec("qwen2.5-0.5b", "qwen2", 24, 896, 4864, 14, 2, 64, 151936,
                  tied_embeddings=True, qkv_bias=True, rope_theta=1e6, published_params=0.49e9),
        ModelSpec("llama-3.1-8b", "llama", 32, 4096, 14336, 32, 8, 128, 128256,
                  rope_theta=5e5, max_position=131072, published_params=8.03e9),
        ModelSpec("llama-3.2-3b", "llama", 28, 3072, 8192, 24, 8, 128, 128256,
                  tied_embeddings=True, rope_theta=5e5, max_position=131072, published_params=3.21e9),
        ModelSpec("llama-3.2-1b", "llama", 16, 2048, 8192, 32, 8, 64, 128256,
                  tied_embeddings=True, rope_theta=5e5, max_position=131072, published_params=1.24e9),
        ModelSpec("mistral-7b", "mistral", 32, 4096, 14336, 32, 8, 128, 32768,
                  rope_theta=1e6, published_params=7.25e9),
        # a few-kB model for tests and CPU capture; the llama family so transformers builds it
        ModelSpec("tiny", "llama", 2, 64, 128, 4, 2, 16, 512, max_position=4096),
    ]
}

_ALIASES = {
    "qwen2.5-7b-instruct": "qwen2.5-7b", "qwen/qwen2.5-7b": "qwen2.5-7b",
    "qwen/qwen2.5-7b-instruct": "qwen2.5-7b", "meta-llama/llama-3.1-8b": "llama-3.1-8b",
    "meta-llama/llama-3.1-8b-instruct": "llama-3.1-8b", "llama-3.1-8b-instruct": "llama-3.1-8b",
    "mistralai/mistral-7b-v0.3": "mistral-7b", "mistral-7b-v0.3": "mistral-7b",
    "mistral-7b-instruct-v0.3": "mistral-7b",
}


def known_models() -> list[str]:
    return list(MODELS)


def get_model(name: str) -> ModelSpec:
    """A registry model by name (case-insensitive), or a spec read from a ``config.json``/checkpoint dir."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key in MODELS:
        return MODELS[key]
    path = Path(name)
    if path.is_dir() and (path / "config.json").is_file():
        return spec_from_hf_config(path / "config.json")
    if path.is_file() and path.suffix == ".json":
        return spec_from_hf_config(path)
    raise BadInput(
        f"unknown model {name!r}; known: {', '.join(known_models())} "
        "(or pass a path to a Hugging Face config.json or checkpoint directory)"
    )


def spec_from_hf_config(path: Path) -> ModelSpec:
    """Read a Hugging Face ``config.json`` of a Llama/Qwen2/Mistral-style model."""
    try:
        cfg = jsonio.decode(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read model config {str(path)!r}: {exc}") from None
    if not isinstance(cfg, dict):
        raise BadInput(f"{str(path)!r} is not a Hugging Face config.json (expected a JSON object)")
    cfg = cfg.get("text_config", cfg)
    if not isinstance(cfg, dict):
        raise BadInput(f"{str(path)!r} is not a Hugging Face config.json (text_config is not an object)")

    try:
        heads = _whole(cfg["num_attention_heads"])
        hidden = _whole(cfg["hidden_size"])
        family = str(cfg.get("model_type", "llama"))
        return ModelSpec(
            name=str(cfg.get("_name_or_path") or Path(path).parent.name or family),
            family=family,
            layers=_whole(cfg["num_hidden_layers"]),
            hidden=hidden,
            intermediate=_whole(cfg["intermediate_size"]),
            heads=heads,
            kv_heads=_whole(_given(cfg, "num_key_value_heads", heads)),
            head_dim=_whole(_given(cfg, "head_dim", hidden // heads if heads > 0 else 0)),
            vocab=_whole(cfg["vocab_size"]),
            tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            qkv_bias=bool(cfg.get("attention_bias", family == "qwen2")),
            rope_theta=float(cfg.get("rope_theta", 10000.0)),
            max_position=_whole(cfg.get("max_position_embeddings", 32768)),
            # capture builds the model from this file, so details the spec does not model
            # (rope scaling, norm epsilon, ...) stay as the checkpoint has them
            extra={"hf_config_path": str(Path(path).resolve())},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BadInput(
            f"model config {str(path)!r} lacks a field tracekit needs or holds a bad value "
            f"({exc}); it needs whole numbers num_hidden_layers, hidden_size, intermediate_size, "
            "num_attention_heads and vocab_size"
        ) from None


def _whole(v) -> int:
    """A count from a config file: 4.0 is 4; 4.5, "4", true, Infinity and NaN are refused."""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"expected a whole number, got {v!r}")
    return v


def _given(cfg: dict, key: str, default):
    """``cfg[key]`` unless it is absent or null (HF's meaning of "derive it"); 0 stays 0."""
    v = cfg.get(key)
    return default if v is None else v
