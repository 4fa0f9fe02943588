"""Decode steppers: one object per mode that advances batch-1 greedy decode by one token.

* ``eager`` — ``DynamicCache``; every step is ~1000 separate kernel launches issued by Python, so
  on fast GPUs the step is usually *host-bound*: the GPU waits for the CPU.
* ``cuda-graphs`` — ``StaticCache`` (fixed addresses), one decode step captured as a CUDA graph
  and replayed: one ``cudaGraphLaunch`` per step instead of one launch per kernel.
* ``compile`` — the same static-cache step under ``torch.compile(mode="reduce-overhead")``:
  Inductor fuses kernels and replays them as CUDA graphs (cudagraph trees).

The next token is the greedy argmax and **stays on the device**: the token is never read back,
so no step makes the host wait for the GPU. That is how a serving loop that streams tokens to a
robot would want it, and it is the only way a captured graph can be replayed back to back. (A
loop that prints each token adds one device-to-host sync per step; measure that separately.)

Positions: after ``prefill(ctx)`` the cache holds ``ctx`` tokens and ``position == ctx``; each
``step()`` writes one token and adds one. ``prepare()`` (graph capture, compilation) runs steps
whose cache writes (and next token) are rewound afterwards, so ``position`` only counts real
decode steps in every mode and the tokens decoded are the same as eager's. The static cache is sized :func:`static_cache_len` and attention reads all of it (masked).

    tracekit capture --model qwen2.5-7b --mode compile
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: steps that graph capture / compilation may run before the cache is rewound
PREPARE_STEPS = {"eager": 0, "cuda-graphs": 3, "compile": 5}
#: static caches are rounded up to a multiple of this many tokens (aligned attention masks)
CACHE_ALIGN = 64


def static_cache_len(*, ctx: int, decode_steps: int, mode: str) -> int:
    """Tokens a static cache must hold: prefill + every decode step + rewound prepare steps."""
    need = ctx + decode_steps + PREPARE_STEPS[mode] + 1
    return -(-need // CACHE_ALIGN) * CACHE_ALIGN


#: ``--attention`` → the SDPA backend forced with ``torch.nn.attention.sdpa_kernel`` (None: let
#: PyTorch choose, as transformers does by default)
SDPA_BACKENDS = {
    "sdpa-flash": "FLASH_ATTENTION",
    "sdpa-efficient": "EFFICIENT_ATTENTION",
    "sdpa-cudnn": "CUDNN_ATTENTION",
    "sdpa-math": "MATH",
}


def attention_backend(attention: str):
    """A context manager that forces the SDPA backend ``attention`` names (a no-op otherwise).

    It must surround every model call — prefill, graph capture or compilation, and each step —
    because PyTorch picks the SDPA backend per call (a captured graph keeps the kernel it saw).
    """
    import contextlib

    name = SDPA_BACKENDS.get(attention)
    if name is None:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel(getattr(SDPBackend, name))


def prompt(vocab: int, ctx: int, *, device: str, seed: int) -> torch.Tensor:
    import torch

    gen = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randint(0, vocab, (1, ctx), generator=gen).to(device)


class EagerStepper:
    """Dynamic KV cache, plain module calls: what ``model.generate`` does per token."""

    mode = "eager"

    def __init__(self, model: Any, *, device: str) -> None:
        self.model, self.device = model, device
        self.position = 0
        self.kv_len: int | None = None  # grows with the context

    def prefill(self, ids: torch.Tensor) -> None:
        from transformers import DynamicCache

        self.cache = DynamicCache(config=self.model.config)
        out = self.model(
            input_ids=ids, past_key_values=self.cache, use_cache=True, logits_to_keep=1
        )
        self.tok = out.logits[:, -1:].argmax(-1)
        self.position = ids.shape[1]

    def prepare(self) -> int:
        return 0

    def step(self) -> None:
        out = self.model(
            input_ids=self.tok, past_key_values=self.cache, use_cache=True, logits_to_keep=1
        )
        self.tok = out.logits[:, -1:].argmax(-1)
        self.position += 1


class _StaticStepper:
    """Shared by the graph and compile modes: a static cache and a static token buffer.

    In transformers 5 the static cache keeps its write position on the device
    (``cumulative_length``, advanced in place), so a replayed step advances by itself.
    """

    mode = ""

    def __init__(self, model: Any, *, device: str, kv_len: int) -> None:
        self.model, self.device, self.kv_len = model, device, kv_len
        self.position = 0

    def prefill(self, ids: torch.Tensor) -> None:
        import torch
        from transformers import StaticCache

        self.cache = StaticCache(config=self.model.config, max_cache_len=self.kv_len)
        self.tok = torch.zeros((1, 1), dtype=torch.long, device=self.device)
        out = self.model(
            input_ids=ids, past_key_values=self.cache, use_cache=True, logits_to_keep=1
        )
        self.tok.copy_(out.logits[:, -1:].argmax(-1))
        self.position = ids.shape[1]

    def _decode_in_place(self) -> None:
        # reads self.tok, writes the next token into it: fixed addresses, graph- and compile-safe
        logits = self.model(
            input_ids=self.tok, past_key_values=self.cache, use_cache=True, logits_to_keep=1
        ).logits
        self.tok.copy_(logits[:, -1:].argmax(-1))

    def _checkpoint(self) -> tuple[int, torch.Tensor]:
        return self.position, self.tok.clone()

    def _rewind(self, checkpoint: tuple[int, torch.Tensor]) -> None:
        # back to the state before prepare(): the cache's write position and the next token
        position, tok = checkpoint
        for layer in self.cache.layers:
            layer.cumulative_length.fill_(position)
        self.tok.copy_(tok)


class GraphStepper(_StaticStepper):
    """One decode step captured as a CUDA graph; ``step()`` is one ``graph.replay()``."""

    mode = "cuda-graphs"

    def prepare(self) -> int:
        import torch

        start = self._checkpoint()
        # warm up on a side stream (lazy inits, cuBLAS workspaces) as torch.cuda.graphs advises
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(PREPARE_STEPS[self.mode]):
                self._decode_in_place()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self._decode_in_place()
        self._rewind(start)
        torch.cuda.synchronize()
        return PREPARE_STEPS[self.mode]

    def step(self) -> None:
        self.graph.replay()
        self.position += 1


class CompileStepper(_StaticStepper):
    """The static-cache step under ``torch.compile(mode="reduce-overhead")``.

    The compiled function takes no tensor arguments: the token buffer and the KV cache have
    static addresses (transformers marks the cache with ``mark_static_address``; so does this
    class for the token), so cudagraph trees replay the step with no input copies.
    ``fullgraph=False`` keeps a graph break from failing the capture; the counters recorded in
    the trace say whether there were any.
    """

    mode = "compile"

    def prepare(self) -> int:
        import torch

        torch._dynamo.mark_static_address(self.tok)
        self.compiled = torch.compile(
            self._decode_in_place, mode="reduce-overhead", fullgraph=False
        )
        start = self._checkpoint()
        # call 1 compiles, call 2 records the CUDA graph, later calls replay: run a few more so a
        # recompilation (a guard that changed after the first call) also happens here
        for _ in range(PREPARE_STEPS[self.mode]):
            self._call()
        self._rewind(start)
        if self.device == "cuda":
            torch.cuda.synchronize()
        return PREPARE_STEPS[self.mode]

    def _call(self) -> None:
        import torch

        torch.compiler.cudagraph_mark_step_begin()
        self.compiled()

    def step(self) -> None:
        self._call()
        self.position += 1

    @staticmethod
    def diagnostics() -> dict:
        """Graph breaks, unique graphs and cudagraph skips, from torch's dynamo counters."""
        from torch._dynamo.utils import counters

        skips = {k: v for k, v in counters.get("inductor", {}).items() if "cudagraph" in k}
        stats: dict[str, int] = dict(counters.get("stats", {}))
        return {
            "unique_graphs": int(stats.get("unique_graphs", 0)),
            "graph_breaks": int(sum(counters.get("graph_break", {}).values())),
            "cudagraph_counters": {k: int(v) for k, v in skips.items()},
        }


def make_stepper(mode: str, model: Any, *, device: str, kv_len: int) -> Any:
    if mode == "eager":
        return EagerStepper(model, device=device)
    if mode == "cuda-graphs":
        return GraphStepper(model, device=device, kv_len=kv_len)
    return CompileStepper(model, device=device, kv_len=kv_len)
