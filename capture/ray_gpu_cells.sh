#!/usr/bin/env bash
# Two real GPU cells of a sweep through Ray on this machine (`tracekit sweep --executor ray`):
# a local Ray cluster is started by the sweep itself (it sees this machine's GPUs), each cell is a
# Ray task with num_gpus=1, and the rows land in $OUT/ray_gpu/results.parquet.
#
#   bash capture/ray_gpu_cells.sh               # from the repo root; writes under $OUT
#
# Needs torch and transformers (a GPU image has them). Ray is installed from wheels in .whl/
# when it is not importable (a machine without a package index): the wheels of ray and of the
# dependencies the image lacks, for this machine's Python, e.g. for Python 3.12 on x86-64:
#   pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#     -d .whl 'ray>=2.9' fsspec msgpack protobuf
# (ray also needs click, filelock, jsonschema, packaging, pyyaml and requests; add them to the
# download when the image lacks them). polars, numpy, scipy and msgspec write the rows; without
# them the cells are captured and `tracekit sweep ... --rows-only` writes the rows elsewhere.
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false RAY_USAGE_STATS_ENABLED=0
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
LOG="$OUT/ray_gpu.log"
log() { echo "[$(date +%T)] $*" | tee -a "$LOG"; }

if ! python3 -c "import ray" 2>/dev/null; then
  log "installing ray from .whl/"
  python3 -m pip install -q --no-index --find-links .whl ray fsspec >> "$LOG" 2>&1 \
    || { log "ERROR: ray could not be installed from .whl/ (see $LOG)"; exit 1; }
fi
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import sys, ray, torch; print('python', sys.version.split()[0], 'ray', ray.__version__, 'torch', torch.__version__, 'gpus', torch.cuda.device_count())"
} 2>&1 | tee -a "$LOG"

log "sweep through Ray"
python3 -m tracekit sweep capture/ray_gpu_smoke.toml --executor ray --out "$OUT/ray_gpu" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
log "sweep exit $rc; the rows:"
python3 -c "
import polars as pl, sys
df = pl.read_parquet(sys.argv[1])
print(df.select('cell', 'gpu', 'mode', 'median_ms', 'gpu_busy_ms', 'r_floor'))
" "$OUT/ray_gpu/results.parquet" 2>&1 | tee -a "$LOG"
# a second run resumes: both cells done, nothing runs
python3 -m tracekit sweep capture/ray_gpu_smoke.toml --executor ray --out "$OUT/ray_gpu" 2>&1 | tee -a "$LOG"
exit "$rc"
