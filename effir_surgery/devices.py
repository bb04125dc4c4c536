"""Devices and dtypes: refuse a device this machine lacks, pick the device ``auto`` means, and map dtype names to
torch dtypes. torch is imported inside the functions, and not at all for ``auto`` and ``cpu``.
"""

from __future__ import annotations

from .errors import EffirError


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def require_device(device: str) -> None:
    """Refuse a device this machine lacks, in one line; commands call it first, before anything is written or
    loaded. ``auto`` and ``cpu`` always exist and are passed without importing torch (bad arguments must answer
    at once); the spelling itself is checked by the configs (``validation.check_device``).

    Raises:
        EffirError: ``cuda`` / ``cuda:N`` without such a CUDA GPU, or ``mps`` without Apple's Metal backend.
    """
    kind, _, index = device.partition(":")
    if kind not in ("cuda", "mps"):
        return
    import torch

    if kind == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA support" if torch.version.cuda is None else "torch sees no CUDA GPU"
            raise EffirError(
                f"Device '{device}' is not available: {why} (torch {torch.__version__}); use cpu or auto."
            )
        count = torch.cuda.device_count()
        if index and int(index) >= count:
            raise EffirError(
                f"Device '{device}' does not exist: torch sees {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}."
            )
    if kind == "mps" and not torch.backends.mps.is_available():
        raise EffirError(
            f"Device '{device}' is not available: this machine has no Apple Metal (MPS) backend; use cpu."
        )


def resolve_device(device: str) -> str:
    """The torch device ``device`` names on this machine (``auto``: the first CUDA GPU when there is one, else the
    CPU), after ``require_device``."""
    require_device(device)
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
