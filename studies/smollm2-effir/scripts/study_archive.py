"""Keep a finished study run's results in the repository: copy its small result files to ``results/VARIANT/``.

The run folders under the repo root's ``runs/study/`` hold weights (hundreds of MB each), are not committed, and do
not outlive a session; one study variant costs about half an hour on the 2-core CPU used here, so the study is
collected over several sessions. This script keeps, per variant, in the study's ``results/`` folder, what
``study_report.py`` reads:

- ``run.json``: the recipe's stage hashes and wall times;
- ``eval/results.json`` and ``eval/results.md``: the variant's own mteb scores;
- ``finetuned/`` (or ``final/`` for a recipe without a fine-tuning stage): ``surgery_plan.json``, ``config.json``
  and ``finetune.json`` (what was removed, the widths, the training settings and loss curve);
- ``time.txt``: the ``/usr/bin/time -v`` summary of the whole recipe (wall time, peak memory), when the log exists.

    python studies/smollm2-effir/scripts/study_archive.py VARIANT [VARIANT ...] [--runs runs/study]
        [--to studies/smollm2-effir/results]

The defaults are found from this file, not the working directory: the repo root's ``runs/study`` and the study's
``results``.

A variant is archived only when its recipe finished: ``eval/results.json`` must exist and be newer than every
stage output it scores, so an interrupted run is never recorded.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

STUDY = Path(__file__).resolve().parents[1]  # the study's folder, studies/smollm2-effir
REPO = STUDY.parents[1]
RECIPES = (STUDY / "recipes").relative_to(REPO).as_posix()  # named from the repo root in messages
MODEL_FILES = ("surgery_plan.json", "config.json", "finetune.json")
TIME_KEYS = ("Elapsed (wall clock) time", "Maximum resident set size", "Exit status")


def archive(variant: str, runs: Path, to: Path) -> Path:
    """Copy ``runs/VARIANT``'s result files to ``to/VARIANT`` (replacing an older copy); return that folder."""
    src = runs / variant
    results = src / "eval" / "results.json"
    if not results.is_file():
        raise SystemExit(f"{results} is missing: '{variant}' has not finished (run {RECIPES}/{variant}.yaml).")
    models = [Path(m["path"]) for m in json.loads(results.read_text())["models"] if m.get("path")]
    stale = [m for m in models if m.is_dir() and m.stat().st_mtime > results.stat().st_mtime]
    if stale:
        raise SystemExit(f"{results} is older than {stale[0]}: rerun {RECIPES}/{variant}.yaml to finish it.")
    dest = to / variant
    tmp = to / f".{variant}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "eval").mkdir(parents=True)
    for name in ("results.json", "results.md"):
        if (src / "eval" / name).is_file():
            shutil.copy2(src / "eval" / name, tmp / "eval" / name)
    if (src / "run.json").is_file():
        shutil.copy2(src / "run.json", tmp / "run.json")
    model = next((src / d for d in ("finetuned", "pruned") if (src / d / "config.json").is_file()), None)
    if model is not None:
        (tmp / model.name).mkdir()
        for name in MODEL_FILES:
            if (model / name).is_file():
                shutil.copy2(model / name, tmp / model.name / name)
    log = runs / "logs" / f"{variant}.err"
    if log.is_file():
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
        kept = [line for line in lines if line.startswith(TIME_KEYS)]
        if kept:
            (tmp / "time.txt").write_text("\n".join(kept) + "\n")
    if dest.exists():
        shutil.rmtree(dest)
    tmp.rename(dest)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="+")
    parser.add_argument("--runs", default=str(REPO / "runs" / "study"))
    parser.add_argument("--to", default=str(STUDY / "results"))
    args = parser.parse_args()
    for variant in args.variants:
        print(f"archived {variant} -> {archive(variant, Path(args.runs), Path(args.to))}")


if __name__ == "__main__":
    main()
