#!/usr/bin/env bash
# Runs the SmolLM2 study (recipes/study/) one recipe after another, logging each with /usr/bin/time -v to
# runs/study/logs/, then builds docs/results.md. Each recipe reuses its completed stages, so rerunning this script
# after an interruption continues where it stopped.
#   bash scripts/run_study.sh [variant ...]      (default: all variants, then the report)
set -uo pipefail
export PYTHONUNBUFFERED=1   # stage and loss lines reach the logs as they happen
cd "$(dirname "$0")/.."
mkdir -p runs/study/logs
variants=("$@")
[ ${#variants[@]} -eq 0 ] && variants=(ref mlp25 mlp50 attn25 attn50 width-oneshot width-learned report arguana)
for v in "${variants[@]}"; do
  echo "$(date -u +%FT%TZ) start $v" >> runs/study/logs/progress.txt
  /usr/bin/time -v effir-surgery run "recipes/study/$v.yaml" > "runs/study/logs/$v.out" 2> "runs/study/logs/$v.err"
  echo "$(date -u +%FT%TZ) end $v (exit $?)" >> runs/study/logs/progress.txt
done
if [ -f runs/study/report/eval/results.json ]; then
  python scripts/study_report.py
fi
