#!/usr/bin/env bash
# The GPU benchmarks in one go, each under its own time limit (under 5 minutes in all on one H200):
# the training step (variants, fp32 vs bf16, eager vs torch.compile), Lightning's cost per step, and end to
# end with the real loader on a prepared store (raw and JPEG, bf16; raw fp32). Prints the tables for
# BENCHMARKS.md.
#
#   pip install -e . && bash benchmarks/gpu.sh
#   WORKERS=12 PYTHON=.venv/bin/python bash benchmarks/gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python}
WORKERS=${WORKERS:-$(($(nproc) - 2))}
status=0
step() {  # a time limit, a title, a command: a benchmark that fails or runs out of time does not stop the rest
  local limit=$1 title=$2
  shift 2
  echo
  echo "## $title"
  timeout "$limit" "$@" || { echo "(failed or timed out after ${limit}s: exit $?)"; status=1; }
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, '|', torch.cuda.get_device_name())"
echo "cpus: $(nproc), loader workers: $WORKERS"

step 80 "Training step: variants, fp32 and bf16, eager and compiled (model_step.py)" \
  $PY benchmarks/model_step.py --device cuda --steps 30 --compile
step 40 "This LightningModule under a Trainer vs a plain PyTorch loop (lightning_overhead.py)" \
  $PY benchmarks/lightning_overhead.py --device cuda --batch-size 128 --steps 60 --rounds 2
step 75 "End to end, raw store, bf16-mixed (the gpu trainer's default)" \
  $PY benchmarks/end_to_end.py --device cuda --precision bf16-mixed --workers "$WORKERS" --steps 200 --images 25600
step 55 "End to end, JPEG store decoded on the GPU (nvJPEG), bf16-mixed" \
  $PY benchmarks/end_to_end.py --device cuda --precision bf16-mixed --store-format jpeg --workers "$WORKERS" \
  --steps 150 --images 25600
step 45 "End to end, raw store, fp32" \
  $PY benchmarks/end_to_end.py --device cuda --precision 32-true --workers "$WORKERS" --steps 100 --images 12800
exit $status
