"""``tracekit capture --tp N``: tensor-parallel decode, one profiled trace per rank.

HF transformers shards a model over N processes itself (``from_pretrained(..., tp_plan="auto")``
under ``torchrun``: attention heads and MLP columns/rows split, an all-reduce after each block).
``tracekit capture --tp N`` therefore re-runs its own command under ``torchrun --standalone
--nproc-per-node N`` and, in each rank, builds the model that way, decodes in lockstep (the
collectives keep the ranks together) and writes ``OUT.rankR.json.gz`` — the traces ``tracekit
ranks`` reads.

* **Weights**: ``--weights DIR`` is loaded sharded. With random weights (the default), rank 0
  writes a random checkpoint once (``OUT.tp-checkpoint/``, removed at the end; a 7B bf16 model
  is 15 GB there) and every rank loads its shard of it: HF's TP loads shards only from a
  checkpoint.
* **Devices**: ``--device cuda`` gives rank R the GPU ``LOCAL_RANK`` and NCCL; ``--device cpu``
  uses gloo (how the tests run a tiny model on two CPU processes).
* Eager decode only (``--mode eager``), one session, the torch profiler.

    tracekit capture -m qwen2.5-7b --ctx 2048 --tp 2 -o tp2.json.gz     # tp2.rank0/1.json.gz
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tracekit.errors import BadUsage, CaptureError

#: set by torchrun in each process it starts
RANK_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def in_torchrun() -> bool:
    return all(k in os.environ for k in RANK_ENV)


def rank_path(output: str | Path, rank: int) -> Path:
    """``x.json.gz`` → ``x.rank0.json.gz``."""
    p = Path(output)
    return p.with_name(p.name.removesuffix(".json.gz") + f".rank{rank}.json.gz")


def checkpoint_dir(output: str | Path) -> Path:
    p = Path(output)
    return p.with_name(p.name.removesuffix(".json.gz") + ".tp-checkpoint")


def torchrun_argv(argv: list[str], tp: int) -> list[str]:
    """The command that runs ``tracekit ARGV`` as ``tp`` ranks on this machine (torchrun is
    ``python -m torch.distributed.run``: the same Python, whatever PATH holds)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={tp}", "-m", "tracekit", *argv]


def rank_argv(opts) -> list[str]:
    """``tracekit`` arguments that run this capture in one rank (built from the options, not
    from ``sys.argv``: the same whether the CLI or a library call asked for it)."""
    argv = ["capture", "--model", str(opts.model or opts.weights), "--ctx", str(opts.ctx),
            "--mode", opts.mode, "--steps", str(opts.steps), "--warmup", str(opts.warmup),
            "--profile-steps", str(opts.profile_steps), "--device", opts.device,
            "--dtype", opts.dtype, "--seed", str(opts.seed), "--attention", opts.attention,
            "--tp", str(opts.tp), "--output", str(opts.output), "--quiet"]
    if opts.weights:
        argv += ["--weights", str(opts.weights)]
    return argv


def check(opts) -> None:
    """What --tp cannot be combined with (BadUsage), before anything starts."""
    if opts.tp < 1:
        raise BadUsage(f"--tp must be at least 1, got {opts.tp}")
    if opts.tp == 1:
        return
    if opts.mode != "eager":
        raise BadUsage(f"--tp runs eager decode; --mode {opts.mode} under tensor parallelism is "
                       "not supported")
    if opts.sessions > 1:
        raise BadUsage("--tp with --sessions is not supported; use one or the other")
    if opts.profiler == "nsys":
        raise BadUsage("--tp with --profiler nsys is not supported; use the torch profiler")
    if getattr(opts, "quant", "none") != "none":
        raise BadUsage(f"--tp with --quant {opts.quant} is not supported; use one or the other")


def launch(opts) -> list[Path]:
    """Run this capture as ``opts.tp`` ranks under torchrun; returns the ranks' traces."""
    import importlib.util

    for m in ("torch", "transformers", "accelerate"):
        if importlib.util.find_spec(m) is None:
            raise CaptureError(f"--tp needs {m} (HF transformers' tensor parallelism loads through "
                               "accelerate): pip install 'tracekit[capture]' accelerate")
    if opts.device == "cuda":
        import torch

        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n < opts.tp:
            raise CaptureError(f"--tp {opts.tp} needs {opts.tp} GPUs on this machine; "
                               f"torch sees {n}")
    outputs = [rank_path(opts.output, r) for r in range(opts.tp)]
    try:
        proc = subprocess.run(torchrun_argv(rank_argv(opts), opts.tp), check=False)
    finally:
        shutil.rmtree(checkpoint_dir(opts.output), ignore_errors=True)
    if proc.returncode != 0 or not all(p.is_file() for p in outputs):
        missing = [str(p) for p in outputs if not p.is_file()]
        raise CaptureError(f"the {opts.tp} ranks under torchrun failed (exit {proc.returncode})"
                           + (f"; not written: {', '.join(missing)}" if missing else ""))
    return outputs


# -- inside one rank -------------------------------------------------------------------------------
def setup_rank(device: str) -> tuple[int, int]:
    """Join the process group (NCCL on GPUs, gloo on CPUs); (rank, world size)."""
    import torch
    import torch.distributed as dist

    local = int(os.environ["LOCAL_RANK"])
    if device == "cuda":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def teardown_rank() -> None:
    """Leave the process group before the interpreter exits: gloo's worker threads otherwise hold
    tensors while Python finalizes, and the rank can die of "terminate called without an active
    exception" (SIGABRT) after its trace is written (pytorch/pytorch#190489)."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def build_tp_model(spec, *, output: Path, device: str, dtype: str, weights: Path | None,
                   seed: int, attention: str):
    """This rank's shard of the model (HF ``tp_plan="auto"``), in eval mode."""
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM

    from tracekit.capture.model import build_model, torch_dtype

    ckpt = weights
    if ckpt is None:  # random weights: rank 0 writes them once, every rank loads its shard
        ckpt = checkpoint_dir(output)
        if dist.get_rank() == 0:
            full = build_model(spec, device="cpu", dtype=dtype, seed=seed, attention=attention)
            full.save_pretrained(ckpt)
            del full
        dist.barrier()
    model = AutoModelForCausalLM.from_pretrained(
        str(ckpt), tp_plan="auto", dtype=torch_dtype(dtype), local_files_only=True,
        attn_implementation="eager" if attention == "eager" else "sdpa")
    return model.eval().requires_grad_(False)


def shard_bytes(model) -> int:
    """Bytes of the parameters this rank holds (a DTensor's local shard, a tensor whole)."""
    total = 0
    for p in model.parameters():
        local = p.to_local() if hasattr(p, "to_local") else p
        total += local.numel() * local.element_size()
    return total


__all__ = ["build_tp_model", "check", "in_torchrun", "launch", "rank_argv", "rank_path", "setup_rank",
           "shard_bytes", "teardown_rank", "torchrun_argv"]
