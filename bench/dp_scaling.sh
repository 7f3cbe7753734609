#!/usr/bin/env bash
# Data-parallel scaling on this machine: cpu-1 with 1 thread vs cpu-2 with 1 thread per
# rank, the same global batch, the same binary, under plain DP and ZeRO-1 and ZeRO-2 (forced
# with SOLO_PLAN); prints tokens/s of each, side by side, and their ratios to cpu-1.
#   bash bench/dp_scaling.sh [steps]
# Needs a build (build/, or $SOLO_BUILD_DIR) and the data of scripts/train.sh
# (data/tiny-llama, data/train.tok).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${SOLO_BUILD_DIR:-build}"
steps="${1:-20}"
args=(--model-name-or-path data/tiny-llama --dataset data/train.tok --batch-size 8
      --block-size 128 --lr 1e-3 --max-steps "$steps" --log-interval "$steps")
tput() { grep -o 'Throughput: [0-9.]*' | tail -1 | awk '{print $2}'; }
one=$(SOLO_FLAVOR=cpu-1 OMP_NUM_THREADS=1 "$bin/examples/train_llama" "${args[@]}" | tput)
echo "cpu-1, 1 thread:                    $one tokens/s"
for plan in dp=2 dp=2,zero=1 dp=2,zero=2; do
  two=$(SOLO_FLAVOR=cpu-2 SOLO_PLAN=$plan "$bin/examples/train_llama" "${args[@]}" | tput)
  awk -v p="$plan" -v a="$two" -v b="$one" \
    'BEGIN { printf "cpu-2 %-12s 1 thread per rank: %s tokens/s, %.2fx\n", p ",", a, a / b }'
done
