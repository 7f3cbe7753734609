#!/usr/bin/env bash
# The main job: installs what is needed, builds, and trains the example model on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
./build/examples/train_char_mlp /usr/share/games/fortunes "${SOLO_STEPS:-300}"
