"""Where a capture's host threads may run, and where the launching thread did run.

A batch-1 eager decode step is host-bound: its time is mostly the launching thread issuing a
few thousand kernels. On one H100 VM the same stall-free step took 17 ms in one process and
36 ms in the next (flash attention forced, nothing else changed), and a process's own timed
steps could fall into two clusters 1.5× apart — the launching thread running at two speeds.
Which CPU it runs on is one suspect (a CPU on another NUMA node than the GPU reaches it across
the socket link); that this is the cause is not yet measured. So the capture can pin, and
records where it ran either way:

* ``--cpu-affinity none`` (the default) leaves placement to the OS;
* ``--cpu-affinity gpu`` pins each capture process to the CPUs the GPU's PCI device reports
  as local (Linux sysfs ``/sys/bus/pci/devices/<bus id>/local_cpulist``);
* ``--cpu-affinity 0-7,16`` pins to those CPUs (a Linux CPU list).

The pin is set before torch is imported, so every thread the process starts inherits it. With
one session the capture runs in the calling process, which stays pinned afterwards; with
``--sessions N`` only the session processes are. The metadata's ``host_cpus`` (each session's
too, under ``sessions.runs``) holds the policy, the CPUs the process was allowed, the GPU's local
CPUs and NUMA node where sysfs tells them, and the CPU the launching thread was on just before
and just after its timed steps, with those CPUs' NUMA nodes: a spread between sessions can be
laid beside where they ran.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tracekit.capture.smi import query_gpu
from tracekit.errors import BadUsage, CaptureError

POLICIES = ("none", "gpu")
_CPULIST = re.compile(r"\d{1,5}(-\d{1,5})?(,\d{1,5}(-\d{1,5})?)*")


def parse_cpulist(text: str) -> list[int]:
    """``"0-3,8"`` → ``[0, 1, 2, 3, 8]`` (Linux's CPU-list syntax), or :class:`ValueError`."""
    text = text.strip()
    if not _CPULIST.fullmatch(text):
        raise ValueError(f"not a CPU list: {text!r}")
    cpus: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        a, b = int(lo), int(hi or lo)
        if b < a:
            raise ValueError(f"not a CPU list: range {part!r} runs backwards")
        cpus.update(range(a, b + 1))
    return sorted(cpus)


def format_cpulist(cpus: list[int] | set[int]) -> str:
    """``[0, 1, 2, 3, 8]`` → ``"0-3,8"``."""
    xs = sorted(set(cpus))
    parts: list[str] = []
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        parts.append(str(xs[i]) if i == j else f"{xs[i]}-{xs[j]}")
        i = j + 1
    return ",".join(parts)


def check_policy(policy: str) -> None:
    """:class:`BadUsage` unless ``policy`` is ``none``, ``gpu`` or a CPU list."""
    if policy in POLICIES:
        return
    try:
        parse_cpulist(policy)
    except ValueError:
        raise BadUsage(f"--cpu-affinity must be none, gpu or a CPU list such as 0-7,16; got "
                       f"{policy!r}") from None


def sysfs_bus_id(nvidia_smi_id: str) -> str:
    """nvidia-smi's ``00000000:19:00.0`` → sysfs's ``0000:19:00.0``."""
    domain, _, rest = nvidia_smi_id.strip().lower().partition(":")
    return f"{domain[-4:]}:{rest}"


def gpu_pci_bus_id() -> str | None:
    """The capture GPU's PCI bus id in sysfs's form, from ``nvidia-smi``, or None."""
    values = query_gpu(["pci.bus_id"])
    return sysfs_bus_id(values[0]) if values and values[0] else None


def gpu_locality(bus_id: str | None, sysfs: Path = Path("/sys")) -> dict | None:
    """``{"pci_bus_id", "numa_node", "local_cpus"}`` of a PCI device from sysfs, or None where
    sysfs does not say (not Linux, a VM that hides it, no such device). A NUMA node of -1 (the
    firmware did not say) is None."""
    if not bus_id:
        return None
    dev = sysfs / "bus" / "pci" / "devices" / bus_id
    try:
        cpus = parse_cpulist((dev / "local_cpulist").read_text())
    except (OSError, ValueError):
        return None
    try:
        node: int | None = int((dev / "numa_node").read_text().strip())
    except (OSError, ValueError):
        node = None
    return {"pci_bus_id": bus_id, "numa_node": node if node is not None and node >= 0 else None,
            "local_cpus": format_cpulist(cpus)}


def current_cpu(proc: Path = Path("/proc")) -> int | None:
    """The CPU the calling thread is on now (``/proc/thread-self/stat``, field 39), or None."""
    try:
        stat = (proc / "thread-self" / "stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def cpu_node(cpu: int | None, sysfs: Path = Path("/sys")) -> int | None:
    """The NUMA node of a CPU (``/sys/devices/system/cpu/cpuN/nodeM``), or None."""
    if cpu is None:
        return None
    try:
        nodes = [p.name for p in (sysfs / "devices" / "system" / "cpu" / f"cpu{cpu}").iterdir()
                 if re.fullmatch(r"node\d+", p.name)]
    except OSError:
        return None
    return int(nodes[0][4:]) if len(nodes) == 1 else None


def pin(policy: str, *, device: str) -> dict:
    """Apply ``policy`` to this process (see the module docstring) and return the ``host_cpus``
    record. :class:`CaptureError` where it cannot be applied as asked."""
    check_policy(policy)
    gpu = gpu_locality(gpu_pci_bus_id()) if device == "cuda" else None
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    if policy != "none":
        if allowed is None:
            raise CaptureError("--cpu-affinity needs Linux (os.sched_setaffinity); use "
                               "--cpu-affinity none here")
        if policy == "gpu":
            if gpu is None:
                raise CaptureError(
                    "--cpu-affinity gpu: the GPU's local CPUs are unknown here (no nvidia-smi "
                    "bus id, or sysfs has no local_cpulist for it); pass a CPU list instead")
            wanted = parse_cpulist(gpu["local_cpus"])
        else:
            wanted = parse_cpulist(policy)
        target = sorted(set(wanted) & set(allowed))
        if not target:
            raise CaptureError(f"--cpu-affinity {policy}: none of CPUs {format_cpulist(wanted)} "
                               f"is open to this process (allowed: {format_cpulist(allowed)})")
        os.sched_setaffinity(0, target)
        allowed = target
    return {"policy": policy, "allowed": format_cpulist(allowed) if allowed else None,
            "gpu": gpu, "launching_thread": {}}


def note_cpu(record: dict | None, when: str) -> None:
    """Record the CPU the calling (launching) thread is on, and its NUMA node, under ``when``."""
    if record is None:
        return
    cpu = current_cpu()
    record["launching_thread"][when] = {"cpu": cpu, "numa_node": cpu_node(cpu)}
