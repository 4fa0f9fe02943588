#!/usr/bin/env bash
# Multi-session captures on one GPU box, for the host-attribution validation and the CUDA-Graphs
# A/B: qwen2.5-7b at ctx 2048, each ARM one `tracekit capture --sessions N` (N fresh processes,
# session 0 also profiled). Runs the arms named on the command line, in order, each under a time
# limit, and stops starting arms when the budget is spent. Writes <arm>.json.gz + <arm>.log and
# env.txt under $WORK, then tars them into $OUT/sessions-<first arm>.tar.
#
#   bash capture/capture_sessions.sh eager eager_sdpa-flash     # from the repo root
#   ARMS: eager | eager_sdpa-flash | eager_sdpa-math | cuda-graphs | compile   (SESSIONS=10)
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-/tmp/out}
WORK=${WORK:-/tmp/sessions}
BUDGET_S=${BUDGET_S:-560}
SESSIONS=${SESSIONS:-10}
MODEL=${MODEL:-qwen2.5-7b}
CTX=${CTX:-2048}
mkdir -p "$OUT" "$WORK"
START=$SECONDS
log() { echo "[$(date +%T) +$((SECONDS - START))s] $*" | tee -a "$WORK/campaign.log"; }

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,power.limit --format=csv
  python3 -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
  nproc; lscpu | grep 'Model name'
} > "$WORK/env.txt" 2>&1
cat "$WORK/env.txt"

for arm in "$@"; do
  left=$((BUDGET_S - (SECONDS - START)))
  if [ "$left" -lt 60 ]; then log "skip $arm: ${left}s left"; continue; fi
  mode=${arm%%_*}
  attn=sdpa
  [ "$arm" != "$mode" ] && attn=${arm#*_}
  n=$SESSIONS
  [ "$mode" = compile ] && n=${COMPILE_SESSIONS:-5}
  name="${MODEL}_ctx${CTX}_${arm}"
  log "$name: --mode $mode --attention $attn --sessions $n (limit ${left}s)"
  timeout -s TERM "$left" python3 -m tracekit capture --model "$MODEL" --ctx "$CTX" --mode "$mode" \
    --attention "$attn" --sessions "$n" --steps 30 --warmup 5 --profile-steps 10 \
    -o "$WORK/$name.json.gz" > "$WORK/$name.log" 2>&1
  log "$name: exit $?"
  tail -n 12 "$WORK/$name.log"
done
tar -cf "$OUT/sessions-${1:-none}.tar" -C "$WORK" .
log "done"
