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


def expected_auto_map(model_type: str) -> dict[str, str] | None:
    """The ``auto_map`` a folder of effir ``model_type`` must carry: every auto class points at the local
    remote-code files. ``None`` when this toolkit version has no such model_type."""
    from .hf.configuration_effir import EFFIR_CONFIGS
    from .hf.modeling_effir import EFFIR_MODELS

    for base_type, config_cls in EFFIR_CONFIGS.items():
        if config_cls.model_type == model_type:
            base_cls, causal_cls = EFFIR_MODELS[base_type]
            return {
                "AutoConfig": f"configuration_effir.{config_cls.__name__}",
                "AutoModel": f"modeling_effir.{base_cls.__name__}",
                "AutoModelForCausalLM": f"modeling_effir.{causal_cls.__name__}",
            }
    return None
