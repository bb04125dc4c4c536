"""Memory facts of this machine and this process, from the standard library and ``/proc`` (no psutil).

Used to choose between in-memory and streaming surgery and to report peak memory at the end of ``prune``.
"""

from __future__ import annotations

import functools
import os
import resource
import sys
from pathlib import Path


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom() -> int | None:
    """Bytes left under a cgroup v2 memory limit (containers), or None when there is no limit."""
    root = Path("/sys/fs/cgroup")
    try:
        limit = (root / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((root / "memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def available_memory() -> int:
    """Bytes of RAM a new allocation can use without swapping: ``MemAvailable`` (free memory plus reclaimable
    cache), capped by a cgroup limit when one applies; ``sysconf`` free pages where ``/proc`` is missing."""
    candidates = [v for v in (_meminfo_available(), _cgroup_headroom()) if v is not None]
    if not candidates:
        try:
            candidates = [os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")]
        except (ValueError, OSError, AttributeError):
            return 0
    return min(candidates)


def _maxrss_bytes(who: int) -> int:
    value = resource.getrusage(who).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024  # Linux reports kilobytes, macOS bytes


def process_peak_rss() -> int:
    """Peak resident set size of this process's own address space, in bytes.

    Linux keeps ``ru_maxrss`` across ``execve``, so a fresh Python process started from a large parent (the
    efficiency measurement's clean process, spawned by an evaluation holding several GB) would report the parent's
    high-water mark, whatever the child used. ``VmHWM`` in ``/proc/self/status`` belongs to the address space the
    ``execve`` created, so it is the child's own peak; ``ru_maxrss`` remains the fallback where ``/proc`` is absent.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return _maxrss_bytes(resource.RUSAGE_SELF)


def peak_memory() -> dict[str, int]:
    """Peak resident set size so far: ``process`` (this process) and ``children`` (the largest finished child
    process, e.g. the clean-process reload check), in bytes."""
    return {"process": _maxrss_bytes(resource.RUSAGE_SELF), "children": _maxrss_bytes(resource.RUSAGE_CHILDREN)}


def format_bytes(n: float) -> str:
    """``1.5 GB`` style (decimal units, as file sizes on the Hub are shown)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


@functools.lru_cache(maxsize=1)
def _glibc():
    """glibc, opened by its soname (``ctypes.util.find_library`` would fork ``ldconfig``); None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None  # musl and other C libraries have no malloc_trim


def return_freed_memory() -> None:
    """Hand memory freed by Python and torch back to the operating system (glibc ``malloc_trim``; a no-op
    elsewhere). Loading and freeing one large layer after another otherwise leaves the C heap fragmented, and the
    resident size creeps up by tens of MB per layer."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
