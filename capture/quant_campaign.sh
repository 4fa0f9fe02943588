#!/usr/bin/env bash
# Quantized decode on one GPU box, in one run of under 10 minutes: qwen2.5-7b at ctx 2048, bf16 and
# each torchao scheme, in cuda-graphs, eager and compile, one `tracekit capture` process per cell.
#
#   bash capture/quant_campaign.sh                 # from the repo root; everything under $OUT
#   CELLS="graphs:none graphs:int4" bash capture/quant_campaign.sh   # chosen cells, in order
#
# 1. torchao travels as a wheel in .whl/ (the image has none): installed into /tmp/site;
# 2. env.txt: GPU, driver, versions;
# 3. the cells of $CELLS in order (MODE:SCHEME, MODE one of eager | graphs | compile), each under
#    a time limit, a cell starting only while its estimated time fits the budget ($BUDGET_S);
#    then, while time is left, the cells of $REPEAT again as further fresh sessions (files _r2,
#    _r3: the analysis pools every trace of a cell as one session each);
# 4. quant_summary.md: one row per trace, from the capture metadata alone (stdlib + tracekit's
#    specs: the GPU box needs no polars), printed last;
# 5. traces and logs packed by capture/pack_outputs.py into at most 8 tars under $OUT.
# Eager steps use --attention sdpa-flash (the default picks cuDNN on Hopper, which stalls the host
# 35-50 ms per step rebuilding its plan, hiding what quantization changes); graphs and compile use
# the default SDPA (flash refuses the static cache's mask). Profiled windows are short (eager 3
# steps, else 5) so each trace stays under ~1.5 MB.
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/out}
WORK=${WORK:-/tmp/quant}
BUDGET_S=${BUDGET_S:-510}   # fits a machine that stops a command at 600 s; packing needs a few
MODEL=${MODEL:-qwen2.5-7b}
CTX=${CTX:-2048}
CELLS=${CELLS:-"graphs:none graphs:int4 graphs:int8 graphs:fp8-dynamic graphs:nf4 graphs:fp8 eager:none eager:int4 eager:int8 compile:none compile:int4 eager:fp8-dynamic eager:fp8 eager:nf4"}
REPEAT=${REPEAT:-"graphs:none graphs:int4"}
SITE=${SITE:-/tmp/site}
STEPS=${STEPS:-30}; WARMUP=${WARMUP:-5}
DEVICE=${DEVICE:-cuda}   # cpu: the CPU test of this script (tests/test_quant_campaign.py)
DTYPE=${DTYPE:-auto}
SLUG=$MODEL; case $MODEL in *.json) SLUG=$(basename "$(dirname "$MODEL")");; esac
mkdir -p "$OUT" "$WORK"
LOG="$WORK/campaign.log"
START=$SECONDS
log() { echo "[$(date +%T) +$((SECONDS - START))s] $*" | tee -a "$LOG"; }

if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .whl/*.whl 2>&1 | tail -n 3
else
  log "WARNING: no .whl/ carried: quantized cells will fail with 'torchao is not installed'"
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"

log "environment"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv
  python3 -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, torch.cuda.get_device_name(), 'cc', torch.cuda.get_device_capability())"
  python3 -c "import torchao; print('torchao', torchao.__version__)" 2>&1 | tail -n 1
  nproc; lscpu | grep 'Model name'
} > "$WORK/env.txt" 2>&1
tee -a "$LOG" < "$WORK/env.txt"

# seconds a cell is expected to take (imports + 7B build + quantize + prefill + steps + export):
# a guess until a cell of the mode has run, then the longest seen of that mode
declare -A EST=([eager]=60 [graphs]=50 [compile]=150)
declare -A SEEN=()

run_cell() {  # MODE:SCHEME [suffix]
  local spec=$1 suffix=${2:-} mode=${1%%:*} quant=${1#*:}
  local tmode=$mode attn=sdpa-flash psteps=3
  [ "$mode" = graphs ] && tmode=cuda-graphs
  [ "$mode" != eager ] && { attn=sdpa; psteps=5; }
  local left=$((BUDGET_S - (SECONDS - START)))
  if [ "$left" -lt "${EST[$mode]}" ]; then log "skip $spec$suffix: ${left}s left < ~${EST[$mode]}s"; return 1; fi
  local name="${SLUG}_ctx${CTX}_${tmode}_${quant/none/bf16}${suffix}"
  log "$name: --mode $tmode --quant $quant --attention $attn (limit ${left}s)"
  local t0=$SECONDS
  timeout -s TERM "$left" python3 -m tracekit capture --model "$MODEL" --ctx "$CTX" --mode "$tmode" \
    --quant "$quant" --attention "$attn" --steps "$STEPS" --warmup "$WARMUP" --profile-steps "$psteps" \
    --device "$DEVICE" --dtype "$DTYPE" -q \
    -o "$WORK/$name.json.gz" > "$WORK/$name.log" 2>&1
  local rc=$? took=$((SECONDS - t0))
  if [ "$rc" -eq 0 ]; then
    if [ -z "${SEEN[$mode]:-}" ] || [ "$took" -gt "${EST[$mode]}" ]; then EST[$mode]=$took; fi
    SEEN[$mode]=1
  fi
  log "$name: exit $rc in ${took}s"
  grep -E '^(Error|unprofiled|quant|trace) ' "$WORK/$name.log" | tee -a "$LOG"
  [ "$rc" -eq 0 ] || tail -n 5 "$WORK/$name.log" | tee -a "$LOG"
  return 0
}

plan=0; for c in $CELLS; do plan=$((plan + EST[${c%%:*}])); done
log "plan: $(echo $CELLS | wc -w) cells (~${plan}s by the first estimates; budget ${BUDGET_S}s), then repeats of: $REPEAT"
for c in $CELLS; do run_cell "$c"; done
for r in 2 3; do
  for c in $REPEAT; do run_cell "$c" "_r$r" || break 2; done
done

log "summary"
python3 capture/quant_summary.py "$WORK" > "$WORK/quant_summary.md" 2>> "$LOG"
python3 capture/pack_outputs.py "$WORK" "$OUT" --files "${PACK_FILES:-7}" --first '*.md' '*graphs*.json.gz' \
  '*eager*.json.gz' '*compile*.json.gz' >> "$LOG" 2>&1
cp "$WORK/quant_summary.md" "$OUT/" 2>/dev/null
log "done"
cat "$WORK/quant_summary.md"
