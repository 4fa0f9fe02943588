"""``tracekit capture --tp N``: the torchrun command, what --tp cannot be combined with, and a real
tensor-parallel capture of the tiny model as two gloo ranks on the CPU (HF ``tp_plan="auto"``):
one trace per rank, each rank holding half the weights and running the same all-reduces."""

from __future__ import annotations

import gzip
import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from helpers import error_line, run

from tracekit.capture.options import CaptureOptions
from tracekit.capture.tp import rank_argv, rank_path, torchrun_argv
from tracekit.ranks import rank_of


def test_torchrun_command_and_rank_files():
    argv = ["capture", "-m", "qwen2.5-7b", "--tp", "4", "-o", "out/tp.json.gz"]
    assert torchrun_argv(argv, 4) == [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                      "--nproc-per-node=4", "-m", "tracekit", *argv]
    assert rank_path("out/tp.json.gz", 3) == Path("out/tp.rank3.json.gz")
    opts = CaptureOptions(model="tiny", device="cpu", ctx=16, tp=2, output="o.json.gz").validated()
    back = run("capture", *rank_argv(opts)[1:], "--help")  # every flag it writes is one capture has
    assert back.exit_code == 0, back.output


@pytest.mark.parametrize("args,message", [
    (["--tp", "0"], "Error: --tp must be at least 1, got 0"),
    (["--tp", "2", "--mode", "compile"], "Error: --tp runs eager decode; --mode compile under "
     "tensor parallelism is not supported"),
    (["--tp", "2", "--sessions", "3"], "Error: --tp with --sessions is not supported; use one or "
     "the other"),
])
def test_what_tp_cannot_be_combined_with(args, message, tmp_path):
    r = run("capture", "-m", "tiny", "--device", "cpu", *args, "-o", tmp_path / "x.json.gz")
    assert r.exit_code == 2 and error_line(r) == message
    assert not list(tmp_path.iterdir())


@pytest.mark.slow  # two processes importing torch and transformers: ~30 s here
def test_two_gloo_ranks_on_the_cpu_each_write_their_shard(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    out = tmp_path / "tp.json.gz"
    r = run("capture", "-m", "tiny", "--device", "cpu", "--ctx", "16", "--steps", "3",
            "--warmup", "1", "--profile-steps", "2", "--tp", "2", "-q", "-o", out)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tp.rank0.json.gz", "tp.rank1.json.gz"]
    docs = []
    for rank in (0, 1):
        path = tmp_path / f"tp.rank{rank}.json.gz"
        with gzip.open(path, "rt") as f:
            docs.append(json.load(f))
        assert rank_of(path, 9) == (rank, 2)  # from the trace's distributedInfo
    metas = [d["tracekit"] for d in docs]
    assert [m["tp"]["rank"] for m in metas] == [0, 1] and {m["tp"]["size"] for m in metas} == {2}
    whole = metas[0]["memory_bytes"]["weights"]
    for m in metas:  # sharded: about half the weights each (norms are replicated)
        assert 0.45 * whole < m["tp"]["shard_bytes"] < 0.6 * whole
    reduces = [Counter(e["name"] for e in d["traceEvents"] if e.get("name") == "gloo:all_reduce")
               for d in docs]
    assert reduces[0] == reduces[1] and reduces[0]["gloo:all_reduce"] > 0
