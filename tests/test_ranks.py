"""Multi-rank decode on two ranks of one job (HTA's test data, sample_traces/peer/hta/ranks/):
per-rank steps, the bounding rank, communication time and the clock offsets against a plain
``json.load`` computation written here from the definitions in docs/multi-rank.md; the TP floor
against the model's bytes; the command's errors."""

from __future__ import annotations

import gzip
import json
import statistics
from pathlib import Path

import pytest
from helpers import error_line, merge_intervals, run

from tracekit.ranks import explain_ranks, rank_of

RANKS = Path(__file__).resolve().parents[1] / "sample_traces" / "peer" / "hta" / "ranks"
FILES = [RANKS / "sampled_rank-0.json.gz", RANKS / "sampled_rank-1.json.gz"]


def _len(iv):
    return sum(e - s for s, e in merge_intervals(iv))


def _clip(iv, lo, hi):
    return [(max(s, lo), min(e, hi)) for s, e in iv if min(e, hi) > max(s, lo)]


def oracle_rank(path: Path) -> dict:
    """Steps (ProfilerStep#N; an op belongs to the step whose range holds its launch call),
    each step's window, GPU busy and communication-only time in µs, and the NCCL kernels."""
    with gzip.open(path, "rt") as f:
        doc = json.load(f)
    ev = [e for e in doc["traceEvents"] if e.get("ph") == "X"]
    ranges = sorted((e["ts"], e["ts"] + e["dur"]) for e in ev
                    if str(e.get("name", "")).startswith("ProfilerStep#"))
    launch = {e["args"]["correlation"]: e["ts"] for e in ev
              if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {})}
    ops = [e for e in ev if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset")]
    members = [[] for _ in ranges]
    for e in ops:
        t = launch.get(e["args"].get("correlation"))
        for i, (a, b) in enumerate(ranges):
            if t is not None and a <= t <= b:
                members[i].append(e)
                break
    starts = [min(e["ts"] for e in m) for m in members]
    steps = []
    for i, m in enumerate(members):
        t0 = starts[i]
        t1 = starts[i + 1] if i + 1 < len(members) else max(e["ts"] + e["dur"] for e in m)
        iv = [(e["ts"], e["ts"] + e["dur"]) for e in m]
        nccl = [(e["ts"], e["ts"] + e["dur"]) for e in m
                if e["cat"] == "kernel" and "nccl" in e["name"].lower()]
        other = [(e["ts"], e["ts"] + e["dur"]) for e in m
                 if not (e["cat"] == "kernel" and "nccl" in e["name"].lower())]
        busy = _len(_clip(iv, t0, t1))
        steps.append({"window": (t0, t1), "busy": busy,
                      "comm_only": busy - _len(_clip(other, t0, t1)), "nccl": sorted(nccl)})
    colls = sorted((e["ts"], e["ts"] + e["dur"]) for e in ops
                   if e["cat"] == "kernel" and "nccl" in e["name"].lower())
    return {"rank": doc["distributedInfo"]["rank"], "steps": steps, "colls": colls}


@pytest.fixture(scope="module")
def both():
    return explain_ranks(list(reversed(FILES))), [oracle_rank(p) for p in FILES]


def test_ranks_are_read_from_the_traces_and_clocks_aligned_by_collectives(both):
    doc, (r0, r1) = both
    assert [r["rank"] for r in doc["ranks"]] == [0, 1]  # given in the other order
    assert [r["world_size"] for r in doc["ranks"]] == [128, 128]
    assert doc["ranks"][1]["collectives"] == len(r1["colls"]) == 10
    offset_us = statistics.median(b[1] - a[1] for a, b in zip(r0["colls"], r1["colls"]))
    assert doc["ranks"][1]["clock_offset_ms"] == pytest.approx(offset_us / 1e3, abs=1e-6)


def test_per_rank_steps_and_communication_match_json_load(both):
    doc, oracles = both
    assert len(doc["steps"]) == 2
    for i, step in enumerate(doc["steps"]):
        for row, o in zip(step["ranks"], oracles):
            s = o["steps"][i]
            t0, t1 = s["window"]
            assert row["span_ms"] == pytest.approx((t1 - t0) / 1e3, abs=1e-6)
            assert row["gpu_busy_ms"] == pytest.approx(s["busy"] / 1e3, abs=1e-6)
            assert row["communication_ms"] == pytest.approx(s["comm_only"] / 1e3, abs=1e-6)
            assert row["collectives"] == len(s["nccl"]) > 0
            assert row["compute_ms"] == pytest.approx((s["busy"] - s["comm_only"]) / 1e3, abs=1e-6)
            if row["latency_ms"] is not None:
                assert row["latency_ms"] == pytest.approx((t1 - t0) / 1e3, abs=1e-6)
                assert row["launch_overhead_ms"] == pytest.approx((t1 - t0 - s["busy"]) / 1e3,
                                                                  abs=1e-6)


def test_the_bounding_rank_is_the_one_the_others_waited_for(both):
    doc, (r0, r1) = both
    offset = statistics.median(b[1] - a[1] for a, b in zip(r0["colls"], r1["colls"]))
    for i, step in enumerate(doc["steps"]):
        a, b = r0["steps"][i]["nccl"], r1["steps"][i]["nccl"]
        wait0 = sum(max(0, (y[0] - offset) - x[0]) for x, y in zip(a, b))
        wait1 = sum(max(0, x[0] - (y[0] - offset)) for x, y in zip(a, b))
        assert step["ranks"][0]["comm_wait_ms"] == pytest.approx(wait0 / 1e3, abs=1e-6)
        assert step["ranks"][1]["comm_wait_ms"] == pytest.approx(wait1 / 1e3, abs=1e-6)
        assert step["bounding_rank"] == (0 if wait0 <= wait1 else 1)
    # on these traces the two steps are bound by different ranks: the rule is not a constant
    assert {s["bounding_rank"] for s in doc["steps"]} == {0, 1}


def test_tp_floor_is_each_ranks_shard(both):
    from tracekit.specs.gpus import get_gpu
    from tracekit.specs.models import get_model

    doc = explain_ranks(FILES, model="qwen2.5-7b", ctx=2048, gpu="h100")
    spec = get_model("qwen2.5-7b")
    b = spec.step_bytes(2048, "bf16", "exact")
    f = doc["floor"]
    # qwen2.5-7b: 4 KV heads split over 2 ranks
    assert f["bytes_per_rank"] == int(b["weights"] / 2 + (b["kv_read"] + b["kv_write"]) / 2)
    assert f["floor_ms"] == pytest.approx(f["bytes_per_rank"] / (get_gpu("h100").peak_gbps * 1e9) * 1e3)
    o = oracle_rank(FILES[0])["steps"][0]  # rank 0's first step, from json.load
    row = doc["steps"][0]["ranks"][0]
    assert row["floor_ms"] == f["floor_ms"]
    assert row["kernel_excess_ms"] == pytest.approx(
        (o["busy"] - o["comm_only"]) / 1e3 - f["floor_ms"], abs=1e-6)
    one = explain_ranks(FILES, model="qwen2.5-7b", ctx=2048, gpu="h100", tp=8)
    assert one["floor"]["kv_shards"] == 4  # 4 KV heads over 8 ranks: each holds one head


def test_rank_from_the_file_name_when_the_trace_has_none(tmp_path):
    p = tmp_path / "tp_rank-3.json"
    p.write_text('{"traceEvents": []}')
    assert rank_of(p, 0) == (3, None)
    q = tmp_path / "x.json"
    q.write_text('{"traceEvents": []}')
    assert rank_of(q, 5) == (5, None)


def test_cli_json_and_errors(tmp_path):
    r = run("ranks", *FILES, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["schema"] == "tracekit.ranks/1" and len(doc["steps"]) == 2
    r = run("ranks", FILES[0])
    assert r.exit_code == 1
    assert error_line(r) == ("Error: multi-rank analysis needs a trace per rank (two or more); "
                             "got 1")
    r = run("ranks", FILES[0], FILES[0])
    assert r.exit_code == 1 and "are both rank 0" in error_line(r)
    text = run("ranks", *FILES)
    assert text.exit_code == 0 and "bounding rank" in text.output


def test_the_document_follows_its_schema(both):
    from jsonschema import Draft202012Validator

    schema = json.loads((Path(__file__).resolve().parents[1] / "docs" / "schema"
                         / "tracekit.ranks-1.schema.json").read_text())
    v = Draft202012Validator(schema)
    assert list(v.iter_errors(both[0])) == []
    assert list(v.iter_errors(explain_ranks(FILES, model="qwen2.5-7b", ctx=2048, gpu="h100"))) == []
    bad = json.loads(json.dumps(both[0]))
    bad["steps"][0]["ranks"][0]["collectives"] = 1.5
    assert list(v.iter_errors(bad))
