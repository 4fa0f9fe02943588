"""Pack a campaign's files into the few bundles a remote GPU machine may send back.

A remote machine that returns at most 8 files from ``$OUT``, 16 MiB each and 64 MiB together: this
packs a work folder into uncompressed tar bundles (the traces are gzip already) under those
limits, most important files first: logs and manifests in ``campaign_logs.tar`` (also listing
what was left behind), then the traces in the order given by ``--first`` patterns, then the rest.

    python3 capture/pack_outputs.py /tmp/campaign "$OUT" --first '*.log' 'MANIFEST*' 'qwen*.json.gz'

Unpack with ``for t in *.tar; do tar -xf "$t" -C traces; done``.
"""

from __future__ import annotations

import argparse
import fnmatch
import tarfile
from pathlib import Path

MiB = 1 << 20
LOG_PATTERNS = ("*.log", "*.txt", "*.json", "MANIFEST*")
#: tar adds a 512-byte header per file and pads to 10 KiB records
OVERHEAD = 16 << 10


def plan(
    files: list[Path], *, first: list[str], bundles: int, bundle_bytes: int, total_bytes: int
) -> tuple[list[list[Path]], list[Path]]:
    """First-fit of the files, in priority order, into at most ``bundles`` bundles."""

    def rank(p: Path) -> int:
        return next((i for i, pat in enumerate(first) if fnmatch.fnmatch(p.name, pat)), len(first))

    groups: list[list[Path]] = []
    sizes: list[int] = []
    left: list[Path] = []
    used = 0
    for f in sorted(files, key=lambda p: (rank(p), p.name)):
        size = f.stat().st_size + OVERHEAD
        if used + size > total_bytes:
            left.append(f)
            continue
        for i, s in enumerate(sizes):
            if s + size <= bundle_bytes:
                groups[i].append(f)
                sizes[i] += size
                break
        else:
            if len(groups) < bundles and size <= bundle_bytes:
                groups.append([f])
                sizes.append(size)
            else:
                left.append(f)
                continue
        used += size
    return groups, left


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("work", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument(
        "--first", nargs="*", default=[], help="file-name patterns, most important first"
    )
    ap.add_argument("--files", type=int, default=8, help="files the tool returns")
    ap.add_argument("--file-mib", type=float, default=15.5)
    ap.add_argument("--total-mib", type=float, default=62)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    everything = [p for p in args.work.iterdir() if p.is_file()]
    logs = [p for p in everything if any(fnmatch.fnmatch(p.name, pat) for pat in LOG_PATTERNS)]
    logs_size = sum(p.stat().st_size + OVERHEAD for p in logs)
    data = [p for p in everything if p not in logs]
    groups, left = plan(
        data,
        first=args.first,
        bundles=args.files - 1,
        bundle_bytes=int(args.file_mib * MiB),
        total_bytes=int(args.total_mib * MiB) - logs_size,
    )
    lines = []
    for i, group in enumerate(groups, 1):
        name = f"campaign_{i}.tar"
        with tarfile.open(args.out / name, "w") as tar:
            for f in group:
                tar.add(f, arcname=f.name)
        lines += [f"{name}\t{f.name}\t{f.stat().st_size}" for f in group]
    lines += [f"LEFT BEHIND\t{f.name}\t{f.stat().st_size}" for f in left]
    packing = args.work / "PACKING.txt"
    packing.write_text("\n".join(lines) + "\n")
    with tarfile.open(args.out / "campaign_logs.tar", "w") as tar:
        for f in [*logs, packing]:
            tar.add(f, arcname=f.name)
    print(packing.read_text(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
