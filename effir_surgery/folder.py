"""The saved folder's contract: the names of the files a saved model carries and what its remote code must be.

Every module that writes, checks, renders or publishes a saved folder takes these names from here. This module
imports nothing heavy: ``expected_auto_map`` reads the sealed ``hf/`` classes only when called.
"""

from __future__ import annotations

from pathlib import Path

# The sealed remote code shipped in ``effir_surgery/hf`` and copied verbatim into every folder with an effir config.
HF_DIR = Path(__file__).with_name("hf")
REMOTE_CODE_FILES = ("configuration_effir.py", "modeling_effir.py")
# sentence-transformers loads a module whose type starts with this from its own package; any other type is code
# shipped with the folder (or fetched by name), which runs only with trust_remote_code.
ST_MODULE_PREFIX = "sentence_transformers."


def is_effir_data(data: dict) -> bool:
    """Whether a ``config.json`` (as a dict) describes an effir checkpoint, which needs the folder's remote code:
    format 2 marks it with ``effir_format_version`` under the stock ``model_type``, format 1 used ``effir_<type>``."""
    return "effir_format_version" in data or str(data.get("model_type", "")).startswith("effir_")


def expected_auto_map(model_type: str) -> dict[str, str] | None:
    """The ``auto_map`` a folder of an effir checkpoint of ``model_type`` (stock, or format 1's ``effir_<type>``)
    must carry: every auto class points at the local remote-code files. ``None`` when this toolkit version has no
    effir classes for that family."""
    from .hf.configuration_effir import EFFIR_CONFIGS
    from .hf.modeling_effir import EFFIR_MODELS

    base_type = model_type.removeprefix("effir_")
    config_cls = EFFIR_CONFIGS.get(base_type)
    if config_cls is None:
        return None
    base_cls, causal_cls = EFFIR_MODELS[base_type]
    return {
        "AutoConfig": f"configuration_effir.{config_cls.__name__}",
        "AutoModel": f"modeling_effir.{base_cls.__name__}",
        "AutoModelForCausalLM": f"modeling_effir.{causal_cls.__name__}",
    }
