"""The process setting train.py makes on the CPU: freed activation buffers are kept for the next step."""

import ctypes.util
import sys

from alexnet.base.runtime import keep_freed_memory


def test_freed_memory_is_kept_wherever_glibc_takes_the_setting():
    glibc = sys.platform.startswith("linux") and ctypes.util.find_library("c") is not None
    assert keep_freed_memory() is glibc  # on this project's Linux machines: True, every mallopt call accepted
