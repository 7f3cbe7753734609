#!/usr/bin/env bash
# The main job. On a fresh machine it installs what is needed, builds, and then:
#   1. trains a SentencePiece tokenizer on Debian's fortunes (plain English),
#   2. tokenizes the corpus into data/train.tok,
#   3. creates a small Llama (about 15M parameters) in Hugging Face layout,
#   4. trains it on one CPU device, the loss falling step by step,
#   5. saves it, loads it back and continues a prompt greedily.
# SOLO_STEPS (default 300) sets the number of training steps.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
bin=build
corpus=/usr/share/games/fortunes
mkdir -p data
if [ ! -f data/tokenizer.model ]; then
  "$bin/tools/solo_train_tokenizer" --input "$corpus" --vocab-size 8000 --output-prefix data/tokenizer
fi
if [ ! -f data/train.tok ]; then
  "$bin/tools/solo_prepare_data" --tokenizer data/tokenizer.model --input "$corpus" \
    --output data/train.tok --append-eos
fi
rm -rf data/tiny-llama data/tiny-llama-trained
"$bin/tools/solo_create_llama" --output data/tiny-llama --tokenizer data/tokenizer.model \
  --hidden-size 384 --intermediate-size 1024 --layers 6 --heads 6 --kv-heads 2 \
  --max-position-embeddings 512 --seed 0
"$bin/examples/train_llama" --model-name-or-path data/tiny-llama --dataset data/train.tok \
  --num-train-epochs 1 --batch-size 8 --block-size 128 --lr 1e-3 --warmup-steps 30 \
  --max-steps "${SOLO_STEPS:-300}" --log-interval 10 --save-model-dir data/tiny-llama-trained
"$bin/examples/generate" --model-name-or-path data/tiny-llama-trained \
  --prompt "The best way to" --max-new-tokens 40
