#!/usr/bin/env bash
# Data-parallel scaling on this machine: cpu-1 with 1 thread vs cpu-2 with 1 thread per
# rank, the same global batch, the same binary; prints tokens/s of each and their ratio.
#   bash bench/dp_scaling.sh [steps]
# Needs a build and the data of scripts/train.sh (data/tiny-llama, data/train.tok).
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-20}"
args=(--model-name-or-path data/tiny-llama --dataset data/train.tok --batch-size 8
      --block-size 128 --lr 1e-3 --max-steps "$steps" --log-interval "$steps")
tput() { grep -o 'Throughput: [0-9.]*' | tail -1 | awk '{print $2}'; }
one=$(SOLO_FLAVOR=cpu-1 OMP_NUM_THREADS=1 ./build/examples/train_llama "${args[@]}" | tput)
two=$(SOLO_FLAVOR=cpu-2 ./build/examples/train_llama "${args[@]}" | tput)
echo "cpu-1, 1 thread:           $one tokens/s"
echo "cpu-2, 1 thread per rank:  $two tokens/s"
awk -v a="$two" -v b="$one" 'BEGIN { printf "ratio: %.2fx\n", a / b }'
