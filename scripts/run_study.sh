#!/usr/bin/env bash
# Runs the SmolLM2 study (recipes/study/) one recipe after another, logging each with /usr/bin/time -v to
# runs/study/logs/, and keeps each finished variant's results in docs/study/VARIANT/ (scripts/study_archive.py).
# A variant already kept there is skipped (FORCE=1 reruns it), so the study is collected over several sessions:
# one variant costs about half an hour on a 2-core CPU. Each recipe also reuses its completed stages, so rerunning
# after an interruption continues where it stopped. Ends by measuring throughput (scripts/study_speed.py) and
# building docs/results.md (scripts/study_report.py) from what docs/study/ holds.
#   bash scripts/run_study.sh [variant ...]      (default: every variant, the baselines, then speed and report)
# VARIANT@SEED (e.g. mlp25@7) repeats a variant with another fine-tuning seed (--set finetune.seed=SEED), in its own
# run folder runs/study/VARIANT@SEED, kept as docs/study/VARIANT@SEED: the report shows the run-to-run spread.
set -uo pipefail
export PYTHONUNBUFFERED=1   # stage and loss lines reach the logs as they happen
cd "$(dirname "$0")/.."
mkdir -p runs/study/logs
variants=("$@")
[ ${#variants[@]} -eq 0 ] && variants=(ref mlp25 mlp50 attn25 attn50 width-oneshot width-learned width-learned-taylor width-learned-penalty01 ft-mlp50 ft-width-oneshot mlp50-long baselines)
log() { echo "$(date -u +%FT%TZ) $*" >> runs/study/logs/progress.txt; }
for v in "${variants[@]}"; do
  if [ -f "docs/study/$v/eval/results.json" ] && [ "${FORCE:-0}" != 1 ]; then
    log "skip $v (kept in docs/study/$v; FORCE=1 reruns it)"
    continue
  fi
  recipe=${v%@*}
  repeat=()
  [[ $v == *@* ]] && repeat=(--set "finetune.seed=${v#*@}" --set "run_dir=runs/study/$v")
  if [[ $v == ft-* ]] && [ ! -f runs/study/ref/finetuned/config.json ]; then
    # the second protocol starts from the fine-tuned reference's weights, which only the run folder holds
    log "start ref weights for $v"
    effir-surgery run recipes/study/ref.yaml --skip evaluate > runs/study/logs/ref-weights.out 2>&1
  fi
  log "start $v"
  /usr/bin/time -v effir-surgery run "recipes/study/$recipe.yaml" "${repeat[@]}" > "runs/study/logs/$v.out" 2> "runs/study/logs/$v.err"
  status=$?
  log "end $v (exit $status)"
  [ $status -eq 0 ] && python scripts/study_archive.py "$v" >> runs/study/logs/progress.txt
done
if [ $# -eq 0 ]; then
  python scripts/study_speed.py && python scripts/study_report.py
fi
