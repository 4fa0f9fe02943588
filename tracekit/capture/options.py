"""What a capture run is asked to do: one dataclass, validated before anything heavy is imported.

The CLI takes its defaults from :class:`CaptureOptions` (one source of truth), and everything here
is plain Python: checking a command line costs no torch import, so a typo fails in milliseconds.

    tracekit capture --model qwen2.5-7b --ctx 2048 --mode cuda-graphs -o qwen_graphs.json.gz
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tracekit.errors import BadUsage
from tracekit.specs.quant import QUANT_CHOICES

#: decode steppers (see :mod:`tracekit.capture.modes`)
MODES = ("eager", "cuda-graphs", "compile")
DEVICES = ("cuda", "cpu")
#: ``auto`` is bf16 on a GPU (the study's dtype) and fp32 on the CPU (bf16 matmuls are slow there)
DTYPES = ("auto", "bf16", "fp16", "fp32")
PROFILERS = ("torch", "nsys")
#: what torch.profiler records when the run is already under Nsight Systems (see ``nsys.py``)
NSYS_KINETO = ("cpu", "cuda")
#: attention implementations: ``sdpa`` is what transformers does by default (SDPA, PyTorch picks
#: the backend: cuDNN on Hopper for bf16); ``sdpa-X`` forces one SDPA backend with
#: ``torch.nn.attention.sdpa_kernel``; ``eager`` is transformers' matmul + softmax attention
ATTENTIONS = ("sdpa", "sdpa-flash", "sdpa-efficient", "sdpa-cudnn", "sdpa-math", "eager")


def _choice(flag: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise BadUsage(f"unknown {flag} {value!r}; choose one of: {', '.join(choices)}")
    return value


@dataclass(frozen=True, kw_only=True)
class CaptureOptions:
    """One capture. Field names are the CLI's option names with ``_`` for ``-``."""

    model: str | None = None
    weights: Path | None = None
    ctx: int = 2048
    mode: str = "eager"
    steps: int = 30
    warmup: int = 5
    profile_steps: int = 10
    device: str = "cuda"
    dtype: str = "auto"
    profiler: str = "torch"
    nsys: str | None = None
    nsys_kineto: str = "cpu"
    seed: int = 0
    attention: str = "sdpa"
    #: weight quantization (:mod:`tracekit.capture.quant`): none | int8 | int4 | fp8 | fp8-dynamic | nf4
    quant: str = "none"
    #: int4 group size (None: 128)
    group_size: int | None = None
    #: fresh processes (a new CUDA context, model build and prefill each), each timing its steps
    sessions: int = 1
    #: which session also runs the profiled window (0-based); None: no session profiles
    profile_session: int | None = 0
    output: Path | None = None
    #: the command line to record in the trace (defaults to ``sys.argv``)
    command: list[str] | None = field(default=None, compare=False)
    #: set by the Nsight wrapper for the process it starts; never by users
    under_nsys: bool = False
    #: set by the sessions runner for the processes it starts; never by users
    session_index: int | None = None
    #: False in a session that only times (the sessions runner writes the one output)
    profile: bool = True
    #: tensor-parallel ranks (``torchrun``; see tracekit.capture.tp): one trace per rank
    tp: int = 1
    #: where the capture processes may run (:mod:`tracekit.capture.cpus`): none | gpu | a CPU list
    cpu_affinity: str = "none"

    @property
    def output_path(self) -> Path:
        """``output`` as a path: :meth:`validated` always fills it in."""
        if self.output is None:
            raise BadUsage("no output file: pass -o FILE")
        return Path(self.output)

    def validated(self) -> CaptureOptions:
        """The same options with defaults filled in, or :class:`BadUsage` naming the bad value."""
        if not self.model and not self.weights:
            raise BadUsage("name a model: --model NAME (e.g. qwen2.5-7b, tiny) or --weights DIR")
        _choice("--mode", self.mode, MODES)
        _choice("--device", self.device, DEVICES)
        _choice("--dtype", self.dtype, DTYPES)
        _choice("--nsys-kineto", self.nsys_kineto, NSYS_KINETO)
        _choice("--attention", self.attention, ATTENTIONS)
        _choice("--quant", self.quant, QUANT_CHOICES)
        if self.group_size is not None:
            if self.quant != "int4":
                raise BadUsage(f"--group-size applies to --quant int4 only, not --quant {self.quant}")
            if isinstance(self.group_size, bool) or self.group_size not in (32, 64, 128, 256):
                raise BadUsage(f"--group-size must be 32, 64, 128 or 256 (tinygemm's group sizes), "
                               f"got {self.group_size!r}")
        profiler = "nsys" if self.nsys and self.profiler == "torch" else self.profiler
        _choice("--profiler", profiler, PROFILERS)
        for flag, value, least in (
            ("--ctx", self.ctx, 1),
            ("--steps", self.steps, 1),
            ("--warmup", self.warmup, 0),
            ("--profile-steps", self.profile_steps, 1),
            ("--sessions", self.sessions, 1),
        ):
            if value < least:
                raise BadUsage(f"{flag} must be at least {least}, got {value}")
        if self.device == "cpu" and self.mode == "cuda-graphs":
            raise BadUsage("--mode cuda-graphs needs a GPU; use --device cuda or --mode eager")
        if self.profile_session is not None and not 0 <= self.profile_session < self.sessions:
            raise BadUsage(
                f"--profile-session must be 'none' or a session index from 0 to "
                f"{self.sessions - 1}, got {self.profile_session}"
            )
        if self.sessions > 1 and profiler == "nsys":
            raise BadUsage("--sessions with --profiler nsys is not supported; use one or the other")
        if self.device == "cpu" and profiler == "nsys":
            raise BadUsage("--profiler nsys traces CUDA; it needs --device cuda")
        from tracekit.capture.cpus import check_policy

        check_policy(self.cpu_affinity)
        if self.cpu_affinity == "gpu" and self.device != "cuda":
            raise BadUsage("--cpu-affinity gpu pins to the GPU's local CPUs: it needs --device "
                           "cuda; pass a CPU list or none")
        if self.cpu_affinity == "gpu" and self.tp > 1:
            raise BadUsage("--cpu-affinity gpu with --tp: the ranks' GPUs have local CPUs of their "
                           "own; pass a CPU list or none")
        from tracekit.capture.tp import check as check_tp

        check_tp(self)
        output = Path(self.output) if self.output else Path(default_output_name(self))
        if not output.name.endswith(".json.gz"):
            raise BadUsage(
                f"output {str(output)!r} must end in .json.gz (the trace is written gzip-compressed)"
            )
        weights = Path(self.weights) if self.weights else None
        return replace(self, profiler=profiler, output=output, weights=weights)

    def to_json_dict(self) -> dict:
        d = asdict(self)
        for key in ("weights", "output"):
            d[key] = None if d[key] is None else str(d[key])
        return d

    @classmethod
    def from_json_dict(cls, d: dict) -> CaptureOptions:
        return cls(**d)


def default_output_name(options: CaptureOptions) -> str:
    """``qwen2.5-7b_ctx2048_eager.json.gz`` — model, context and mode say what the trace holds."""
    source = Path(options.model or options.weights or "model")
    # a config.json names its folder; a registry name or checkpoint folder names itself
    name = source.parent.name if source.suffix == ".json" else source.name
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")
    nsys = "_nsys" if options.profiler == "nsys" or options.nsys else ""
    attn = "" if options.attention == "sdpa" else f"_{options.attention}"
    quant = "" if options.quant == "none" else f"_{options.quant}"
    if options.group_size not in (None, 128):
        quant += f"-g{options.group_size}"
    return f"{slug or 'model'}_ctx{options.ctx}_{options.mode}{attn}{quant}{nsys}.json.gz"
