"""``tracekit annotate``: the findings go back into the trace as well-formed Trace Event Format,
the original events stay byte for byte, and tracekit and HTA read the output with the same
numbers as the input."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from helpers import run

import tracekit

ROOT = Path(__file__).resolve().parents[1]
EAGER = ROOT / "sample_traces" / "qwen2.5-7b_ctx2048_eager.json.gz"
NSYS = ROOT / "sample_traces" / "qwen2.5-7b_ctx2048_eager_nsys.sqlite.gz"
PEER = ROOT / "sample_traces" / "peer" / "hta"


def _events(path: Path) -> tuple[dict, list[dict]]:
    doc = json.loads(gzip.decompress(path.read_bytes()))
    return doc, doc["traceEvents"]


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    out = tmp_path_factory.mktemp("ann") / "eager.tracekit.json.gz"
    r = run("annotate", str(EAGER), "-o", str(out))
    assert r.exit_code == 0, r.output
    return out


def test_original_events_are_kept_byte_for_byte(annotated):
    import msgspec

    src = gzip.decompress(EAGER.read_bytes())
    out = gzip.decompress(annotated.read_bytes())
    events_text = bytes(msgspec.json.decode(src, type=dict[str, msgspec.Raw])["traceEvents"])
    assert events_text.rstrip()[:-1].rstrip() in out  # the list's text, less its closing "]"
    orig, new = _events(EAGER)[1], _events(annotated)[1]
    assert new[:len(orig)] == orig


def test_added_events_are_well_formed_trace_event_format(annotated):
    orig = _events(EAGER)[1]
    doc, evs = _events(annotated)
    added = evs[len(orig):]
    assert added and all(e["cat"] == "tracekit" for e in added)
    assert doc["tracekit_annotations"]["events"] == len(added)
    used_pids = {e.get("pid") for e in orig}
    pids = {e["pid"] for e in added}
    assert len(pids) == 1 and isinstance(next(iter(pids)), int) and not pids & used_pids
    named_threads = {(e["pid"], e["tid"]) for e in added
                     if e["ph"] == "M" and e["name"] == "thread_name" and e["args"]["name"]}
    assert any(e["ph"] == "M" and e["name"] == "process_name" and e["args"]["name"] == "tracekit"
               for e in added)
    for e in added:
        assert e["ph"] in ("X", "C", "M") and isinstance(e["name"], str) and e["name"]
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        assert isinstance(e.get("args", {}), dict)
        if e["ph"] in ("X", "C"):
            assert isinstance(e["ts"], (int, float)) and (e["pid"], e["tid"]) in named_threads
        if e["ph"] == "X":
            assert isinstance(e["dur"], (int, float)) and e["dur"] >= 0
        if e["ph"] == "C":
            assert all(isinstance(v, (int, float)) for v in e["args"].values())


def test_step_slices_start_at_each_steps_first_kernel(annotated):
    """Independent of tracekit's step detection: each eager decode step starts with its embedding
    lookup (an indexSelect kernel); the step slices start exactly there, in the trace's own µs."""
    orig = _events(EAGER)[1]
    lookups = sorted(float(e["ts"]) for e in orig
                     if e.get("cat") == "kernel" and "indexSelect" in e["name"])
    evs = _events(annotated)[1][len(orig):]
    steps = sorted((e for e in evs if e["ph"] == "X" and e["name"].startswith("step ")),
                   key=lambda e: e["ts"])
    assert [s["ts"] for s in steps] == lookups
    # a step slice lasts until the next step's first kernel
    for a, b in zip(steps, steps[1:]):
        assert a["ts"] + a["dur"] == pytest.approx(b["ts"], abs=1e-3)
    gaps = [e for e in evs if e["ph"] == "X" and e["tid"] == 2]
    assert {g["args"]["class"] for g in gaps} <= {"host_bound", "launch_latency", "sync", "other"}
    stalls = [g for g in gaps if g["name"].startswith("stall: ")]
    assert stalls and all(g["args"]["host_op"] in g["name"] for g in stalls)


