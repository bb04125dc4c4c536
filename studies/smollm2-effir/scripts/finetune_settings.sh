#!/usr/bin/env bash
# Which fine-tuning settings let a pruned SmolLM2 learn on a CPU budget? Trains the 50%-MLP-dropped model (the
# prune stage of studies/smollm2-effir/recipes/mlp50.yaml) with the study's settings (SciFact train, batch 16 + 1
# BM25 hard negative each, so 32 candidates per query and a chance-level loss of ln 32 = 3.47; documents at 64
# tokens; 57 steps = one epoch; full fine-tuning, lr 1e-4, scale 50, fp32) and with one setting changed at a time.
# Prints the seconds per step and the loss every 3 steps. Results: docs/finetune.md.
#   bash studies/smollm2-effir/scripts/finetune_settings.sh [PRUNED_FOLDER] [STEPS]
# The script works in the repo root wherever it is started: a relative PRUNED_FOLDER is taken from there, and the
# training data from ../shared/data beside the repo.
set -euo pipefail
cd "$(dirname "$0")/../../.."   # the repo root
model=${1:-runs/study/mlp50/pruned}
steps=${2:-57}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
common=(--train ../shared/data/scifact --max-length 64 --hard-negatives 1 --batch-size 16 --mini-batch-size 16
        --warmup-ratio 0.1 --scale 50 --logging-steps 3 --save-steps 1000 --no-verify-reload)
run() {  # NAME STEPS FLAGS...
  local name=$1 n=$2
  shift 2
  effir-surgery finetune "$model" -o "$work/$name" "${common[@]}" --max-steps "$n" "$@" > "$work/$name.log" 2>&1
  local seconds
  seconds=$(grep -o "time: [0-9.]*s" "$work/$name.log" | tr -dc '0-9.')
  echo "$name: $(python3 -c "print(f'{$seconds / $n:.1f}')") s/step; loss every 3 steps:" \
    "$(grep -o "'loss': '[0-9.]*'" "$work/$name.log" | cut -d"'" -f4 | tr '\n' ' ')"
}
run study "$steps" --full --learning-rate 1e-4 --query-prompt "" --no-bf16
run with-instruction "$steps" --full --learning-rate 1e-4 --no-bf16   # the default query instruction
run lora-r16 "$steps" --lora --lora-dropout 0 --learning-rate 2e-4 --query-prompt "" --no-bf16
# speed only (9 steps): LoRA's default dropout, and bf16 autocast
run lora-r16-dropout-0.05 9 --lora --lora-dropout 0.05 --learning-rate 2e-4 --query-prompt "" --no-bf16
run bf16-autocast 9 --full --learning-rate 1e-4 --query-prompt "" --bf16
