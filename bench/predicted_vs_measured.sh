#!/usr/bin/env bash
# The planner's predicted step time against the measured one, on this machine: the 58M Llama
# of bench_llama_step (hidden 512, 8 layers, vocabulary 32000) for 4 sequences of 128 tokens,
# on cpu-1 and cpu-2, f32 and bf16 mixed precision, DP, ZeRO-1, TP and PP (set with SOLO_PLAN,
# costed by the planner on the CPU profile it measures). Each run starts with an empty profile cache
# (its own measurement); the last line reruns one configuration on the profile the closed loop
# rescaled, to show the error after recalibration. Target: within 15%.
#   bash bench/predicted_vs_measured.sh
# Needs a build (build/, or $SOLO_BUILD_DIR) and data/train.tok of scripts/train.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${SOLO_BUILD_DIR:-build}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin/tools/solo_create_llama" --output "$work/llama-58m" --vocab-size 32000 --hidden-size 512 \
  --intermediate-size 1376 --layers 8 --heads 8 --kv-heads 8 --max-position-embeddings 256 \
  --seed 0 >/dev/null
run() {  # flavor, plan, precision flag, cache dir
  SOLO_FLAVOR="$1" SOLO_PLAN="$2" XDG_CACHE_HOME="$4" OMP_NUM_THREADS=1 \
    "$bin/examples/train_llama" --model-name-or-path "$work/llama-58m" --dataset data/train.tok \
    --batch-size 4 --block-size 128 --lr 1e-4 --max-steps 5 --log-interval 5 $3 2>/dev/null |
    grep -o 'Measured step [0-9.]* s against the predicted [0-9.]* s (error [-+0-9]*%)' || echo "no measurement"
}
for flavor in cpu-1 cpu-2; do
  ranks=${flavor#cpu-}
  for precision in f32 bf16; do
    flag=""
    [ "$precision" = bf16 ] && flag=--bf16
    for plan in "dp=$ranks" "dp=$ranks,zero=1" "tp=$ranks" "pp=$ranks"; do
      [ "$ranks" = 1 ] && [ "$plan" != "dp=1" ] && continue  # ZeRO, TP and PP need several ranks
      rm -rf "$work/cache" && mkdir -p "$work/cache"
      printf '%-6s %-5s %-12s %s\n' "$flavor" "$precision" "$plan" "$(run "$flavor" "$plan" "$flag" "$work/cache")"
    done
  done
done
rm -rf "$work/cache" && mkdir -p "$work/cache"
run cpu-2 dp=2 "" "$work/cache" >/dev/null
printf '%-6s %-5s %-12s %s\n' cpu-2 f32 "dp=2 again" "$(run cpu-2 dp=2 "" "$work/cache") (rescaled profile)"