def test_tracekit_reads_the_output_with_the_same_numbers(annotated):
    a, b = tracekit.explain(EAGER).to_dict(), tracekit.explain(annotated).to_dict()
    for key in ("steps", "summary", "decomposition", "whatif", "kernels_by_category", "verdict",
                "warnings", "host", "unprofiled"):
        assert a.get(key) == b.get(key), key
    added = _events(annotated)[0]["tracekit_annotations"]["events"]
    assert b["source"]["events"] - a["source"]["events"] == added  # read, and left alone
    assert b["source"]["skipped_categories"] == a["source"]["skipped_categories"]


def _trace_analysis():
    """HTA's module, or a skip of the calling test only (a module-level importorskip here would
    skip every test of this file where HTA is not installed: the README's test command leaves the
    'hta' extra out, CI installs it)."""
    return pytest.importorskip("hta.trace_analysis", reason="HTA (the 'hta' extra) not installed")


def _hta(path: Path, tmp: Path) -> tuple[dict, list]:
    d = tmp / path.name.split(".")[0]
    d.mkdir(parents=True)
    shutil.copy(path, d / "rank0.json.gz")
    ta = _trace_analysis().TraceAnalysis(trace_dir=str(d))
    temporal = ta.get_temporal_breakdown(visualize=False).to_dict("records")
    kernels = ta.get_gpu_kernel_breakdown(visualize=False)[0].to_dict("records")
    return temporal[0], kernels


@pytest.mark.slow  # Holistic Trace Analysis reads the trace with pandas
def test_hta_reads_the_output_with_the_same_numbers(tmp_path):
    """HTA cannot read PyTorch 2.11 decode traces (docs/architecture.md), so this uses its own
    test trace rank0.json.gz (training steps with CUDA graphs, one GPU)."""
    src = PEER / "rank0.json.gz"
    out = tmp_path / "rank0.tracekit.json.gz"
    r = run("annotate", str(src), "-o", str(out))
    assert r.exit_code == 0, r.output
    before = _hta(src, tmp_path / "a")
    after = _hta(out, tmp_path / "b")
    assert before == after
    assert before[0]["compute_time(us)"] > 0
    a, b = tracekit.explain(src).to_dict(), tracekit.explain(out).to_dict()
    assert a["steps"] == b["steps"] and a["summary"] == b["summary"]


# -- bad input --------------------------------------------------------------------------------
def test_existing_output_is_replaced_as_every_output_option_does(tmp_path):
    out = tmp_path / "o.json.gz"
    out.write_bytes(b"old")
    r = run("annotate", str(EAGER), "-o", str(out))
    assert r.exit_code == 0 and r.stderr.startswith(f"wrote {out}")
    assert _events(out)[0]["tracekit_annotations"]["events"] > 0
    assert run("annotate", str(EAGER), "-o", str(out), "--force").exit_code == 0  # old scripts


def test_output_that_is_the_input_is_refused(tmp_path):
    src = tmp_path / "t.json.gz"
    shutil.copy(EAGER, src)
    for target in (src, tmp_path / "." / "t.json.gz"):
        r = run("annotate", str(src), "-o", str(target), "--force")
        assert r.exit_code == 2 and "is the input trace" in r.output
        assert len(r.output.strip().splitlines()) == 1 and r.output.startswith("Error: ")
    assert src.read_bytes() == EAGER.read_bytes()


def test_nsight_input_is_refused(tmp_path):
    out = tmp_path / "n.json.gz"
    r = run("annotate", str(NSYS), "-o", str(out))
    assert r.exit_code == 1
    assert r.output.strip() == (
        f"Error: {NSYS} is an Nsight Systems export; only Kineto (torch.profiler) JSON traces "
        "can be annotated (open the .nsys-rep in Nsight Systems instead)")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_annotating_twice_is_refused(annotated, tmp_path):
    r = run("annotate", str(annotated), "-o", str(tmp_path / "again.json.gz"))
    assert r.exit_code == 1 and "already annotated" in r.output
    assert list(tmp_path.iterdir()) == []
