"""GPU datasheet peak DRAM bandwidth, matched from the device name a trace records.

Rules are data and run most specific first: "H100 NVL" and "H100 PCIe" before the SXM part, "L40S"
before "L4". An unknown GPU gets ``None`` — never a guess — and the floor becomes ``null``.

    >>> match_gpu("NVIDIA H100 80GB HBM3").peak_gbps
    3350.0
    >>> match_gpu("NVIDIA L4").name
    'L4'
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tracekit.errors import BadInput


@dataclass(frozen=True)
class GpuSpec:
    name: str
    peak_gbps: float  # datasheet peak DRAM bandwidth, GB/s (1e9 bytes/s)
    arch: str  # "hopper", "ampere", "ada", "blackwell", "volta", "turing"; AMD: "cdna2", "cdna3"
    pattern: str  # regex over the device name, case-insensitive
    aliases: tuple[str, ...] = ()  # how people write it on a command line (``--gpu H100``)


#: most specific first; the first match wins
GPUS: list[GpuSpec] = [
    GpuSpec("GH200 (HBM3e)", 4900, "hopper", r"GH200.*(HBM3e|144G)"),
    GpuSpec("GH200 (HBM3)", 4000, "hopper", r"GH200"),
    GpuSpec("H200", 4800, "hopper", r"H200"),
    GpuSpec("H100 NVL", 3900, "hopper", r"H100.*NVL"),
    GpuSpec("H100 PCIe", 2000, "hopper", r"H100.*(PCIe|HBM2e)"),
    GpuSpec("H100 SXM5", 3350, "hopper", r"H100.*(SXM|HBM3)", ("H100", "H100 SXM", "H100 80GB")),
    GpuSpec("B200", 8000, "blackwell", r"B200"),
    GpuSpec("A100 80GB PCIe", 1935, "ampere", r"A100.*(80GB.*PCIe|PCIe.*80GB)"),
    GpuSpec("A100 80GB SXM", 2039, "ampere", r"A100.*80GB", ("A100 80GB", "A100 SXM4 80GB")),
    GpuSpec("A100 40GB", 1555, "ampere", r"A100", ("A100 SXM4 40GB", "A100 PCIe 40GB")),
    GpuSpec("L40S", 864, "ada", r"L40S"),
    GpuSpec("L40", 864, "ada", r"L40\b"),
    GpuSpec("L4", 300, "ada", r"\bL4\b"),
    GpuSpec("RTX 5090", 1792, "blackwell", r"RTX 5090"),
    GpuSpec("RTX 4090", 1008, "ada", r"RTX 4090"),
    GpuSpec("Jetson AGX Orin 64GB", 204.8, "ampere", r"AGX Orin|Orin.*64GB"),
    GpuSpec("Jetson Orin Nano 8GB", 68, "ampere", r"Orin Nano"),
    GpuSpec("V100 SXM2", 900, "volta", r"V100.*SXM2"),
    GpuSpec("T4", 320, "turing", r"\bT4\b"),
    # AMD Instinct (ROCm traces name them "AMD Instinct MI300X", "AMD Instinct MI300X VF" under
    # virtualisation). Datasheet peaks from amd.com (AMD Instinct MI325X / MI300X / MI300A / MI250X
    # / MI250 / MI210 data sheets and product pages: 6 / 5.3 / 5.3 / 3.2768 / 3.2768 / 1.6384 TB/s).
    GpuSpec("MI325X", 6000, "cdna3", r"MI325X"),
    GpuSpec("MI300X", 5300, "cdna3", r"MI300X"),
    GpuSpec("MI300A", 5300, "cdna3", r"MI300A"),
    # An MI250X or MI250 is two dies (GCDs), each with half the HBM, and ROCm shows each as its
    # own device (64 GB): a process on one device reads at half the datasheet's 3276.8 GB/s.
    GpuSpec("MI250X (one GCD)", 1638.4, "cdna2", r"MI250X", ("MI250X",)),
    GpuSpec("MI250 (one GCD)", 1638.4, "cdna2", r"MI250\b", ("MI250",)),
    GpuSpec("MI210", 1638.4, "cdna2", r"MI210"),
]

_COMPILED = [(g, re.compile(g.pattern, re.IGNORECASE)) for g in GPUS]


#: device names are short ("NVIDIA H100 80GB HBM3"); a longer one is cut before matching, so a
#: hostile name cannot make the patterns' ``.*`` backtrack for long
MAX_DEVICE_NAME = 256


def match_gpu(device_name: str | None) -> GpuSpec | None:
    """The datasheet entry for a device name as the driver reports it, or None if unknown."""
    if not device_name:
        return None
    device_name = device_name[:MAX_DEVICE_NAME]
    for spec, rx in _COMPILED:
        if rx.search(device_name):
            return spec
    return None


def known_gpus() -> list[str]:
    return [g.name for g in GPUS]


_NOISE = {"nvidia", "geforce", "tesla"}


def _tokens(name: str) -> tuple[str, ...]:
    return tuple(t for t in re.findall(r"[a-z0-9]+", name.lower()) if t not in _NOISE)


def get_gpu(name: str) -> GpuSpec:
    """A GPU as people write it on a command line (``--gpu``).

    In order: a table name or alias, ignoring case, spaces, dashes and the word NVIDIA
    (``H100``, ``h100-sxm``, ``A100 80GB``, ``L4``); the table entries whose name holds every word
    of ``name`` — exactly one, or an error listing them (``A100`` is a 40 GB or an 80 GB part, with
    different bandwidths: tracekit does not guess); else a device name as the driver reports it
    (``NVIDIA A100-SXM4-80GB``). BadInput, listing the known names, if nothing matches.
    """
    q = _tokens(name[:MAX_DEVICE_NAME])
    if q:
        compact = "".join(q)
        for g in GPUS:
            for label in (g.name, *g.aliases):
                if "".join(_tokens(label)) == compact:
                    return g
        words = set(q)
        cands = [g for g in GPUS
                 if words <= {t for label in (g.name, *g.aliases) for t in _tokens(label)}]
        if len(cands) == 1:
            return cands[0]
        if len(cands) > 1:
            raise BadInput(f"GPU {name!r} is ambiguous: it could be "
                           f"{', '.join(g.name for g in cands)}; name one (--gpu "
                           f"{cands[0].name!r}) or pass --bandwidth GBPS")
    spec = match_gpu(name)
    if spec is None:
        raise BadInput(f"unknown GPU {name!r}; known: {', '.join(known_gpus())} "
                       "(or pass --bandwidth GBPS)")
    return spec
