"""Process-wide settings that make the same code run well on the machine it finds itself on."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory() -> bool:
    """On Linux/glibc, keep freed activation buffers in the process instead of handing them back to the
    OS after every step. Otherwise each step's activations (hundreds of MB for AlexNet at batch 128) are
    mapped afresh and page-faulted in, which on a CPU costs about a quarter of the training step.
    Returns whether the setting took effect; elsewhere it does nothing."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt"):
        return False
    # Buffers up to 1 GiB come from the heap, and the heap is never trimmed (-1 turns trimming off).
    settings = ((_M_MMAP_THRESHOLD, 1 << 30), (_M_TRIM_THRESHOLD, -1), (_M_TOP_PAD, 64 << 20))
    return all(libc.mallopt(param, value) == 1 for param, value in settings)
