"""Build the torch model a capture decodes with, and refuse early when it cannot fit.

By default the model is built from its architecture alone (``transformers``' ``from_config``,
directly on the device, SDPA attention) and its weights are drawn at random: batch-1 decode time
depends on shapes and bytes, not on what the weights say, and nothing is downloaded. The weights
are filled explicitly (normal, std 0.02) because a freshly built model may hold zeros or
uninitialised memory, and kernels can run faster on zeros than on real data. ``--weights DIR``
loads a local checkpoint instead, offline.

    tracekit capture --model qwen2.5-7b --ctx 8192        # random weights, built on the GPU
    tracekit capture --weights ~/ckpt/Qwen2.5-7B --ctx 8192  # a checkpoint on disk, no network
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tracekit import jsonio
from tracekit.errors import BadInput, BadUsage, CaptureError
from tracekit.specs.models import ModelSpec, dtype_bytes, get_model

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: tracekit dtype name -> torch dtype attribute
TORCH_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}

#: random weights: a Llama-style initializer range, so activations stay finite in bf16
WEIGHT_STD = 0.02

_GB = 1e9


def resolve_spec(*, model: str | None, weights: Path | None) -> ModelSpec:
    """The spec a capture runs. With ``--weights`` the checkpoint's own config.json is the truth."""
    if weights is None:
        assert model is not None
        return get_model(model)
    if not (Path(weights).is_dir() and (Path(weights) / "config.json").is_file()):
        raise BadInput(
            f"--weights {str(weights)!r} is not a checkpoint directory (it needs a config.json)"
        )
    spec = get_model(str(weights))
    if model is None:
        return spec
    named = get_model(model)
    if _shape(named) != _shape(spec):
        raise BadUsage(
            f"--model {model!r} does not match the checkpoint in {str(weights)!r} "
            f"({named.param_count() / 1e9:.2f} B vs {spec.param_count() / 1e9:.2f} B parameters); "
            "drop --model to use the checkpoint's own config"
        )
    return replace(spec, name=named.name, published_params=named.published_params)


def _shape(spec: ModelSpec) -> tuple:
    return (
        spec.layers,
        spec.hidden,
        spec.intermediate,
        spec.heads,
        spec.kv_heads,
        spec.head_dim,
        spec.vocab,
        spec.tied_embeddings,
    )


def resolve_dtype(dtype: str, device: str) -> str:
    if dtype == "auto":
        return "bf16" if device == "cuda" else "fp32"
    return dtype


def torch_dtype(dtype: str) -> torch.dtype:
    import torch

    return getattr(torch, TORCH_DTYPES[dtype])


def check_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        raise CaptureError(
            "no CUDA device found; use --device cpu for small models such as tiny "
            f"(torch {torch.__version__}"
            + (", a CPU-only build)" if torch.version.cuda is None else ")")
        )


def memory_needed(spec: ModelSpec, *, dtype: str, kv_len: int) -> dict[str, int]:
    """Bytes the weights and a KV cache of ``kv_len`` tokens take, from the spec alone."""
    weights = spec.param_count() * dtype_bytes(dtype)
    kv = spec.kv_bytes_per_token(dtype) * kv_len
    return {"weights": weights, "kv": kv, "total": weights + kv}


def device_memory(device: str) -> tuple[int, str]:
    """Total memory of the device the model goes on, and a name for messages."""
    if device == "cuda":
        import torch

        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        return int(props.total_memory), f"the GPU ({props.name})"
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: nothing to check against
        total = 0
    return int(total), "this machine's RAM"


def check_memory(spec: ModelSpec, *, dtype: str, ctx: int, kv_len: int, device: str) -> dict:
    """Fail *before allocating* when weights + KV cannot fit the device's memory.

    Activations of batch-1 decode are tiny next to these two; the prefill's activations are not
    counted, and a run that still runs out of memory gets a :class:`CaptureError` then.
    """
    need = memory_needed(spec, dtype=dtype, kv_len=kv_len)
    total, where = device_memory(device)
    if total and need["total"] > total:
        raise CaptureError(
            f"{spec.name} at ctx {ctx} needs {need['total'] / _GB:.1f} GB "
            f"(weights {need['weights'] / _GB:.1f} GB + KV cache {need['kv'] / _GB:.1f} GB "
            f"for {kv_len} tokens in {dtype}) but {where} has {total / _GB:.1f} GB; "
            "use a smaller --ctx or model"
        )
    return {**need, "device_total": total}


def hf_config(spec: ModelSpec) -> Any:
    """A transformers config: the checkpoint's own file when the spec came from one."""
    from transformers import AutoConfig

    path = spec.extra.get("hf_config_path")
    if path:
        kw = jsonio.decode(Path(path).read_bytes())
        kw = kw.get("text_config", kw)
    else:
        kw = spec.hf_config()
    kw = {k: v for k, v in kw.items() if not k.startswith("_")}
    try:
        return AutoConfig.for_model(kw.pop("model_type", spec.family), **kw)
    except (ValueError, KeyError) as exc:
        raise BadInput(f"transformers cannot build model type {spec.family!r}: {exc}") from None


def build_model(
    spec: ModelSpec,
    *,
    device: str,
    dtype: str,
    weights: Path | None = None,
    seed: int = 0,
    attention: str = "sdpa",
) -> torch.nn.Module:
    """The model in eval mode on ``device``: random weights, or ``weights`` loaded offline.

    ``attention`` is ``eager`` (transformers' matmul + softmax) or any ``sdpa*`` (the SDPA path;
    which SDPA backend runs is chosen at call time, see :func:`tracekit.capture.modes.attention_backend`).
    """
    from transformers import AutoModelForCausalLM

    tdtype = torch_dtype(dtype)
    attn_impl = "eager" if attention == "eager" else "sdpa"
    if weights is not None:
        # straight onto the device when accelerate can place it (no second copy in host RAM)
        placed = {"device_map": device} if importlib.util.find_spec("accelerate") else {}
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(weights),
                dtype=tdtype,
                attn_implementation=attn_impl,
                local_files_only=True,
                **placed,
            )
        except (OSError, ValueError) as exc:
            raise BadInput(f"cannot load the checkpoint in {str(weights)!r}: {exc}") from None
        model = model.to(device)
    else:
        import torch

        with torch.device(device):
            model = AutoModelForCausalLM.from_config(
                hf_config(spec), dtype=tdtype, attn_implementation=attn_impl
            )
        randomize_weights(model, seed=seed)
    return model.eval().requires_grad_(False)


def randomize_weights(model: torch.nn.Module, *, seed: int = 0) -> None:
    """Every parameter ~ N(0, 0.02): never zeros, never uninitialised memory (see module doc)."""
    import torch

    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():  # tied embeddings are yielded once
            p.normal_(0.0, WEIGHT_STD, generator=gen)
