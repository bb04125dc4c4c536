"""Console output and progress bars shared by every stage; imports nothing from the package."""

from __future__ import annotations

import logging
import os
import sys

from rich.console import Console

# Status goes to stderr so that stdout carries only results (tables, JSON) a caller may want to pipe.
console = Console(stderr=True, highlight=False)
logger = logging.getLogger("effir_surgery")


def progress_enabled() -> bool:
    """Progress bars are on for interactive runs and can be forced off with EFFIR_SURGERY_NO_PROGRESS=1."""
    return os.environ.get("EFFIR_SURGERY_NO_PROGRESS", "") not in ("1", "true") and sys.stderr.isatty()


def progress(iterable, *, total: int | None = None, desc: str = ""):
    """Wrap ``iterable`` in a tqdm bar on stderr when progress is enabled."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not progress_enabled(), leave=False, file=sys.stderr)


def info(message: str) -> None:
    console.print(message)
