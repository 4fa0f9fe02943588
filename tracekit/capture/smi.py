"""What ``nvidia-smi`` says about the capture's GPU: one query, no CUDA context needed.

The capture's GPU is the first of ``CUDA_VISIBLE_DEVICES`` (an index or a UUID, both of which
``nvidia-smi --id`` takes), else GPU 0.
"""

from __future__ import annotations

import os
import subprocess


def query_gpu(fields: list[str]) -> list[str] | None:
    """The values of ``nvidia-smi --query-gpu=FIELDS`` for the capture's GPU (no units, stripped),
    or None where nvidia-smi is missing, fails or prints nothing."""
    index = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0] or "0"
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--id={index}", "--query-gpu=" + ",".join(fields),
             "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    return [v.strip() for v in out[0].split(",")] if out and out[0].strip() else None
