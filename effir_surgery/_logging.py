"""Console output and progress bars shared by every stage; imports nothing from the package."""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys
import time

from rich.console import Console

# Status goes to stderr so that stdout carries only results (tables, JSON) a caller may want to pipe.
console = Console(stderr=True, highlight=False, soft_wrap=True)  # no wrapping at 80 columns in pipes and logs


class _ConsoleHandler(logging.Handler):
    """Prints the package's log records as status lines on the shared console (stderr). A record may carry
    ``markup=False`` (``info_line``: printed as is, never wrapped)."""

    def emit(self, record: logging.LogRecord) -> None:
        console.print(record.getMessage(), markup=getattr(record, "markup", True), soft_wrap=True)


# Status lines are records of this logger, so the usual logging controls apply: the CLI's --quiet sets it to
# WARNING and --verbose to DEBUG; a program embedding the package can raise its level or replace the handler.
logger = logging.getLogger("effir_surgery")
logger.addHandler(_ConsoleHandler())
logger.setLevel(logging.INFO)
logger.propagate = False

# Progress switches of the libraries whose bars a command shows (huggingface_hub downloads, datasets, and every
# tqdm bar: transformers' weight loading, sentence-transformers, mteb). They are read when the libraries are
# imported, which the commands do after their argument checks, and by every child process.
_LIBRARY_NO_PROGRESS = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
}
_LIBRARY_LOGGERS = ("transformers", "sentence_transformers", "mteb", "huggingface_hub", "peft", "accelerate")


def progress_enabled() -> bool:
    """Progress bars are on for interactive runs and can be forced off with EFFIR_SURGERY_NO_PROGRESS=1, which
    silences the libraries' bars too (in a command: see ``verbosity``)."""
    return os.environ.get("EFFIR_SURGERY_NO_PROGRESS", "") not in ("1", "true") and sys.stderr.isatty()


@contextlib.contextmanager
def verbosity(quiet: bool = False, verbose: bool = False):
    """What a command prints while it runs. Default: status lines; progress bars (ours and the libraries') only on
    a terminal and unless EFFIR_SURGERY_NO_PROGRESS=1. ``quiet``: warnings and errors only, no bars; the results a
    command prints on stdout are unaffected. ``verbose``: also debug lines and the libraries' info logs. Everything
    changed is restored on exit."""
    previous_level = logger.level
    saved_env = {name: os.environ.get(name) for name in (*_LIBRARY_NO_PROGRESS, "EFFIR_SURGERY_NO_PROGRESS")}
    library_levels = {name: logging.getLogger(name).level for name in _LIBRARY_LOGGERS}
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    if quiet:
        os.environ["EFFIR_SURGERY_NO_PROGRESS"] = "1"
    if not progress_enabled():
        os.environ.update(_LIBRARY_NO_PROGRESS)
    if verbose:
        for name in _LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.setLevel(previous_level)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for name, level in library_levels.items():
            logging.getLogger(name).setLevel(level)


def progress(iterable, *, total: int | None = None, desc: str = ""):
    """Wrap ``iterable`` in a tqdm bar on stderr when progress is enabled."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, disable=not progress_enabled(), leave=False, file=sys.stderr)


def info(message: str) -> None:
    """A status line (rich markup allowed) on stderr; silenced by --quiet."""
    logger.info(message)


def warning(message: str) -> None:
    """A warning line (rich markup allowed) on stderr, prefixed ``warning:``; shown even with --quiet."""
    logger.warning(f"[yellow]warning[/]: {message}")


def info_line(message: str) -> None:
    """Like ``info``, but never wrapped (a log line stays one line for grep and tail) and without rich markup."""
    logger.info(message, extra={"markup": False})


# Estimates and ETAs of long jobs. The speeds always come from a measurement on the running device (callers time
# their first steps or batches); these helpers only turn counts, speeds and seconds into text.


def format_duration(seconds: float) -> str:
    """A duration for people: ``45 s`` below 90 s, ``4.2 min`` below 10 min, ``38 min`` below 90 min, then
    ``2 h 05 min``. Negative durations read as ``0 s``."""
    seconds = max(0.0, seconds)
    if seconds < 89.5:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    if minutes < 9.95:
        return f"{minutes:.1f} min"
    if minutes < 89.5:
        return f"{minutes:.0f} min"
    hours, minutes = divmod(round(minutes), 60)
    return f"{hours} h {minutes:02d} min"


def format_clock(seconds_from_now: float, now: datetime.datetime | None = None) -> str:
    """The local wall-clock time ``seconds_from_now`` after ``now`` (default: the current time): ``14:05`` on the
    same day, ``Tue 09:14`` within a week, else ``2026-03-01 09:14``."""
    now = now or datetime.datetime.now()
    at = now + datetime.timedelta(seconds=max(0.0, seconds_from_now))
    if at.date() == now.date():
        return at.strftime("%H:%M")
    if (at.date() - now.date()).days < 7:
        return at.strftime("%a %H:%M")
    return at.strftime("%Y-%m-%d %H:%M")


def format_rate(value: float) -> str:
    """A measured speed with the digits that mean something: ``1,730``, ``12``, ``2.1``, ``0.35``, ``0.012``."""
    if value >= 10:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.1f}"
    return f"{value:.2g}"


def estimate_line(
    what: str, rate: str, where: str, total_seconds: float, left_seconds: float, now: datetime.datetime | None = None
) -> str:
    """The one line announcing a long job: ``938 steps; about 2.1 s/step on cpu: estimated total 33 min (ETA
    14:21)``. ``what`` is the work (count and unit), ``rate`` the measured speed with its unit, ``where`` the device,
    ``total_seconds`` the whole job's expected duration and ``left_seconds`` the part still to run (the ETA)."""
    return (
        f"{what}; about {rate} on {where}: estimated total {format_duration(total_seconds)} "
        f"(ETA {format_clock(left_seconds, now)})"
    )


def progress_line(done: str, left_seconds: float, now: datetime.datetime | None = None) -> str:
    """A progress line for logs: ``step 120/938, loss 0.8123, ETA 14:05 (29 min left)``; ``done`` says how far."""
    return f"{done}, ETA {format_clock(left_seconds, now)} ({format_duration(left_seconds)} left)"


class Every:
    """A throttle for progress lines: ``due()`` is true at most once per ``seconds``, counted from creation and
    then from the last time it was true, so a log gets at most one line per interval however fast the work runs.
    ``clock`` (seconds, monotonic) is injectable for tests."""

    def __init__(self, seconds: float, clock=time.monotonic):
        self.seconds = seconds
        self.clock = clock
        self.last = clock()

    def due(self) -> bool:
        now = self.clock()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True
