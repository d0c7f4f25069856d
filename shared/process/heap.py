"""Process-wide allocator setting for per-frame pipelines (sender and receiver alike)."""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3


def reuse_heap_memory(limit_bytes: int = 256 << 20) -> bool:
    """Ask glibc to keep freed frame-sized buffers for reuse instead of returning them to the OS.

    Every stage allocates full-frame arrays; by default glibc serves each from a fresh mmap, and
    touching those new pages costs more than the arithmetic on them (sender: the learned matte went
    from ~25 to ~11 ms/frame at 640x480; receiver: compose 9.6 -> 4.5 ms, see bench/receiver_speed.py).
    Process-wide, so entry points call it once; returns False where it does not apply (not glibc).
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, limit_bytes) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, 2 * limit_bytes) == 1
    ok &= mallopt(_M_TOP_PAD, 64 << 20) == 1
    return bool(ok)
