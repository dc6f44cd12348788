#!/usr/bin/env bash
# A revision against the working tree, side by side: the training step (fp32) and the loader, each run from
# its own tree with its own src/, alternating A B A B, so a restructuring's cost shows as a ratio within the
# noise of one machine's load.
#
#   bash benchmarks/compare_revisions.sh cf843be            # PYTHON=.venv/bin/python ROUNDS=2 by default
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
REV=${1:?give the revision to compare against, e.g. bash benchmarks/compare_revisions.sh HEAD~5}
PY=${PYTHON:-.venv/bin/python}
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"   # absolute, the venv's link kept
ROUNDS=${ROUNDS:-2}
BASE=$(mktemp -d)
trap 'git worktree remove --force "$BASE" >/dev/null 2>&1' EXIT
git worktree add --detach -q "$BASE" "$REV" || exit 1
for round in $(seq "$ROUNDS"); do
  for tree in "$BASE" "$PWD"; do
    name=$([ "$tree" = "$BASE" ] && echo "$REV" || echo "working tree")
    echo "## $name, round $round"
    (cd "$tree" && PYTHONPATH="$tree/src" "$PY" benchmarks/model_step.py --precision fp32 --steps 3 | grep "paper net, this LRN")
    (cd "$tree" && PYTHONPATH="$tree/src" "$PY" benchmarks/loader.py --limit 512 --rounds 3 | grep -E "^\| \(b")
  done
done
