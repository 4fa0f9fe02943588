"""Traces of HF ``generate()`` and of a compiled decode loop, made the way users make them.

No tracekit import, no ``record_function``, no ``schedule``: a plain ``torch.profiler.profile()``
around the call, as most people profile HF decode. These are the traces tracekit must read
without any marker — one step per forward pass found from the kernels themselves, the prefill
told apart. Each run also counts the model's forward passes with a hook (outside the profiler's
view) and writes that ground truth to ``generate_manifest.json`` beside the traces.

Which traces (``--which``, comma-separated):

* ``gen7b``       — Qwen2.5-7B shape, 1024-token prompt, ``generate(max_new_tokens=8)``, default
  SDPA, dynamic cache;
* ``gen8b_flash`` — Llama-3.1-8B shape, 512-token prompt, 6 new tokens, flash attention forced;
* ``gen_batch4``  — Qwen2.5-0.5B shape, batch 4, 256-token prompts, 8 new tokens,
  ``record_shapes=True`` (the batch is in the recorded input shapes);
* ``gen_static``  — Qwen2.5-0.5B shape, ``generate(cache_implementation="static")`` (HF compiles
  the decode forward by itself where it can);
* ``loop_compiled`` — a gpt-fast-style loop: static cache, ``torch.compile(mode=
  "reduce-overhead")`` of one decode step, 8 tokens;
* ``gen_nsys``    — Qwen2.5-0.5B ``generate()`` under Nsight Systems with no NVTX range (run by
  ``capture/generate_traces.sh``, which calls this script with ``--which gen_small``).

Weights are random (timing does not depend on their values).

Example (on a GPU box)::

    python3 capture/generate_traces.py --out /tmp/gen --which gen7b,gen8b_flash
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import shutil
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config, StaticCache

CONFIGS = {
    "qwen2.5-7b": (Qwen2Config, dict(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064, rope_theta=1e6, max_position_embeddings=32768,
        tie_word_embeddings=False)),
    "llama-3.1-8b": (LlamaConfig, dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, vocab_size=128256, rope_theta=5e5, max_position_embeddings=131072,
        tie_word_embeddings=False)),
    "qwen2.5-0.5b": (Qwen2Config, dict(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, vocab_size=151936, rope_theta=1e6, max_position_embeddings=32768,
        tie_word_embeddings=True)),
}


def build(name: str, device: str, tiny: bool = False):
    cls, kw = CONFIGS[name]
    if tiny:  # a smoke test of the script itself, on a CPU
        kw = {**kw, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
              "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512}
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cls(**kw), dtype=dtype, attn_implementation="sdpa")
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02, generator=gen)
    model.generation_config.pad_token_id = 0
    model.generation_config.eos_token_id = None  # never stop early: a fixed number of tokens
    return model.eval()


class PassCounter:
    """Counts forward passes and the tokens each one is fed (a hook: outside the trace)."""

    def __init__(self, model):
        self.shapes: list[list[int]] = []
        model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.shapes.append(list(ids.shape) if ids is not None else [])

    def take(self) -> list[list[int]]:
        out, self.shapes = self.shapes, []
        return out


def save(prof, path: Path) -> None:
    raw = path.with_suffix("")
    prof.export_chrome_trace(str(raw))
    with open(raw, "rb") as src, gzip.open(path, "wb", compresslevel=9) as dst:
        shutil.copyfileobj(src, dst)
    raw.unlink()


def acts(device: str) -> list:
    return [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])


@torch.inference_mode()
def run_generate(model, counter, device, out: Path, *, batch: int, prompt: int, new: int,
                 attn=None, shapes=False, profiled=True, **gen_kw) -> dict:
    ids = torch.randint(1, model.config.vocab_size, (batch, prompt), device=device)
    ctx = contextlib.nullcontext()
    if attn is not None:
        from torch.nn.attention import sdpa_kernel
        ctx = sdpa_kernel(attn)
    with ctx:
        if not profiled:  # under Nsight Systems the process itself is profiled: one cold call
            t0 = time.perf_counter()
            model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False, **gen_kw)
            torch.cuda.synchronize() if device == "cuda" else None
            return {"passes": counter.take(), "seconds": time.perf_counter() - t0,
                    "batch": batch, "prompt": prompt, "new_tokens": new}
        model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False, **gen_kw)
        torch.cuda.synchronize() if device == "cuda" else None
        counter.take()  # the warm-up call's passes
        with profile(activities=acts(device), record_shapes=shapes) as prof:
            model.generate(ids, max_new_tokens=new, min_new_tokens=new, do_sample=False, **gen_kw)
            torch.cuda.synchronize() if device == "cuda" else None
    save(prof, out)
    return {"passes": counter.take(), "batch": batch, "prompt": prompt, "new_tokens": new,
            "record_shapes": shapes}


@torch.inference_mode()
def loop_compiled(model, counter, device, out: Path, *, prompt: int, new: int) -> dict:
    """gpt-fast's shape: prefill once, then one compiled decode step per token."""
    cache = StaticCache(config=model.config, max_cache_len=prompt + 4 * new + 8)
    ids = torch.randint(1, model.config.vocab_size, (1, prompt), device=device)
    logits = model(input_ids=ids, past_key_values=cache, use_cache=True,
                   cache_position=torch.arange(prompt, device=device)).logits
    tok = logits[:, -1:].argmax(-1)

    def decode_one_token(tok, pos):
        logits = model(input_ids=tok, past_key_values=cache, use_cache=True,
                       cache_position=pos).logits
        return logits[:, -1:].argmax(-1)

    step = torch.compile(decode_one_token, mode="reduce-overhead", fullgraph=False)
    pos = prompt
    for _ in range(2 * new):  # warm-up: compile and record the graphs
        tok = step(tok.clone(), torch.tensor([pos], device=device))
        pos += 1
    torch.cuda.synchronize()
    counter.take()
    with profile(activities=acts(device)) as prof:
        for _ in range(new):
            tok = step(tok.clone(), torch.tensor([pos], device=device))
            pos += 1
        torch.cuda.synchronize()
    save(prof, out)
    return {"passes": counter.take(), "prompt": prompt, "new_tokens": new,
            "note": "compiled decode step, cudagraph trees; prefill not in the window"}


