#!/usr/bin/env bash
# Does where a capture's threads run explain how far fresh processes' stall-free steps spread
# on this host? One call: the host's CPU layout, the launch probe (capture/host_probe.py) swept
# over every CPU in one process, then in fresh processes under each CPU policy in turn, then
# (FLASH_CONFIG) one flash-forced capture per policy. Everything lands in $OUT as one tar.
# Policies: none, gpu (the GPU's local CPUs), fast (the CPUs the sweep found fast, written to
# $WORK/fast.txt: "none" where all are, and then the fast policy is skipped) or a CPU list.
#   POLICIES="none gpu fast 2-5" ROUNDS=5 FLASH_CONFIG=llama-3.1-8b:4500 bash capture/host_variance.sh
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/out}; WORK=${WORK:-/tmp/hostvar}; SITE=${SITE:-/tmp/site}
POLICIES=${POLICIES:-"none gpu"}; ROUNDS=${ROUNDS:-5}; FLASH_CONFIG=${FLASH_CONFIG:-}
SESSIONS=${SESSIONS:-3}; BUDGET_S=${BUDGET_S:-400}
rm -rf "$WORK"; mkdir -p "$OUT" "$WORK"; START=$SECONDS
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .whl/msgspec-*.whl .whl/isal-*.whl 2>&1 | tail -n 3
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
bus=$(nvidia-smi --query-gpu=pci.bus_id --format=csv,noheader | head -n1 | tr 'A-F' 'a-f' | sed 's/^0000//')
{
  nvidia-smi --query-gpu=name,pci.bus_id,driver_version,clocks.sm,clocks.max.sm --format=csv
  echo "sysfs $bus: numa_node=$(cat /sys/bus/pci/devices/$bus/numa_node 2>&1) local_cpulist=$(cat /sys/bus/pci/devices/$bus/local_cpulist 2>&1)"
  nproc; lscpu; lscpu -e; hostname; nvidia-smi topo -m
  grep MHz /proc/cpuinfo | sort | uniq -c
  head -n 1 /proc/stat
} > "$WORK/env.txt" 2>&1
cat "$WORK/env.txt"
python3 capture/host_probe.py --sweep --label sweep | tee "$WORK/probe.jsonl"
gpu_cpus=$(cat /sys/bus/pci/devices/$bus/local_cpulist 2>/dev/null)
fast=$(python3 capture/host_probe.py --fast-cpus "$WORK/probe.jsonl" 2>/dev/null); fast=${fast:-none}; echo "$fast" > "$WORK/fast.txt"
echo "fast CPUs: $fast"
for r in $(seq "$ROUNDS"); do
  for p in $POLICIES; do
    [ "$p" = fast ] && { [ "$fast" = none ] && continue; p=$fast; }
    case $p in none) pre=() ;; gpu) pre=(taskset -c "$gpu_cpus") ;; *) pre=(taskset -c "$p") ;; esac
    "${pre[@]}" python3 capture/host_probe.py --reps 5 --label "$p" | tee -a "$WORK/probe.jsonl"
  done
done
echo "probes done at +$((SECONDS - START))s"
if [ -n "$FLASH_CONFIG" ]; then
  model=${FLASH_CONFIG%%:*}; ctx=${FLASH_CONFIG#*:}
  for p in $POLICIES; do
    [ "$p" = fast ] && { [ "$fast" = none ] && continue; p=$fast; }
    left=$((BUDGET_S - (SECONDS - START)))
    [ "$left" -lt 60 ] && { echo "skip flash $p: ${left}s left"; continue; }
    name="${model}_ctx${ctx}_flash_$(echo "$p" | tr ',' '_')"
    timeout -s TERM "$left" python3 -m tracekit capture --model "$model" --ctx "$ctx" --steps 30 \
      --warmup 5 --profile-steps 10 --mode eager --attention sdpa-flash --sessions "$SESSIONS" \
      --cpu-affinity "$p" -o "$WORK/$name.json.gz" > "$WORK/$name.log" 2>&1
    echo "$name: exit $? at +$((SECONDS - START))s"; tail -n 3 "$WORK/$name.log"
  done
fi
head -n 1 /proc/stat >> "$WORK/env.txt"
tar -cf "$OUT/hostvar-$(date +%H%M%S).tar" -C "$WORK" .
