#!/usr/bin/env bash
# First run on a new GPU box: environment facts, the three plain-profiler traces, an nsys smoke test.
# Usage: bash capture/probe_gpu.sh   (writes under $OUT)
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  python3 -c "import torch, transformers, triton; print(torch.__version__, transformers.__version__, triton.__version__, torch.cuda.get_device_name())"
  nproc; lscpu | grep 'Model name'
} 2>&1 | tee "$OUT/env.txt"
python3 capture/plain_profiler_decode.py --model qwen2.5-7b --ctx 2048 --out "$OUT" 2>&1 | grep -v Warning | tee "$OUT/plain.log"
# nsys smoke test (docs/architecture.md, "Nsight Systems on a GPU box")
mkdir -p /tmp/dw && for f in .debs/*.deb; do dpkg -x "$f" /tmp/dw; done
export LD_LIBRARY_PATH=/tmp/dw/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
NSYS=/opt/nvidia/nsight-compute/2025.3.1/host/target-linux-x64/nsys
ls -la $NSYS
cd /tmp && timeout 180 $NSYS profile --trace=cuda,nvtx --cuda-graph-trace=node --sample=none --cpuctxsw=none -o /tmp/smoke -f true \
  python3 -c "import torch; x=torch.randn(1024,1024,device='cuda'); torch.cuda.nvtx.range_push('s'); [x@x for _ in range(10)]; torch.cuda.nvtx.range_pop(); torch.cuda.synchronize()" 2>&1 | tail -5
timeout 120 $NSYS export --type sqlite -o /tmp/smoke.sqlite /tmp/smoke.nsys-rep 2>&1 | tail -3
ls -la /tmp/smoke* ; python3 -c "
import sqlite3; c=sqlite3.connect('/tmp/smoke.sqlite'); print([r[0] for r in c.execute(\"select name from sqlite_master where type='table'\")]); print(c.execute('select count(*) from CUPTI_ACTIVITY_KIND_KERNEL').fetchone())"
