#!/usr/bin/env bash
# The planner's search time on this machine: `solo plan` of Llama-2-13B on 32 MI250 and of
# Llama-2-70B on 64 H100 (8 per host), with candidates, feasible and milliseconds, then the
# 70B's search as its block count grows from 8 to 80 (it compiles 1 and 2 blocks of each
# candidate, so the time should stay nearly flat).
#   bash bench/plan_search.sh
# Needs a build (build/, or $SOLO_BUILD_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${SOLO_BUILD_DIR:-build}/cli/solo"
row() {  # label, solo plan arguments...
  local label="$1"
  shift
  local start end
  start=$(date +%s%N)
  "$bin" plan "$@" --json >/tmp/solo-plan-bench.json || true
  end=$(date +%s%N)
  python3 - "$label" $(((end - start) / 1000000)) <<'PY'
import json, sys
j = json.load(open("/tmp/solo-plan-bench.json"))
c = j.get("chosen", {})
plan = f"dp={c['dp']},tp={c['tp']},pp={c['pp']},micro={c['micro_batches']},zero={c['zero']}" if c else "none fits"
print(f"{sys.argv[1]:<44} candidates {j['candidates']:4d}  feasible {j['feasible']:4d}  "
      f"search {j['search_ms']:6.0f} ms  wall {sys.argv[2]:5s} ms  chosen {plan}")
PY
}
row "llama2-13b, 32 x mi250, batch 512 x 1024" \
  --model llama2-13b --device mi250 --devices 32 --batch 512 --seq 1024 --precision bf16-mixed
row "llama2-70b, 64 x h100 (8/host), 1024 x 4096" \
  --model llama2-70b --device h100 --devices 64 --devices-per-host 8 --batch 1024 --seq 4096 \
  --precision bf16-mixed
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
for layers in 8 16 40 80; do
  cat >"$dir/config-$layers.json" <<JSON
{"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 8192,
 "intermediate_size": 28672, "num_hidden_layers": $layers, "num_attention_heads": 64,
 "num_key_value_heads": 8, "vocab_size": 32000, "max_position_embeddings": 4096,
 "rms_norm_eps": 1e-5, "rope_theta": 10000.0}
JSON
  row "70b shapes, $layers blocks, 64 x h100" --model "$dir/config-$layers.json" --device h100 \
    --devices 64 --devices-per-host 8 --batch 1024 --seq 4096 --precision bf16-mixed
done
