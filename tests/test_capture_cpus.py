"""``tracekit capture --cpu-affinity``: the CPU-list syntax, the GPU's local CPUs read from sysfs,
the launching thread's CPU read from /proc, the pin a capture process runs under (on the CPU with
the tiny model, in child processes so the test worker keeps its own CPUs), and the record's way
into the reports from anyone's trace."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest
from helpers import run
from hypothesis import given
from hypothesis import strategies as st

from tracekit.capture import cpus
from tracekit.capture.options import CaptureOptions
from tracekit.errors import BadUsage
from tracekit.report.text import host_cpus_text
from tracekit.trace.capture_meta import clean_capture

TINY = ["capture", "--model", "tiny", "--device", "cpu", "--ctx", "24", "--steps", "4",
        "--warmup", "1", "--profile-steps", "2", "--quiet"]


@given(st.sets(st.integers(0, 300), min_size=1))
def test_cpulist_round_trip(cs):
    text = cpus.format_cpulist(cs)
    assert cpus.parse_cpulist(text) == sorted(cs)
    # the shortest form: no two parts could merge (a run is never split)
    bounds = [tuple(map(int, p.split("-"))) if "-" in p else (int(p), int(p))
              for p in text.split(",")]
    assert all(b[0] > a[1] + 1 for a, b in zip(bounds, bounds[1:]))


@pytest.mark.parametrize("text", ["", "a", "1-", "-3", "3-1", "1,,2", "1 2", "0x3", "1-2-3"])
def test_bad_cpulists_are_refused(text):
    with pytest.raises(ValueError):
        cpus.parse_cpulist(text)
    with pytest.raises(BadUsage, match="--cpu-affinity must be none, gpu or a CPU list"):
        CaptureOptions(model="tiny", device="cpu", cpu_affinity=text).validated()


def test_gpu_pinning_needs_a_gpu_and_one_gpu_per_process():
    with pytest.raises(BadUsage, match="needs --device cuda"):
        CaptureOptions(model="tiny", device="cpu", cpu_affinity="gpu").validated()
    with pytest.raises(BadUsage, match="with --tp"):
        CaptureOptions(model="tiny", device="cuda", tp=2, cpu_affinity="gpu").validated()


def test_nvidia_smi_bus_id_names_the_sysfs_device():
    assert cpus.sysfs_bus_id("00000000:19:00.0") == "0000:19:00.0"
    assert cpus.sysfs_bus_id("00000001:AB:00.0\n") == "0001:ab:00.0"


def _device(sysfs: Path, bus: str, cpulist: str | None, node: str | None) -> None:
    d = sysfs / "bus" / "pci" / "devices" / bus
    d.mkdir(parents=True)
    if cpulist is not None:
        (d / "local_cpulist").write_text(cpulist + "\n")
    if node is not None:
        (d / "numa_node").write_text(node + "\n")


def test_gpu_locality_from_sysfs(tmp_path):
    _device(tmp_path, "0000:19:00.0", "0-7,16-23", "0")
    _device(tmp_path, "0000:9a:00.0", "8-15", "-1")  # firmware did not say: no node
    _device(tmp_path, "0000:aa:00.0", None, "1")  # no CPU list: nothing known
    assert cpus.gpu_locality("0000:19:00.0", tmp_path) == {
        "pci_bus_id": "0000:19:00.0", "numa_node": 0, "local_cpus": "0-7,16-23"}
    assert cpus.gpu_locality("0000:9a:00.0", tmp_path)["numa_node"] is None
    assert cpus.gpu_locality("0000:aa:00.0", tmp_path) is None
    assert cpus.gpu_locality("0000:ff:00.0", tmp_path) is None
    assert cpus.gpu_locality(None, tmp_path) is None


def test_the_launching_threads_cpu_from_proc(tmp_path):
    # field 39 of /proc/<pid>/task/<tid>/stat; the command name (field 2) may hold spaces and ')'
    fields = [str(i) for i in range(3, 53)]
    fields[0], fields[39 - 3] = "R", "13"
    (tmp_path / "thread-self").mkdir()
    (tmp_path / "thread-self" / "stat").write_text("4242 (py ) thon) " + " ".join(fields) + "\n")
    assert cpus.current_cpu(tmp_path) == 13
    assert cpus.current_cpu(tmp_path / "nowhere") is None
    here = cpus.current_cpu()
    if here is not None:  # Linux: the thread runs on a CPU it is allowed
        assert here in os.sched_getaffinity(0)
    node = tmp_path / "devices" / "system" / "cpu" / "cpu13" / "node1"
    node.mkdir(parents=True)
    assert cpus.cpu_node(13, tmp_path) == 1 and cpus.cpu_node(14, tmp_path) is None


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="pinning needs Linux")
def test_every_session_runs_pinned_and_says_where(tmp_path):
    """Two sessions pinned to one CPU: each session's record says that CPU is all it could run on,
    and its launching thread was on it before and after its timed steps (where else could it be)."""
    pytest.importorskip("transformers")
    cpu = min(os.sched_getaffinity(0))
    out = tmp_path / "pinned.json.gz"
    r = run(*TINY, "--sessions", "2", "--cpu-affinity", str(cpu), "-o", str(out))
    assert r.exit_code == 0, r.output
    meta = json.load(gzip.open(out))["tracekit"]
    records = [meta["host_cpus"], *(x["host_cpus"] for x in meta["sessions"]["runs"])]
    for rec in records:
        assert rec["policy"] == str(cpu) and rec["allowed"] == str(cpu) and rec["gpu"] is None
        assert {w: at["cpu"] for w, at in rec["launching_thread"].items()} == {
            "before_timing": cpu, "after_timing": cpu}
    assert f"host CPUs          {cpu} (pinned)" in r.output
    assert os.sched_getaffinity(0) != {cpu} or len(os.sched_getaffinity(0)) == 1  # not us


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="pinning needs Linux")
def test_a_cpu_list_the_process_may_not_use_is_one_error_line(tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "x.json.gz"
    far = max(os.sched_getaffinity(0)) + 1000
    r = run(*TINY, "--cpu-affinity", str(far), "-o", str(out))
    assert r.exit_code != 0 and f"Error: --cpu-affinity {far}: none of CPUs {far}" in r.output
    assert not out.exists()


def test_unpinned_by_default_and_the_record_still_says_where(tmp_path):
    pytest.importorskip("transformers")
    out = tmp_path / "free.json.gz"
    r = run(*TINY, "-o", str(out))
    assert r.exit_code == 0, r.output
    rec = json.load(gzip.open(out))["tracekit"]["host_cpus"]
    assert rec["policy"] == "none"
    if hasattr(os, "sched_getaffinity"):
        assert cpus.parse_cpulist(rec["allowed"]) == sorted(os.sched_getaffinity(0))
        assert all(at["cpu"] in os.sched_getaffinity(0) for at in rec["launching_thread"].values())


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                     lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c,
                                                                          max_size=4), max_leaves=12)


@given(st.dictionaries(st.sampled_from(["policy", "allowed", "gpu", "launching_thread", "x"]),
                       _json, max_size=5) | _json)
def test_any_record_from_a_trace_reads_as_a_line_or_nothing(record):
    line = host_cpus_text(record)
    assert line is None or isinstance(line, str)
    if not isinstance(record, dict) or not isinstance(record.get("policy"), str):
        assert line is None


def test_a_mistyped_record_is_dropped_with_a_warning_and_a_hostile_one_escaped(tmp_path):
    cleaned, warnings = clean_capture({"host_cpus": {"policy": 3, "launching_thread": {}}})
    assert cleaned["host_cpus"] == {"launching_thread": {}}
    assert any("host_cpus.policy" in w for w in warnings)
    assert host_cpus_text(cleaned["host_cpus"]) is None
    from tracekit.explain import explain
    from tracekit.report.html import render_html

    evil = "<script>alert(1)</script>"
    trace = tmp_path / "t.json"
    trace.write_text(json.dumps({
        "tracekit": {"mode": "eager", "timing": {"median_ms": 1.0, "steps": 3},
                     "host_cpus": {"policy": evil, "allowed": evil, "launching_thread": {
                         evil: {"cpu": 1, "numa_node": 0}}}},
        "traceEvents": _steps()}))
    doc = explain(str(trace)).to_dict()
    assert doc["source"]["capture"]["host_cpus"]["allowed"] == evil
    html = render_html(doc)
    assert evil not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def _steps() -> list[dict]:
    """Three decode steps, one kernel each, as tracekit capture names them."""
    ev: list[dict] = [{"ph": "M", "name": "process_name", "pid": 0, "args": {"name": "gpu"}}]
    for i in range(3):
        t = 1000.0 * i
        ev.append({"ph": "X", "cat": "user_annotation", "name": f"tracekit.step#{i}", "pid": 1,
                   "tid": 1, "ts": t, "dur": 900.0})
        ev.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "pid": 1,
                   "tid": 1, "ts": t + 10, "dur": 5.0, "args": {"correlation": i + 1}})
        ev.append({"ph": "X", "cat": "kernel", "name": "gemv", "pid": 0, "tid": 7,
                   "ts": t + 20, "dur": 100.0, "args": {"correlation": i + 1, "device": 0}})
    return ev


def test_what_nvidia_smi_says_is_read_for_the_first_visible_gpu(tmp_path, monkeypatch):
    """A stand-in nvidia-smi on PATH that echoes what it was asked: the bus id comes back in
    sysfs's form, the clocks as numbers, for the first of CUDA_VISIBLE_DEVICES; with no
    nvidia-smi at all, nothing."""
    from tracekit.capture.run import CLOCK_QUERY, gpu_clocks

    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\n"
                    "echo \"$1\" > \"$(dirname \"$0\")/asked\"\n"
                    "case \"$2\" in\n"
                    "  *pci.bus_id*) echo '00000000:9A:00.0' ;;\n"
                    "  *) echo '1980, 2619, 1980, 38, 202.5, 0x0000000000000000' ;;\n"
                    "esac\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert cpus.gpu_pci_bus_id() == "0000:9a:00.0"
    assert (tmp_path / "asked").read_text().strip() == "--id=3"
    assert gpu_clocks() == dict(zip(CLOCK_QUERY, [1980.0, 2619.0, 1980.0, 38.0, 202.5,
                                                  "0x0000000000000000"]))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert cpus.gpu_pci_bus_id() is None and gpu_clocks() is None


def _host_probe():
    import importlib.util
    path = Path(__file__).resolve().parents[1] / "capture" / "host_probe.py"
    spec = importlib.util.spec_from_file_location("host_probe", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_fast_cpus_of_a_sweep():
    """The campaign's probe picks the CPUs whose every pass was within 15% of the fastest CPU's
    median: a CPU slow in one pass only is out; where every CPU is fast there is nothing to pin;
    with fewer than four fast CPUs it takes the four whose slowest pass was fastest."""
    fast_cpus = _host_probe().fast_cpus
    sweep = {"0": [5.0, 5.1], "1": [9.0, 5.0], "2": [5.2, 5.3], "3": [5.1, 5.0], "4": [5.0, 5.0],
             "5": [5.8, 5.6]}
    # fastest median 5.0 → bound 5.75: CPU 1 (9.0) and CPU 5 (5.8) are out
    assert fast_cpus(sweep) == [0, 2, 3, 4]
    assert fast_cpus({"0": [5.0, 5.1], "1": [5.5, 5.2]}) is None
    few = {"0": [5.0, 5.0], "1": [7.0, 7.1], "2": [6.5, 6.0], "3": [8.0, 8.0], "4": [9.0, 6.0],
           "5": [6.9, 7.2]}
    # only CPU 0 is within 15%; the four with the fastest slowest pass: 0 (5.0), 2 (6.5),
    # 1 (7.1), 5 (7.2)
    assert fast_cpus(few) == [0, 1, 2, 5]
