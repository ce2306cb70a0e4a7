"""Giving memory back to the system in a long-running server (glibc only; elsewhere these do nothing).

A replica decodes every new plan (tens of MB of numpy arrays) and drops the one before it, many times a
day. glibc raises its mmap threshold each time it frees a large mmapped block (up to 32 MiB), so after
the first swap the next plans' arrays come from the heap arenas of the threads that decoded them, and
freeing them leaves the arenas fragmented: resident memory creeps up with every re-plan. Fixing the
threshold keeps large arrays in mmapped blocks, which go back to the system when freed, and `trim`
releases what the arenas hold free after a plan is dropped.

A plan is dropped when its last reference goes (the planner's cache and the serving engine's both hold
it), so `trim_when_freed` marks a trim as due at that moment, and the server's background monitor runs
`trim_if_due` about once a second: the trim happens once per dropped plan, never on a request's thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import weakref
from functools import cache
from typing import Any

logger = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)
MMAP_THRESHOLD_BYTES = 256 * 1024  # blocks at least this large are mmapped, and unmapped when freed


@cache
def _libc() -> Any | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt, libc.malloc_trim  # noqa: B018  (glibc's, absent from musl and macOS)
    except (OSError, AttributeError):
        return None
    return libc


def fix_mmap_threshold(size: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Stop glibc raising the mmap threshold as large blocks are freed. True when it took effect."""
    libc = _libc()
    if libc is None:
        return False
    done = bool(libc.mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(size)))
    if not done:
        logger.warning("mallopt(M_MMAP_THRESHOLD, %d) was refused", size)
    return done


def trim() -> bool:
    """Return the free memory at the top of every heap arena to the system. True if any was returned."""
    libc = _libc()
    return bool(libc.malloc_trim(ctypes.c_size_t(0))) if libc is not None else False


_due = threading.Event()


def trim_when_freed(obj: object) -> None:
    """Mark a trim as due once `obj` is garbage (a decoded plan: its arrays are then free)."""
    weakref.finalize(obj, _due.set)


def trim_if_due() -> bool:
    """Trim if something marked by trim_when_freed was freed since the last call. True if it trimmed."""
    if not _due.is_set():
        return False
    _due.clear()
    trim()
    return True
