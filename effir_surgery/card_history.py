"""The model card's "How it was made" section: the commands that produced the folder, oldest first, the
fine-tuning summary, and for a folder made by ``effir-surgery run`` the recipe rebuilt from the stage settings
stored in ``provenance.json`` and ``finetune.json``.
"""

from __future__ import annotations

import shlex

import yaml


def _provenance_chain(provenance: dict) -> list[dict]:
    """Every step that produced the folder, oldest first (a fine-tuned folder nests its input's provenance)."""
    chain, step = [], provenance
    while step:
        chain.append(step)
        step = step.get("parent")
    return chain[::-1]


def history_section(provenance: dict, training: dict | None, name: str) -> list[str]:
    chain = _provenance_chain(provenance)
    if not any(step.get("command") for step in chain):
        return []
    lines = ["## How it was made", ""]
    recipe = _recipe(chain, training, name) if _is_recipe_run(provenance.get("command")) else None
    if len({step.get("command") for step in chain}) == 1 and (len(chain) > 1 or recipe):
        # one recipe run (`effir-surgery run`) did every step: show its command once
        steps = ", then ".join("fine-tuned" if "parent" in step else "pruned" for step in chain)
        lines += [
            f"{steps.capitalize()} by one recipe run of effir-surgery {provenance.get('tool_version', '?')}:",
            "",
            "```bash",
            provenance["command"],
            "```",
            "",
        ]
        lines += [_training_summary(training), ""] if training is not None else []
        return lines + _recipe_block(recipe)
    for number, step in enumerate(chain, 1):
        what = "Fine-tuned" if "parent" in step else "Pruned"
        lines.append(f"{number}. {what} with effir-surgery {step.get('tool_version', '?')}:")
        lines += ["", "   ```bash", f"   {step.get('command') or '(command not recorded)'}", "   ```", ""]
        if step is provenance and training is not None:
            lines += [f"   {_training_summary(training)}", ""]
    return lines + _recipe_block(recipe)


def _is_recipe_run(command: str | None) -> bool:
    """Whether ``command`` is ``effir-surgery run RECIPE ...`` (its settings are in the recipe, not the command)."""
    try:
        words = shlex.split(command or "")
    except ValueError:
        return False
    return len(words) > 2 and words[1] == "run"


def _stage_settings(cls, config: dict) -> dict:
    """The fields of the recipe stage ``cls`` in a stored command config, in the stage's field order; unset
    optional fields (``None`` whose default is ``None``) are left out, every other value is written explicitly so
    that later changes of the toolkit's defaults do not change what the recipe does."""
    settings = {}
    for key, field in cls.model_fields.items():
        if key in config and not (config[key] is None and field.default is None):
            settings[key] = config[key]
    return settings


def _recipe(chain: list[dict], training: dict | None, name: str) -> dict | None:
    """A recipe that rebuilds a folder made by ``effir-surgery run``, from the settings stored in the folder: the
    prune stage's config (``provenance.json``) and the fine-tuning config (``finetune.json``). ``None`` when the
    folder holds neither (an older folder). The evaluation stage does not change the model and is left out."""
    from .config import FinetuneSettings, PruneSettings, RunConfig

    command = chain[-1].get("command")
    steps = [step for step in chain if step.get("command") == command]
    prune = next((step.get("config") for step in steps if "parent" not in step and step.get("config")), None)
    finetune = (training or {}).get("config") if "parent" in chain[-1] else None
    if not prune and not finetune:
        return None
    first = prune or finetune
    recipe = {"name": name, "model": first.get("model")}
    if prune and prune.get("revision"):
        recipe["revision"] = prune["revision"]
    recipe["dtype"] = first.get("dtype", RunConfig.model_fields["dtype"].default)
    recipe["run_dir"] = f"runs/{name}"
    if prune:
        recipe["prune"] = _stage_settings(PruneSettings, prune)
    if finetune:
        recipe["finetune"] = _stage_settings(FinetuneSettings, finetune)
    return recipe


def _recipe_block(recipe: dict | None) -> list[str]:
    if recipe is None:
        return []
    text = yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000)
    return [
        "The recipe, with every setting of its prune and fine-tuning stages as stored in this model's "
        "`provenance.json` and `finetune.json` (save it as `recipe.yaml`, adjust the paths, and run "
        "`effir-surgery run recipe.yaml`; add an `evaluate:` stage to score the result):",
        "",
        "```yaml",
        text.rstrip("\n"),
        "```",
        "",
    ]


def _training_summary(training: dict) -> str:
    config = training.get("config") or {}
    method = (
        f"LoRA r={config.get('lora_r')}, alpha={config.get('lora_alpha')} (merged)"
        if config.get("lora", True)
        else "full fine-tuning"
    )
    steps, rows = (f"{n:,}" if isinstance(n, int) else "?" for n in (training.get("steps"), training.get("examples")))
    text = (
        f"Contrastive InfoNCE with in-batch and {config.get('hard_negatives', '?')} hard negative(s) per query: "
        f"{steps} steps over {rows} training rows"
    )
    if training.get("data"):
        text += f" from {training['data']}"
    text += f"; batch {config.get('batch_size', '?')}, learning rate {config.get('learning_rate', '?')}, {method}"
    if training.get("train_loss") is not None:
        text += f"; mean training loss {training['train_loss']:.4f}"
    return text + "."
