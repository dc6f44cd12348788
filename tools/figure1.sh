#!/usr/bin/env bash
# Figure 1's whole experiment (docs/figure1/README.md): the learning-rate screen of ReLU and tanh, then each
# activation's fastest rate over three seeds until its training error is below 25%, then (the check) the grid's
# rates beside each fastest one to 25% with seed 0, then the report.
#
#   bash tools/figure1.sh DATA [OUT] [override ...]     # e.g. bash tools/figure1.sh ~/cifar10 docs/figure1
#
# DATA: CIFAR-10 as cifar-10-python.tar.gz, cifar-10-batches-py/ or train/ and test/ class folders. OUT: where
# report.md and figure1.png go (default: the sweep folder). Overrides (key=value) go to every run, e.g.
# trainer=gpu. Runs and the sweep folder follow ALEXNET_LOG_DIR (default logs/). Started again, it trains only
# the runs it has not finished. How long it takes: BENCHMARKS.md, "Figure 1".
set -euo pipefail
data=$(realpath "${1:?usage: bash tools/figure1.sh DATA [OUT] [override ...]}")
shift
out=""
if [ $# -gt 0 ] && [[ "$1" != *=* ]]; then
  out=$(realpath -m "$1")
  shift
fi
cd "$(dirname "$0")/.."
sweep="${ALEXNET_LOG_DIR:-logs}/figure1/multirun"
root="data.root='$data'"  # quoted for Hydra: a comma in the path would otherwise make a sweep of it
python src/figure1.py -m stage=screen "$root" "$@"
python src/report.py --figure1 "$sweep" --chosen | while read -r activation lr; do
  python src/figure1.py -m stage=seeds "model.activation=$activation" "optim.lr=$lr" "$root" "$@" </dev/null
done
python src/report.py --figure1 "$sweep" --neighbours | while read -r activation lr; do
  python src/figure1.py -m stage=check "model.activation=$activation" "optim.lr=$lr" "$root" "$@" </dev/null
done
python src/report.py --figure1 "$sweep" --out "${out:-$sweep}"
