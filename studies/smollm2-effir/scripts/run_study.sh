#!/usr/bin/env bash
# Runs the SmolLM2 study (studies/smollm2-effir/recipes/) one recipe after another, logging each with
# /usr/bin/time -v to runs/study/logs/ (at the repo root), and keeps each finished variant's results in
# studies/smollm2-effir/results/VARIANT/ (study_archive.py). A variant already kept there is skipped (FORCE=1 reruns
# it), so the study is collected over several sessions: one variant costs about half an hour on a 2-core CPU. Each
# recipe also reuses its completed stages, so rerunning after an interruption continues where it stopped. Ends by
# measuring throughput (study_speed.py) and building docs/results.md (study_report.py) from what results/ holds.
#   bash studies/smollm2-effir/scripts/run_study.sh [variant ...]   (default: every variant, the baselines, then
#                                                                     speed and report; runs from any directory)
# VARIANT@SEED (e.g. mlp25@7) repeats a variant with another fine-tuning seed (--set finetune.seed=SEED), in its own
# run folder runs/study/VARIANT@SEED, kept as results/VARIANT@SEED: the report shows the run-to-run spread.
set -uo pipefail
export PYTHONUNBUFFERED=1   # stage and loss lines reach the logs as they happen
here=$(cd "$(dirname "$0")/.." && pwd)  # the study's folder
cd "$here/../.."                        # the repo root: run folders and --set paths are relative to it
study=${here#"$PWD"/}                   # studies/smollm2-effir, as the recipes' headers name it
mkdir -p runs/study/logs
variants=("$@")
[ ${#variants[@]} -eq 0 ] && variants=(ref mlp25 mlp50 attn25 attn50 width-oneshot width-learned width-learned-taylor width-learned-penalty01 ft-mlp50 ft-width-oneshot mlp50-long baselines)
log() { echo "$(date -u +%FT%TZ) $*" >> runs/study/logs/progress.txt; }
for v in "${variants[@]}"; do
  if [ -f "$study/results/$v/eval/results.json" ] && [ "${FORCE:-0}" != 1 ]; then
    log "skip $v (kept in $study/results/$v; FORCE=1 reruns it)"
    continue
  fi
  recipe=${v%@*}
  repeat=()
  [[ $v == *@* ]] && repeat=(--set "finetune.seed=${v#*@}" --set "run_dir=runs/study/$v")
  if [[ $v == ft-* ]] && [ ! -f runs/study/ref/finetuned/config.json ]; then
    # the second protocol starts from the fine-tuned reference's weights, which only the run folder holds
    log "start ref weights for $v"
    effir-surgery run "$study/recipes/ref.yaml" --skip evaluate > runs/study/logs/ref-weights.out 2>&1
  fi
  log "start $v"
  /usr/bin/time -v effir-surgery run "$study/recipes/$recipe.yaml" "${repeat[@]}" > "runs/study/logs/$v.out" 2> "runs/study/logs/$v.err"
  status=$?
  log "end $v (exit $status)"
  [ $status -eq 0 ] && python "$study/scripts/study_archive.py" "$v" >> runs/study/logs/progress.txt
done
if [ $# -eq 0 ]; then
  python "$study/scripts/study_speed.py" && python "$study/scripts/study_report.py"
fi
