#!/usr/bin/env bash
# Here, where PyPI is reachable: the pure-Python wheels that a lent GPU machine lacks for the GPU tests (Hydra,
# OmegaConf and the ANTLR runtime they parse with; that machine has Python 3.12, torch, lightning, pytest),
# into .whl/ (ignored by git). Then run benchmarks/gpu.sh there with .whl carried along: it installs them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mkdir -p .whl
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 -d .whl hydra-core==1.3.8 omegaconf==2.3.1
$PY -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3   # published as source only
ls -l .whl
