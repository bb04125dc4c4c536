"""The model a fine-tuning run trains: the input folder loaded as a sentence-transformers model in the working
dtype, with what the run trains (learned-width gates, LoRA adapters) inserted.
"""

from __future__ import annotations

from ..config import FinetuneConfig
from ..devices import torch_dtype
from ..encode import sentence_transformer
from ..ops.gate_mlp import insert_gates


def _load_for_training(config: FinetuneConfig, folder: str):
    """The input folder as a sentence-transformers model (the one encoder definition), in the working dtype."""
    return sentence_transformer(
        folder,
        config.encoder(),
        dtype=torch_dtype(config.dtype),
        device=None if config.device == "auto" else config.device,
    )


def _add_trainables(model, config: FinetuneConfig, spec) -> list:
    """Insert what the run trains into ``model`` (in place): learned-width gates and/or LoRA adapters (seeded, so
    their initial values do not depend on what ran before in the process). Returns the gates."""
    auto = model[0].auto_model
    gates = insert_gates(auto, spec) if config.learn_width else []
    if config.lora:
        from peft import LoraConfig, get_peft_model
        from transformers import set_seed

        set_seed(config.seed)
        lora = LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(spec.lora_targets),
            task_type="FEATURE_EXTRACTION",
        )
        model[0].model = get_peft_model(auto, lora)
        for gate in gates:
            gate.neuron_gate.requires_grad_(True)
    return gates
