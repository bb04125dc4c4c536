#!/usr/bin/env bash
# Which fine-tuning setting learns on a CPU budget? 64 SciFact training rows, batch 32 (2 batches, repeated), 12
# steps, documents at 64 tokens, bf16, on the drop-50% SmolLM2 of recipes/smollm2-135m_cpu.yaml. Prints the loss
# every 2 steps and the wall time of each setting. Results: docs/finetune.md.
#   bash scripts/lora_vs_full.sh [PRUNED_FOLDER]
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-runs/smollm2-135m-cpu-drop50/pruned}
work=$(mktemp -d)
for cfg in "lora 2e-4" "lora 1e-3" "full 1e-4" "full 3e-5"; do
  set -- $cfg
  flag=$([ "$1" = lora ] && echo --lora || echo --full)
  start=$(date +%s)
  effir-surgery finetune "$model" --train ../shared/data/scifact -o "$work/$1-$2" "$flag" --learning-rate "$2" \
    --max-examples 64 --batch-size 32 --mini-batch-size 16 --max-length 64 --max-steps 12 --warmup-ratio 0 \
    --logging-steps 2 --bf16 --no-verify-reload --save-steps 100 > "$work/$1-$2.log" 2>&1
  echo "$1 lr $2: $(( $(date +%s) - start )) s, loss every 2 steps: $(grep -o "'loss': '[0-9.]*'" "$work/$1-$2.log" | cut -d"'" -f4 | tr '\n' ' ')"
done
rm -rf "$work"
