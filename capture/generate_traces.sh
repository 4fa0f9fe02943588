#!/usr/bin/env bash
# On a GPU box: the plain generate() / compiled-loop traces (capture/generate_traces.py) and one
# generate() under Nsight Systems with no NVTX range. Writes the traces and their manifest into
# ${GEN_DIR:-/tmp/gen}, then one tar of them, ${OUT:-/tmp}/gen_traces.tar.
# Nsight Systems' importer needs libdw/libelf: `apt-get download libdw1 libelf1` into .debs/ first.
set -u
cd "$(dirname "$0")/.."
DEST=${GEN_DIR:-/tmp/gen}
mkdir -p "$DEST"
export PYTHONUNBUFFERED=1
timeout "${GEN_TIMEOUT:-260}" python3 capture/generate_traces.py --out "$DEST" ${WHICH:+--which "$WHICH"}

NSYS=/opt/nvidia/nsight-compute/2025.3.1/host/target-linux-x64/nsys
if [ -x "$NSYS" ] && ls .debs/*.deb >/dev/null 2>&1; then
  mkdir -p /tmp/dw && for f in .debs/*.deb; do dpkg -x "$f" /tmp/dw; done
  export LD_LIBRARY_PATH=/tmp/dw/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
  timeout 120 "$NSYS" profile --trace=cuda --cuda-graph-trace=node --sample=none --cpuctxsw=none \
    -f true -o /tmp/gen_nsys python3 capture/generate_traces.py --out /tmp/gen_nsys_out \
    --which gen_small 2>&1 | tail -5
  timeout 60 "$NSYS" export --type sqlite -f true -o /tmp/gen_nsys.sqlite /tmp/gen_nsys.nsys-rep \
    2>&1 | tail -2
  [ -f /tmp/gen_nsys.sqlite ] && gzip -9 -c /tmp/gen_nsys.sqlite > "$DEST/gen_nsys_qwen2.5-0.5b.sqlite.gz"
  cp /tmp/gen_nsys_out/generate_manifest.json "$DEST/gen_nsys_manifest.json" 2>/dev/null
fi
ls -la "$DEST"
tar -cf "${OUT:-/tmp}/gen_traces.tar" -C "$DEST" .
