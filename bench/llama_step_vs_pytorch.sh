#!/usr/bin/env bash
# Solo vs PyTorch eager, same Llama shapes, same thread count, one command:
#   bash bench/llama_step_vs_pytorch.sh [threads]
# Needs a build (scripts/build.sh) and python3 with torch + transformers (PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-$(nproc)}"
export OMP_NUM_THREADS="$threads"
echo "threads: $threads"
./build/bench/bench_llama_step --steps "${STEPS:-5}" | tee /tmp/solo_step.txt
python3 bench/pytorch_llama_step.py --steps "${STEPS:-5}" --threads "$threads" | tee /tmp/torch_step.txt
python3 - <<'PY'
import re
s = float(re.search(r"([\d.]+) tokens/s", open("/tmp/solo_step.txt").read()).group(1))
t = float(re.search(r"([\d.]+) tokens/s", open("/tmp/torch_step.txt").read()).group(1))
print(f"solo / pytorch = {s / t:.2f}x")
PY
