"""Measure the encoding throughput of every study model in one sitting: the study's ``results/speed.{json,md}``.

Throughput depends on a model's architecture (which sublayers are left, how wide each MLP is), not on its weight
values: the study's compressed models are dense fp32 networks, so the same shapes cost the same time whatever was
learned. The fine-tuned weights live in run folders that do not outlive a session, while the study is collected
over several sessions (``study_archive.py``). So this script rebuilds each kept variant's architecture from
its archived ``config.json`` (``results/VARIANT/finetuned/config.json``): it loads SmolLM2-135M, removes the
same sublayers and narrows the same MLPs to the same widths (keeping the first neurons: which ones does not change
the cost), saves the folder, and times every folder, the unpruned model and all-MiniLM-L6-v2 on the same SciFact
documents, each in a fresh process, one after another. Parameters and FLOPs/token come from the same folders.

    python studies/smollm2-effir/scripts/study_speed.py [--study studies/smollm2-effir/results]
        [--data ../shared/data/scifact] [--work runs/study/speed]

The defaults are found from this file, not the working directory: the study's ``results``, ``../shared/data``
beside the repo and the repo root's ``runs/study``. Run it on an otherwise idle machine: it reports measured speed.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from effir_surgery.arch import shape_from_config
from effir_surgery.beir import load_beir
from effir_surgery.eval_results import add_ratios
from effir_surgery.evaluate import speed_sample
from effir_surgery.load import load_config, load_model, resolve_source
from effir_surgery.plan import SurgeryPlan
from effir_surgery.retrievers import measure_in_fresh_process, resolve_retriever
from effir_surgery.save import invocation, save_model
from effir_surgery.surgery import apply_plan

STUDY = Path(__file__).resolve().parents[1]  # the study's folder, studies/smollm2-effir
REPO = STUDY.parents[1]
SOURCE = "smollm2-135m"
SETTINGS = {"texts": 128, "batch_size": 32, "dtype": "float32", "max_length": 128, "seed": 0}  # as the study's eval


def architecture_plan(config: dict, shape, variant: str) -> SurgeryPlan:
    """The plan that gives the source model the architecture described by a saved ``config.json``."""
    n = shape.num_layers
    widths = list(config.get("mlp_intermediate_sizes") or shape.mlp_widths)
    if len(widths) != n:
        raise SystemExit(f"{variant}: config.json has {len(widths)} MLP widths, the source has {n} layers")
    narrowed = {str(i): list(range(w)) for i, w in enumerate(widths) if 0 < w < shape.mlp_widths[i]}
    return SurgeryPlan(
        model=SOURCE,
        shape=shape,
        drop_mlp_layers=[i for i, w in enumerate(widths) if w == 0],
        drop_attention_layers=sorted(config.get("dropped_attention_layers") or []),
        mlp_widths=widths,
        kept_neurons=narrowed,
        selection={"mlp": f"architecture of the study variant '{variant}', for timing only (weights not trained)"},
    )


def build(variant: str, config: dict, work: Path) -> Path:
    """Save SmolLM2-135M with ``config``'s architecture to ``work/VARIANT`` (reused when already there)."""
    out = work / variant
    source = resolve_source(SOURCE)
    plan = architecture_plan(config, shape_from_config(load_config(source)), variant)
    stamp = out / "timing_plan.json"
    if stamp.is_file() and stamp.read_text() == plan.model_dump_json():
        return out
    loaded = load_model(source, "float32", "cpu")
    apply_plan(loaded.model, plan)
    save_model(loaded.model, loaded.tokenizer, out, plan=plan, overwrite=True, verify=False)
    stamp.write_text(plan.model_dump_json())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", default=str(STUDY / "results"))
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "scifact"))
    parser.add_argument("--work", default=str(REPO / "runs" / "study" / "speed"))
    args = parser.parse_args()
    study, work = Path(args.study), Path(args.work)
    # a seed repeat (VARIANT@SEED, run_study.sh) has its variant's architecture, so it is timed once
    variants = sorted(
        p.parent.parent.name for p in study.glob("*/finetuned/config.json") if "@" not in p.parent.parent.name
    )
    if not variants:
        raise SystemExit(f"{study} holds no archived variant (study_archive.py)")
    # the documents `effir-surgery evaluate` times (same sample); a bad --data folder fails here, before any model
    texts = speed_sample(load_beir(Path(args.data), "test").corpus, SETTINGS["texts"], SETTINGS["seed"])
    models = {SOURCE: resolve_retriever(SOURCE)}
    for variant in variants:
        config = json.loads((study / variant / "finetuned" / "config.json").read_text())
        models[variant] = resolve_retriever(str(build(variant, config, work)))
    models["all-MiniLM-L6-v2"] = resolve_retriever("all-MiniLM-L6-v2")
    entries = {}
    for name, spec in models.items():
        print(f"timing {name} ...", flush=True)
        entries[name] = measure_in_fresh_process(
            spec, texts, SETTINGS["batch_size"], SETTINGS["dtype"], "cpu", SETTINGS["max_length"]
        )
    add_ratios([{"efficiency": eff} for eff in entries.values()])  # against the first: the unpruned source
    ref = entries[SOURCE]
    result = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": invocation(),
        "reference": SOURCE,
        "settings": SETTINGS,
        "models": entries,
    }
    (study / "speed.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        f"Measured {result['created']} by `{result['command']}`: {len(texts)} SciFact documents, "
        f"batch {SETTINGS['batch_size']}, {SETTINGS['dtype']}, {ref['threads']} threads, fresh process per model.",
        "",
        "| model | params | FLOPs/token | tokens/s | speed-up | FLOP ratio | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, e in entries.items():
        lines.append(
            f"| {name} | {e['params_total'] / 1e6:.1f}M | {e['flops_per_token'] / 1e6:.1f}M | "
            f"{e['tokens_per_s']:,.0f} | {e['speedup']:.2f}x | {e['flop_ratio']:.2f}x | "
            f"{e['peak_memory_mb']:,.0f} MB |"
        )
    (study / "speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
