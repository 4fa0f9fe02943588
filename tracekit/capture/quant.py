"""``--quant``: quantize the built model's linear weights with the field's libraries, and say what
really ran.

Weight-only quantization cuts the bytes a batch-1 decode step must read (its floor) by 2-4x; it
pays off only if the kernels that read those bytes run near the bandwidth the bf16 GEMV reached.
So a quantized capture records the scheme, the layout, the library and its version, the bytes the
quantized tensors really occupy (``nbytes`` of every stored tensor: values, scales, zeros, code
books) beside the floor's count of them, and the GEMM-side CPU ops and kernels the profiled
window ran.

Schemes (:data:`tracekit.specs.quant.SCHEMES`), all with torchao, every decoder ``nn.Linear``
(``lm_head`` stays bf16, as AWQ, GPTQ and bitsandbytes leave it):

* ``int8``: ``Int8WeightOnlyConfig`` (per-row scale);
* ``int4``: ``Int4WeightOnlyConfig(group_size, int4_packing_format="tile_packed_to_4d")``, which
  runs PyTorch's own tinygemm kernel (``_weight_int4pack_mm``; CUDA, bf16, compute capability
  8.0+). torchao's default int4 layout needs the ``mslk`` package and is not used;
* ``fp8``: ``Float8WeightOnlyConfig``; ``fp8-dynamic``: ``Float8DynamicActivationFloat8WeightConfig``
  (``_scaled_mm``; compute capability 8.9+);
* ``nf4``: torchao's ``NF4Tensor`` (``to_nf4``; the linear dequantizes to the activation dtype).
  bitsandbytes is the field's nf4 library, but its wheel (~43 MB) is too large to ship to a GPU
  machine beside the repository; ``library`` in the metadata says which one ran.

A scheme this PyTorch or device cannot run is one :class:`CaptureError` naming the scheme and why.

    tracekit capture -m qwen2.5-7b --ctx 2048 --quant int4 --group-size 128 --mode compile
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tracekit.errors import CaptureError
from tracekit.specs.models import ModelSpec
from tracekit.specs.quant import SCHEMES, QuantScheme, weight_format

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: modules never quantized (kept bf16 like the study's quantized paths)
KEEP = ("lm_head",)

#: CPU ops that say how the quantized linear ran (PyTorch / torchao names)
_QUANT_OPS = re.compile(r"_weight_int[48]pack_mm|_scaled_mm|int4pack|int8pack|dequantize|"
                        r"quantize_affine|torchao|nf4|float8|_convert_weight", re.I)


def _require_torchao(scheme_name: str):
    """The torchao module, or the one CaptureError that says how to install it."""
    try:
        import torchao
    except ImportError:
        raise CaptureError(f"--quant {scheme_name}: torchao is not installed "
                           "(pip install torchao, a version built for this PyTorch)") from None
    return torchao


def quantize_model(model: torch.nn.Module, scheme_name: str, *, group_size: int | None,
                   spec: ModelSpec) -> dict:
    """Quantize ``model`` in place; return the ``quant`` metadata (without the kernels)."""
    scheme = SCHEMES[scheme_name]
    torchao = _require_torchao(scheme_name)
    import torch

    try:
        linears = _quantize(model, scheme, group_size=group_size)
    except (AssertionError, ValueError, ImportError, RuntimeError, NotImplementedError,
            TypeError) as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CaptureError(
            f"--quant {scheme_name}: torchao {torchao.__version__} cannot quantize with "
            f"{scheme.layout} on this PyTorch {torch.__version__} / device ({why})"
        ) from None
    fmt_dtype = scheme.floor_dtype(group_size)
    fmt = weight_format(fmt_dtype)
    stored = tensor_bytes(linears)
    counted = round(sum(fmt.matrix_bytes(o, i) for o, i in spec.linear_shapes()) * spec.layers)
    return {
        "scheme": scheme.name,
        "library": scheme.library,
        "library_version": torchao.__version__,
        "method": scheme.method,
        "layout": scheme.layout,
        "config": _config_text(scheme, group_size),
        "group_size": weight_format(fmt_dtype).group,
        "floor_dtype": fmt_dtype,
        "kept_bf16": list(KEEP) + ["embed_tokens", "norms", "biases", "kv_cache"],
        "linear_layers": len(linears),
        "tensor_bytes": stored,
        "floor_linear_bytes": counted,
        "expected_kernels": scheme.kernels,
        # torchao's configs set Inductor flags (coordinate-descent tuning, mixed mm, ...) as a
        # user running them gets; this matters for --mode compile only
        "inductor_config": None if scheme.name == "nf4" else "set by torchao (set_inductor_config=True)",
    }


def _config_text(scheme: QuantScheme, group_size: int | None) -> str:
    g = group_size or 128
    return {
        "int8": "Int8WeightOnlyConfig()",
        "int4": f'Int4WeightOnlyConfig(group_size={g}, int4_packing_format="tile_packed_to_4d")',
        "fp8": "Float8WeightOnlyConfig()",
        "fp8-dynamic": "Float8DynamicActivationFloat8WeightConfig()",
        "nf4": "torchao.quantization.to_nf4(weight, block_size=64, scaler_block_size=256)",
    }[scheme.name]


def _quantize(model: torch.nn.Module, scheme: QuantScheme, *, group_size: int | None) -> list:
    """Quantize every decoder linear; return the quantized weight tensors."""
    import torch

    def wanted(mod: torch.nn.Module, fqn: str) -> bool:
        return isinstance(mod, torch.nn.Linear) and fqn.rsplit(".", 1)[-1] not in KEEP

    if scheme.name == "nf4":
        from torchao.quantization import to_nf4

        for fqn, mod in model.named_modules():
            if wanted(mod, fqn):
                mod.weight = torch.nn.Parameter(to_nf4(mod.weight.detach()), requires_grad=False)
    else:
        from torchao.quantization import quantize_

        quantize_(model, _config(scheme, group_size), filter_fn=wanted)
    return [m.weight for fqn, m in model.named_modules() if wanted(m, fqn)]


def _config(scheme: QuantScheme, group_size: int | None):
    from torchao import quantization as q

    if scheme.name == "int8":
        return q.Int8WeightOnlyConfig()
    if scheme.name == "int4":
        return q.Int4WeightOnlyConfig(group_size=group_size or 128,
                                      int4_packing_format="tile_packed_to_4d")
    if scheme.name == "fp8":
        return q.Float8WeightOnlyConfig()
    return q.Float8DynamicActivationFloat8WeightConfig()


def stored_tensors(t) -> dict[str, torch.Tensor]:
    """The plain tensors a (possibly subclassed) tensor stores, by attribute name."""
    flatten = getattr(type(t), "__tensor_flatten__", None)
    if flatten is None:
        return {"data": t}
    names, _ = t.__tensor_flatten__()
    out = {}
    for n in names:
        inner = getattr(t, n, None)
        if inner is not None:
            out.update({f"{n}.{k}" if k != "data" else n: v
                        for k, v in stored_tensors(inner).items()})
    return out


def tensor_bytes(weights: list) -> dict:
    """``nbytes`` of what the quantized weights store, in total and by component (qdata, scale…)."""
    by: dict[str, int] = {}
    for w in weights:
        for name, t in stored_tensors(w).items():
            by[name] = by.get(name, 0) + int(t.nbytes)
    return {"total": sum(by.values()), "by_component": dict(sorted(by.items()))}


def quant_kernels(prof) -> dict:
    """The GEMM-side CPU ops and GPU kernels of the profiled window, with their counts: what a
    reader checks to see which kernels the scheme really ran."""
    from tracekit.specs.kernels import QUANT_CATEGORIES, KernelCategory, categorize

    ops: dict[str, int] = {}
    kernels: dict[str, dict] = {}
    if prof is None:
        return {"ops": None, "kernels": None}
    for evt in prof.profiler.kineto_results.events():
        name = evt.name()
        if evt.device_type().name == "CPU":
            if _QUANT_OPS.search(name) or name in ("aten::linear", "aten::mm", "aten::addmm"):
                ops[name] = ops.get(name, 0) + 1
            continue
        cat = categorize(name)
        if cat in QUANT_CATEGORIES or cat is KernelCategory.GEMM:
            k = kernels.setdefault(name, {"category": cat.value, "count": 0})
            k["count"] += 1
    return {"ops": dict(sorted(ops.items())), "kernels": dict(sorted(kernels.items()))}


def check_scheme(scheme_name: str, *, device: str, dtype: str) -> None:
    """Refuse, before the model is built, a scheme this machine cannot run (one CaptureError)."""
    _require_torchao(scheme_name)
    import torch

    if scheme_name == "int4":
        if device != "cuda":
            raise CaptureError("--quant int4: the tile-packed int4 layout runs on PyTorch's CUDA "
                               "tinygemm kernel (_weight_int4pack_mm); it needs --device cuda")
        if dtype != "bf16":
            raise CaptureError(f"--quant int4: the tile-packed int4 layout needs --dtype bf16, "
                               f"not {dtype}")
    if scheme_name in ("int4", "fp8-dynamic") and device == "cuda":
        need = (8, 0) if scheme_name == "int4" else (8, 9)
        cc = torch.cuda.get_device_capability()
        if cc < need:
            raise CaptureError(
                f"--quant {scheme_name}: needs compute capability {need[0]}.{need[1]}+, "
                f"this GPU is {cc[0]}.{cc[1]}"
            )
    if scheme_name == "fp8-dynamic" and device != "cuda":
        raise CaptureError("--quant fp8-dynamic: torchao's float8 dynamic quantization runs "
                           "_scaled_mm on a GPU of compute capability 8.9+; it needs --device cuda")
