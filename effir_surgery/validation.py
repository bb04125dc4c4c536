"""Checks of single values the user types (parameter counts, Hub repo ids, device names), shared by the configs,
the CLI and the Hub code, and the one-line wording of a config that fails validation. No torch import here.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import ValidationError

from .errors import EffirError

if TYPE_CHECKING:
    from .config import StrictConfig


def parse_count(value) -> int | None:
    """Parse a parameter count such as ``90000000``, ``"90M"``, ``"1.5B"`` or ``"500k"``."""
    if value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMbBgG]?)\s*", str(value))
    if not match:
        raise ValueError(f"'{value}' is not a parameter count; write e.g. 90000000, 90M or 1.5B")
    scale = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}[match.group(2).lower()]
    return int(float(match.group(1)) * scale)


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def check_repo_id(value: str | None) -> str | None:
    """Accept a Hub model repo id ``owner/name`` under the Hub's naming rules (letters, digits, ``-``, ``_``,
    ``.``; no ``--`` or ``..``; name at most 96 characters), so a typo fails before any work is done."""
    if value is None:
        return value
    name = value.split("/")[-1]
    if not _REPO_ID.match(value) or "--" in value or ".." in value or len(name) > 96 or name.endswith(".git"):
        raise ValueError(
            f"'{value}' is not a Hub repo id; write it as owner/name using letters, digits, '-', '_' and '.'."
        )
    return value


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:[0-9]+)?)$")


def check_device(value: str) -> str:
    """Accept a device name: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``. Whether this machine has that
    device is checked when a command starts (``devices.require_device``), since that needs torch."""
    if not _DEVICE.match(value):
        raise ValueError(f"'{value}' is not a device; use auto, cpu, cuda, cuda:N (N = 0, 1 ...) or mps.")
    return value


def validated(cls: type[StrictConfig], *, as_flags: bool = True, **values) -> StrictConfig:
    """Build ``cls`` and turn a pydantic ``ValidationError`` into a one-line ``EffirError`` that names the CLI
    flag (``as_flags``) or the dotted field path."""
    try:
        return cls(**values)
    except ValidationError as exc:
        raise EffirError(format_validation_error(exc, as_flags)) from None


def format_validation_error(exc: ValidationError, as_flags: bool = False) -> str:
    parts = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"])
        if as_flags and loc:
            loc = "--" + loc.replace("_", "-")
        msg = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            msg = "unknown setting (check the spelling)"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
