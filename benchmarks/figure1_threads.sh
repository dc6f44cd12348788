#!/usr/bin/env bash
# Figure 1's runs on a 2-core CPU: one run on both cores, or two one-thread runs side by side (as a sweep could be
# launched). Prints each one's training images/s (figure1_epoch.py's project row) and the two side by side's sum.
#
#   bash benchmarks/figure1_threads.sh DIR        # DIR: CIFAR-10 in any form alexnet.data.cifar reads
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:?usage: bash benchmarks/figure1_threads.sh DIR}
store=$(mktemp -d)
trap 'rm -rf "$store"' EXIT
epoch() { python benchmarks/figure1_epoch.py --root "$root" --store "$store" --rounds 1 | awk -F'|' '/project \(/ {gsub(/ /, "", $4); print $4}'; }
python -c 'import sys; from alexnet.data.cifar import prepare; prepare(*sys.argv[1:])' "$root" "$store"  # decoded once
both=$(OMP_NUM_THREADS=2 epoch)
OMP_NUM_THREADS=1 epoch >"$store/a" &
OMP_NUM_THREADS=1 epoch >"$store/b"
wait
a=$(cat "$store/a") b=$(cat "$store/b")
echo "| how | training images/s |"
echo "|---|---:|"
echo "| one run, 2 threads | $both |"
echo "| two runs side by side, 1 thread each | $a + $b = $((a + b)) |"
echo "side by side / one run: $(python -c "print(f'{($a + $b) / $both:.2f}')")"
