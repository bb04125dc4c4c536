"""Console output and progress bars shared by every stage; imports nothing from the package."""

from __future__ import annotations

import datetime
import logging
import os
import sys
import time

from rich.console import Console

# Status goes to stderr so that stdout carries only results (tables, JSON) a caller may want to pipe.
console = Console(stderr=True, highlight=False, soft_wrap=True)  # no wrapping at 80 columns in pipes and logs
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


def info_line(message: str) -> None:
    """Like ``info``, but never wrapped (a log line stays one line for grep and tail) and without rich markup."""
    console.print(message, soft_wrap=True, markup=False)


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
