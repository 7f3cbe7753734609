#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang, ASan and UBSan into build-fuzz/ and runs each
# for $SOLO_FUZZ_SECONDS (default 60) seconds, starting from its committed corpus in
# fuzz/corpus/<target>/. Inputs found on the way go to a scratch copy, never into the committed
# corpus; a crashing input is saved as build-fuzz/findings/<target>/crash-* and the script
# fails. fuzz/dict/<target>.dict, where present, is the target's dictionary.
# $SOLO_FUZZ_TARGETS (space-separated) runs only some targets.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
seconds="${SOLO_FUZZ_SECONDS:-60}"
build_dir=build-fuzz
targets=(${SOLO_FUZZ_TARGETS:-fuzz_safetensors fuzz_hf_config fuzz_inventory fuzz_token_file
  fuzz_tokenizer_json})

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
CC=clang CXX=clang++ cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSOLO_WERROR=ON -DSOLO_FUZZ=ON -DSOLO_CUDA=OFF "${launcher[@]}" >/dev/null
ninja -C "$build_dir" "${targets[@]}"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${targets[@]}"; do
  name="${t#fuzz_}"
  mkdir -p "$build_dir/findings/$t" "$build_dir/logs"
  cp -r "fuzz/corpus/$name" "$scratch/$t"
  log="$build_dir/logs/$t.log"
  # A dictionary of the format's tokens and field names gets the mutator past the key checks.
  dict=()
  [ -f "fuzz/dict/$name.dict" ] && dict=(-dict="fuzz/dict/$name.dict")
  echo "[fuzz] $t: ${seconds}s"
  if ! "$build_dir/fuzz/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "${dict[@]}" -artifact_prefix="$build_dir/findings/$t/" "$scratch/$t" >"$log" 2>&1; then
    failed+=("$t")
    tail -n 40 "$log"
  fi
  # The last status line (coverage, corpus) and the speed, for the CI log.
  grep -E "^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)" "$log" | tail -n 1 || true
  grep -E 'stat::(number_of_executed_units|average_exec_per_sec)' "$log" || true
done
if ((${#failed[@]})); then
  echo "[fuzz] FAILED: ${failed[*]}; crashing inputs are in $build_dir/findings/" >&2
  exit 1
fi
echo "[fuzz] no findings"
