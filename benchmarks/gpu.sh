#!/usr/bin/env bash
# On a GPU machine, in one go: the GPU tests first (tests/test_devices.py -m gpu: bf16 + channels_last runs on
# a raw and a JPEG store, nvJPEG vs the CPU decoder, split placement vs grouped, a compiled run read by
# eval.py and the figures, DDP with one device, resume; about 3 minutes), then the benchmarks, each under its
# own time limit (6 minutes in all at the very most): the training step (variants, fp32 vs bf16; each
# convolution whole vs in halves; eager vs torch.compile), Lightning's cost per step, and end to end with the
# real loader on a prepared store (raw, and JPEG decoded by nvJPEG; bf16, the gpu trainer's default), and an epoch
# of Figure 1's net with the data on the GPU (random images of CIFAR-10's sizes: the machine has no data). Prints
# the tables for BENCHMARKS.md.
#
#   bash benchmarks/gpu.sh                      # tests, then benchmarks
#   bash benchmarks/gpu.sh tests                # only the tests (or only: benchmarks), e.g. for a rerun
#   WORKERS=12 PYTHON=.venv/bin/python bash benchmarks/gpu.sh
# The package is imported from src/ (no install: a lent machine has no network for pip). The benchmarks need
# torch, torchvision, lightning, torchmetrics, pillow, rich and numpy; the tests also need pytest, scipy and
# Hydra, which such a machine lacks: `bash benchmarks/gpu_wheels.sh` (here, with network) puts Hydra's wheels
# in .whl/, and this script installs them when .whl/ travels with the tree.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}
PARTS=${*:-tests benchmarks}
CPUS=$(nproc)
WORKERS=${WORKERS:-$((CPUS > 3 ? CPUS - 2 : 1))}
status=0
step() {  # a time limit, a title, a command: a step that fails or runs out of time does not stop the rest
  local limit=$1 title=$2
  shift 2
  echo
  echo "## $title"
  timeout "$limit" "$@"
  local rc=$?
  if [ "$rc" -eq 124 ]; then echo "(timed out after ${limit}s)"; status=1; fi
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ]; then echo "(failed: exit $rc)"; status=1; fi
}

if [ -d .whl ] && ! "$PY" -c "import hydra" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/gpu-site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/gpu-site"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" -c "import torch, torchvision, lightning; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'torchvision', torchvision.__version__, 'lightning', lightning.__version__, '|', torch.cuda.get_device_name())"
echo "cpus: $(nproc), loader workers: $WORKERS, shared memory: $(df -h /dev/shm | awk 'NR==2 {print $2}')"

if [[ " $PARTS " == *" tests "* ]]; then
  step 240 "GPU tests (pytest -m gpu tests/test_devices.py)" \
    "$PY" -m pytest -m gpu tests/test_devices.py -q -p no:cacheprovider --durations=5
fi
if [[ " $PARTS " != *" benchmarks "* ]]; then exit $status; fi
step 60 "Training step: variants, fp32 and bf16 (model_step.py)" \
  "$PY" benchmarks/model_step.py --device cuda --steps 30
step 20 "Each convolution whole (grouped placement) vs in two halves (split placement) (conv_halves.py)" \
  "$PY" benchmarks/conv_halves.py --device cuda --steps 20
step 75 "Training step: eager vs torch.compile, fp32 and bf16 (model_step.py --compile)" \
  "$PY" benchmarks/model_step.py --device cuda --steps 30 --compile --compile-only
step 30 "This LightningModule under a Trainer vs a plain PyTorch loop (lightning_overhead.py)" \
  "$PY" benchmarks/lightning_overhead.py --device cuda --batch-size 128 --steps 60 --rounds 2
step 60 "Figure 1's net: an epoch of the project vs a plain loop, CIFAR-10's sizes on the GPU (figure1_epoch.py)" \
  "$PY" benchmarks/figure1_epoch.py --synthetic --device cuda --rounds 3
step 70 "End to end, raw store, bf16-mixed (the gpu trainer's default)" \
  "$PY" benchmarks/end_to_end.py --device cuda --precision bf16-mixed --workers "$WORKERS" --steps 200 --images 25600
step 45 "End to end, JPEG store decoded on the GPU (nvJPEG), bf16-mixed" \
  "$PY" benchmarks/end_to_end.py --device cuda --precision bf16-mixed --store-format jpeg --workers "$WORKERS" \
  --steps 150 --images 25600
exit $status