PLANS = {
    "gen7b": ("qwen2.5-7b", lambda m, c, d, o: run_generate(m, c, d, o, batch=1, prompt=1024,
                                                            new=8)),
    "gen8b_flash": ("llama-3.1-8b", lambda m, c, d, o: run_generate(
        m, c, d, o, batch=1, prompt=512, new=6,
        attn=__import__("torch.nn.attention", fromlist=["SDPBackend"]).SDPBackend.FLASH_ATTENTION)),
    "gen_batch4": ("qwen2.5-0.5b", lambda m, c, d, o: run_generate(
        m, c, d, o, batch=4, prompt=256, new=8, shapes=True)),
    "gen_static": ("qwen2.5-0.5b", lambda m, c, d, o: run_generate(
        m, c, d, o, batch=1, prompt=256, new=8, cache_implementation="static")),
    "loop_compiled": ("qwen2.5-0.5b", lambda m, c, d, o: loop_compiled(m, c, d, o, prompt=256,
                                                                       new=8)),
    "gen_small": ("qwen2.5-0.5b", lambda m, c, d, o: run_generate(
        m, c, d, o, batch=1, prompt=256, new=6, profiled=False)),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--which", default="gen7b,gen8b_flash,gen_batch4,gen_static,loop_compiled")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="2-layer models: a smoke test on a CPU")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    man_path = args.out / "generate_manifest.json"
    manifest = json.loads(man_path.read_text()) if man_path.exists() else {}
    manifest.setdefault("env", {
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "torch": torch.__version__, "transformers": __import__("transformers").__version__})
    built: dict = {}
    for which in args.which.split(","):
        name, fn = PLANS[which]
        if name not in built:
            built.clear()
            if args.device == "cuda":
                torch.cuda.empty_cache()
            t0 = time.time()
            model = build(name, args.device, args.tiny)
            built[name] = (model, PassCounter(model))
            print(f"built {name} in {time.time() - t0:.1f}s", flush=True)
        model, counter = built[name]
        path = args.out / f"{which}_{name}.json.gz"
        t0 = time.time()
        try:
            info = fn(model, counter, args.device, path)
        except Exception as exc:  # keep going: one failed plan must not lose the others
            print(f"{which}: FAILED {type(exc).__name__}: {str(exc)[:400]}", flush=True)
            counter.take()
            continue
        info.update(model=name, seconds=round(time.time() - t0, 1))
        if path.exists():
            info["bytes"] = path.stat().st_size
        manifest[path.name] = info
        print(f"{which}: passes={len(info['passes'])} first={info['passes'][:2]} "
              f"bytes={info.get('bytes')} s={info['seconds']}", flush=True)
        man_path.write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
