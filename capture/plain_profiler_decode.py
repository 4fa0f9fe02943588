"""Batch-1 decode under a *plain* torch.profiler — the kind of trace a colleague sends.

This script deliberately does not import tracekit: the traces it writes carry no tracekit metadata
and no tracekit annotations, so they exercise `tracekit explain` the way a foreign trace would.
It writes three traces of one model at one context length:

* ``eager_annotated``  — eager decode, ``record_function("decode_step#i")`` around each step;
* ``eager_schedule``   — eager decode under ``schedule(wait, warmup, active)`` + ``prof.step()``
  (``ProfilerStep#N`` annotations, nothing else);
* ``graph_replay``     — a static KV cache, one decode step captured as a CUDA graph and replayed,
  no annotation at all (CUDA only);
* ``graph_eager_kernels`` — the eager step itself (dynamic cache, the very kernels of
  ``eager_*``) captured once as a CUDA graph and replayed: the counterfactual that tracekit's
  CUDA-Graphs what-if predicts from an eager trace (CUDA only).

Weights are random (timing does not depend on their values); the model is built from its
architecture config by transformers directly on the device.

Example (on a GPU box)::

    python3 capture/plain_profiler_decode.py --model qwen2.5-7b --ctx 2048 --out /tmp/traces
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function, schedule
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache, StaticCache

#: model name → (transformers model type, its architecture config)
CONFIGS = {
    "qwen2.5-7b": ("qwen2", dict(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064, rope_theta=1e6, max_position_embeddings=32768,
        tie_word_embeddings=False,
    )),
    "llama-3.1-8b": ("llama", dict(
        hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, vocab_size=128256, rope_theta=5e5,
        max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=False,
    )),
    "tiny": ("qwen2", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=256, max_position_embeddings=4096, tie_word_embeddings=False,
    )),
}


def build(name: str, device: str) -> torch.nn.Module:
    model_type, kw = CONFIGS[name]
    cfg = AutoConfig.for_model(model_type, **kw)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation="sdpa")
    # from_config may leave weights uninitialised or zero, and kernels can run faster on zeros:
    # draw every parameter ~ N(0, 0.02), as tracekit capture does
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02, generator=gen)
    return model.eval()


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def activities(device: str) -> list:
    acts = [ProfilerActivity.CPU]
    if device == "cuda":
        acts.append(ProfilerActivity.CUDA)
    return acts


def prefill_dynamic(model, ctx: int, device: str):
    cache = DynamicCache(config=model.config)
    ids = torch.randint(0, model.config.vocab_size, (1, ctx), device=device)
    out = model(input_ids=ids, past_key_values=cache, use_cache=True)
    return cache, out.logits[:, -1:].argmax(-1)


def eager_step(model, cache, tok):
    out = model(input_ids=tok, past_key_values=cache, use_cache=True)
    return out.logits[:, -1:].argmax(-1)


def save(prof, path: Path) -> None:
    raw = path.with_suffix("")  # foo.json
    prof.export_chrome_trace(str(raw))
    with open(raw, "rb") as src, gzip.open(path, "wb", compresslevel=9) as dst:
        shutil.copyfileobj(src, dst)
    raw.unlink()


@torch.inference_mode()
def eager_annotated(model, ctx, device, steps, out: Path) -> dict:
    cache, tok = prefill_dynamic(model, ctx, device)
    for _ in range(5):
        tok = eager_step(model, cache, tok)
    sync(device)
    with profile(activities=activities(device)) as prof:
        for i in range(steps):
            with record_function(f"decode_step#{i}"):
                tok = eager_step(model, cache, tok)
        sync(device)
    save(prof, out)
    return {"steps": steps, "annotation": "decode_step#i"}


@torch.inference_mode()
def eager_schedule(model, ctx, device, steps, out: Path) -> dict:
    cache, tok = prefill_dynamic(model, ctx, device)
    for _ in range(5):
        tok = eager_step(model, cache, tok)
    sync(device)
    sched = schedule(wait=1, warmup=2, active=steps, repeat=1)
    with profile(activities=activities(device), schedule=sched) as prof:
        for _ in range(1 + 2 + steps):
            tok = eager_step(model, cache, tok)
            prof.step()
        sync(device)
    save(prof, out)
    return {"steps": steps, "annotation": "ProfilerStep#N (wait=1, warmup=2)"}


@torch.inference_mode()
def graph_replay(model, ctx, device, steps, out: Path) -> dict:
    assert device == "cuda", "CUDA graphs need a GPU"
    cache = StaticCache(config=model.config, max_cache_len=ctx + 64)
    ids = torch.randint(0, model.config.vocab_size, (1, ctx), device=device)
    model(input_ids=ids, past_key_values=cache, use_cache=True,
          cache_position=torch.arange(ctx, device=device))
    static_tok = torch.zeros(1, 1, dtype=torch.long, device=device)
    static_pos = torch.tensor([ctx], device=device)

    def step():
        logits = model(input_ids=static_tok, past_key_values=cache, use_cache=True,
                       cache_position=static_pos).logits
        static_tok.copy_(logits[:, -1:].argmax(-1))
        static_pos.add_(1)

    # Kineto must be initialised before capture, or replayed kernels are missing from the trace.
    with profile(activities=activities(device)):
        pass
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(side)
    static_pos.fill_(ctx)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    static_pos.fill_(ctx)
    profile_replays(graph, device, steps, out)
    return {"steps": steps, "annotation": "none"}


def profile_replays(graph, device: str, steps: int, out: Path) -> None:
    """Warm the graph up, then profile ``steps`` replays with no annotation at all."""
    for _ in range(5):
        graph.replay()
    sync(device)
    with profile(activities=activities(device)) as prof:
        for _ in range(steps):
            graph.replay()
        sync(device)
    save(prof, out)


@torch.inference_mode()
def graph_eager_kernels(model, ctx, device, steps, out: Path) -> dict:
    """Replay the eager step's own kernels from a CUDA graph.

    While a stream is capturing, transformers cannot look inside the attention mask, so it builds
    an explicit one and SDPA takes another path (``repeat_kv`` copies + a masked kernel): a
    different step. For a decode step without padding eager skips the mask on Python facts alone,
    so the capture keeps eager's decision (``masking_utils.is_tracing`` reads False while
    capturing) and the graph holds exactly eager's kernels. Each replay recomputes the same step
    at the same context (the dynamic cache does not grow): timing, not text, is the point.
    """
    assert device == "cuda", "CUDA graphs need a GPU"
    import transformers.masking_utils as masking_utils

    cache, tok = prefill_dynamic(model, ctx, device)
    for _ in range(5):
        tok = eager_step(model, cache, tok)
    static_tok = tok.clone()
    # the captured kernels read these tensors on every replay: keep them alive
    keep = [t for layer in cache.layers for t in (layer.keys, layer.values)]
    with profile(activities=activities(device)):
        pass  # Kineto initialised before capture, or replayed kernels are missing
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    real_is_tracing = masking_utils.is_tracing
    masking_utils.is_tracing = lambda *a, **k: False
    try:
        with torch.cuda.graph(graph):
            logits = model(input_ids=static_tok, past_key_values=cache, use_cache=True).logits
            static_tok.copy_(logits[:, -1:].argmax(-1))
    finally:
        masking_utils.is_tracing = real_is_tracing
    profile_replays(graph, device, steps, out)
    del keep
    return {"steps": steps, "annotation": "none", "ctx_replayed": ctx + 5}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen2.5-7b", choices=sorted(CONFIGS))
    ap.add_argument("--ctx", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--which", default="eager_annotated,eager_schedule,graph_replay,graph_eager_kernels")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    model = build(args.model, args.device)
    print(f"built {args.model} on {args.device} in {time.time() - t0:.1f}s", flush=True)
    manifest = {
        "model": args.model, "ctx": args.ctx, "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "traces": {},
    }
    for which in args.which.split(","):
        fn = {"eager_annotated": eager_annotated, "eager_schedule": eager_schedule,
              "graph_replay": graph_replay, "graph_eager_kernels": graph_eager_kernels}[which]
        path = args.out / f"plain_{args.model}_ctx{args.ctx}_{which}.json.gz"
        t0 = time.time()
        try:
            info = fn(model, args.ctx, args.device, args.steps, path)
        except Exception as exc:  # keep going: one failed mode must not lose the others
            print(f"{which}: FAILED {type(exc).__name__}: {exc}", flush=True)
            continue
        info["seconds"] = round(time.time() - t0, 1)
        info["bytes"] = path.stat().st_size
        manifest["traces"][path.name] = info
        print(f"{which}: {info}", flush=True)
        if args.device == "cuda":
            torch.cuda.empty_cache()
    (args.out / f"plain_{args.model}_ctx{args.ctx}_manifest.json").write_text(
        json.dumps(manifest, indent=2))
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
