#!/usr/bin/env bash
# Held-out checks of the what-ifs on one GPU box: per (model, context), three arms, each one
# `tracekit capture --sessions N` (fresh processes; session 0 profiled):
#   eager        the default SDPA (PyTorch picks cuDNN on Hopper: a plan-build stall per call)
#   flash        --attention sdpa-flash: the measured step "without the stalls"
#   graphs       --mode cuda-graphs: the measured graph step (HF's static-cache graph program)
#   replay       the eager step's own kernels captured as one CUDA graph and replayed
#                (capture/plain_profiler_decode.py graph_eager_kernels): the program the default
#                CUDA-Graphs what-if predicts; qwen2.5-7b and llama-3.1-8b only
# `tracekit explain` of the eager trace predicts the other three; `analyses/whatif_check.py`
# compares (untar, then `python analyses/whatif_check.py DIR`). Writes traces, logs and env.txt
# of this run (WORK is emptied first: a warm machine keeps /tmp) under $OUT, one tar per
# configuration (each stays under the device tool's 16 MiB a file) and one of the logs; untar
# them all into one folder.
#
#   CONFIGS="qwen2.5-7b:2048 llama-3.1-8b:3000" bash capture/calibration_campaign.sh
#   CPU_AFFINITY=gpu ... pins every capture process (tracekit capture --cpu-affinity; the replay
#   arm's script runs under taskset with the same CPUs when the policy is a CPU list); `fast`
#   pins to the CPUs the launch probe's sweep found fast (none where every CPU is)
#   PROBE="none fast 0-3" ... first runs capture/host_probe.py: a sweep over every CPU, then
#   PROBE_ROUNDS fresh probe processes per policy (probe.jsonl; analyses/host_probe_summary.py)
#
# msgspec and isal travel as wheels in .whl/ (capture reads its calibration trace back with
# tracekit's reader); they are installed into /tmp/site.
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/out}
WORK=${WORK:-/tmp/calib}
BUDGET_S=${BUDGET_S:-540}
SESSIONS=${SESSIONS:-3}
CONFIGS=${CONFIGS-"qwen2.5-7b:2048 llama-3.1-8b:3000"}  # CONFIGS="" with PROBE: the probe alone
ARMS=${ARMS:-"eager flash graphs replay"}
CPU_AFFINITY=${CPU_AFFINITY:-none}
PROBE=${PROBE:-}; PROBE_ROUNDS=${PROBE_ROUNDS:-3}
SITE=${SITE:-/tmp/site}
rm -rf "$WORK"; mkdir -p "$OUT" "$WORK"
START=$SECONDS
log() { echo "[$(date +%T) +$((SECONDS - START))s] $*" | tee -a "$WORK/campaign.log"; }
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .whl/msgspec-*.whl .whl/isal-*.whl 2>&1 | tail -n 3
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit --format=csv
  python3 -c "import sys, torch, transformers; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, torch.cuda.get_device_name())"
  nproc; lscpu | grep -E 'Model name|MHz|NUMA|Socket|Thread'; hostname
  nvidia-smi topo -m; lscpu -e; head -n 1 /proc/stat
} > "$WORK/env.txt" 2>&1
cat "$WORK/env.txt"
fast=none
if [ -n "$PROBE" ] || [ "$CPU_AFFINITY" = fast ]; then
  python3 capture/host_probe.py --sweep --label sweep > "$WORK/probe.jsonl"
  fast=$(python3 capture/host_probe.py --fast-cpus "$WORK/probe.jsonl" 2>/dev/null) || fast=none
  log "fast CPUs: $fast"
  for r in $(seq "$PROBE_ROUNDS"); do
    for p in $PROBE; do
      case $p in none) pre=() ;; fast) [ "$fast" = none ] && continue; pre=(taskset -c "$fast") ;;
                 *) pre=(taskset -c "$p") ;; esac
      "${pre[@]}" python3 capture/host_probe.py --label "$p" >> "$WORK/probe.jsonl"
    done
  done
fi
[ "$CPU_AFFINITY" = fast ] && CPU_AFFINITY=$fast
for cfg in $CONFIGS; do
  model=${cfg%%:*}; ctx=${cfg#*:}
  for arm in $ARMS; do
    left=$((BUDGET_S - (SECONDS - START)))
    if [ "$left" -lt 45 ]; then log "skip $model ctx $ctx $arm: ${left}s left"; continue; fi
    name="${model}_ctx${ctx}_${arm}"
    capture=(python3 -m tracekit capture --model "$model" --ctx "$ctx" --steps 30 --warmup 5
             --profile-steps 10 --cpu-affinity "$CPU_AFFINITY" -o "$WORK/$name.json.gz")
    case $arm in
      eager)  cmd=("${capture[@]}" --mode eager --sessions "$SESSIONS") ;;
      flash)  cmd=("${capture[@]}" --mode eager --attention sdpa-flash --sessions "$SESSIONS") ;;
      graphs) cmd=("${capture[@]}" --mode cuda-graphs --sessions 1) ;;
      replay) cmd=(python3 capture/plain_profiler_decode.py --model "$model" --ctx "$ctx"
                   --which graph_eager_kernels --out "$WORK/plain_$name")
              case $CPU_AFFINITY in none|gpu) ;; *) cmd=(taskset -c "$CPU_AFFINITY" "${cmd[@]}") ;; esac ;;
    esac
    log "$name: ${cmd[*]} (limit ${left}s)"
    timeout -s TERM "$left" "${cmd[@]}" > "$WORK/$name.log" 2>&1
    log "$name: exit $?"
    if [ "$arm" = replay ]; then  # the plain script names its trace itself
      mv "$WORK/plain_$name"/*graph_eager_kernels.json.gz "$WORK/$name.json.gz" 2>/dev/null
      rm -rf "$WORK/plain_$name"
    fi
    tail -n 4 "$WORK/$name.log"
  done
  (cd "$WORK" && tar -cf "$OUT/calib-${model}_ctx${ctx}.tar" "${model}_ctx${ctx}"_* 2>/dev/null)
done
log "done"
head -n 1 /proc/stat >> "$WORK/env.txt"
(cd "$WORK" && tar -cf "$OUT/calib-logs-$(date +%H%M%S).tar" env.txt campaign.log probe.jsonl 2>/dev/null)
