#!/usr/bin/env bash
# The traces for sample_traces/ on one GPU box, in under 9 minutes.
#
#   bash capture/capture_sample_traces.sh            # from the repo root; writes everything under $OUT
#
# 1. environment facts (GPU, driver, versions) -> env.txt
# 2. the `tracekit capture` runs of capture/sample_traces.toml (eager / cuda-graphs / compile,
#    an Nsight Systems run with its gzipped SQLite export, ...) via `tracekit sweep`, which
#    starts no capture its time budget cannot fit
# 3. the plain-profiler traces (capture/plain_profiler_decode.py: foreign traces, no tracekit
#    metadata) of qwen2.5-7b at ctx 2048, in the time kept for them (PLAIN_S)
# Every step logs to campaign.log and a failing step does not stop the next one. Files are made
# in $WORK and packed at the end into at most 8 tar bundles under $OUT (capture/pack_outputs.py: for a
# remote machine that returns at most 8 files of 16 MiB); unpack with: for t in *.tar; do tar -xf $t; done
# tracekit need not be installed: it runs from this checkout (PYTHONPATH), needing only torch,
# transformers, rich and click, which a GPU image usually has. Nsight needs libdw: carry .debs/
# (docs/architecture.md, "Nsight Systems on a GPU box").
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-/tmp/out}
WORK=${WORK:-/tmp/campaign}
mkdir -p "$OUT" "$WORK"
LOG="$WORK/campaign.log"
BUDGET_S=${BUDGET_S:-540}   # whole campaign: fits a machine that stops a command at 600 s
PLAIN_S=${PLAIN_S:-120}     # kept for the plain-profiler traces, which run last (0: none)
RECIPE=${RECIPE:-capture/sample_traces.toml}
START=$SECONDS
log() { echo "[$(date +%T) +$((SECONDS - START))s] $*" | tee -a "$LOG"; }

log "environment"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv
  python3 -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
  python3 -c "import triton; print('triton', triton.__version__)"
  nproc; lscpu | grep 'Model name'
} > "$WORK/env.txt" 2>&1
tee -a "$LOG" < "$WORK/env.txt"

# Nsight Systems: its importer needs libdw.so.1, unpacked from the carried Debian packages
NSYS=${NSYS:-/opt/nvidia/nsight-compute/2025.3.1/host/target-linux-x64/nsys}
if compgen -G ".debs/*.deb" > /dev/null; then
  mkdir -p /tmp/dw && for f in .debs/*.deb; do dpkg -x "$f" /tmp/dw; done
  export LD_LIBRARY_PATH="/tmp/dw/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
  log "WARNING: no .debs/ carried: nsys may stop at a .qdstrm (see docs/architecture.md, "Nsight Systems on a GPU box")"
fi
if [ -x "$NSYS" ]; then export PATH="$(dirname "$NSYS"):$PATH"; else log "WARNING: no nsys at $NSYS"; fi

# the capture path must import without the analysis dependencies (polars, msgspec)
if ! python3 -c "import tracekit.cli, tracekit.capture" >> "$LOG" 2>&1; then
  log "ERROR: tracekit's CLI does not import here (see the log); tracekit captures will fail"
fi

log "tracekit captures ($RECIPE)"
python3 -m tracekit sweep "$RECIPE" --out "$WORK/sweep" --quiet \
  --budget-s $((BUDGET_S - PLAIN_S - (SECONDS - START))) 2>&1 | tee -a "$LOG"
# the sweep's traces (and any Nsight .nsys-rep / .sqlite beside them) next to the other files;
# each Nsight SQLite export gzipped (-9: a few MB instead of tens)
cp "$WORK"/sweep/traces/* "$WORK"/ 2>/dev/null
cp "$WORK"/sweep/sweep.log "$WORK"/sweep.log 2>/dev/null
for f in "$WORK"/*.sqlite; do [ -f "$f" ] && gzip -9f "$f"; done

if [ "$PLAIN_S" -gt 0 ]; then
  PLAIN_LEFT=$((BUDGET_S - (SECONDS - START)))
  PLAIN_LEFT=$((PLAIN_LEFT < PLAIN_S ? PLAIN_S : PLAIN_LEFT))
  log "plain-profiler traces (qwen2.5-7b, ctx 2048), limit ${PLAIN_LEFT}s"
  timeout "$PLAIN_LEFT" python3 capture/plain_profiler_decode.py --model qwen2.5-7b --ctx 2048 \
    --out "$WORK" >> "$LOG" 2>&1 || log "plain traces FAILED or timed out (exit $?)"
fi

log "files"
rm -f "$WORK"/*.qdstrm   # an unfinished Nsight stream is of no use and can be large
ls -la "$WORK" | tee -a "$LOG"
log "packing into $OUT"
# most wanted first: tracekit captures, the Nsight SQLite export, the plain traces, then the
# .nsys-rep reports (large; they stay behind when the limits are reached)
python3 capture/pack_outputs.py "$WORK" "$OUT" --first 'qwen2.5-7b_ctx2048_*.json.gz' '*.sqlite.gz' \
  'qwen2.5-7b_ctx8192_*.json.gz' 'llama*.json.gz' 'plain_*.json.gz' '*.json.gz' '*.nsys-rep' \
  2>&1 | tee -a "$LOG"
log "done"
