"""Giving freed memory back to the operating system after a large batch.

A load holds its record (up to MESSAGE_MAX_BYTES), its parsed body and its rows; once the
batch is answered they are freed, but glibc's allocator keeps most of the pages in the
process (many small objects, spread over its heap), so the worker's RSS stays at its peak
and the next large command starts from there. `malloc_trim(0)` hands the free pages back.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from collections.abc import Callable

# A batch whose values add up to this many bytes is followed by a trim.
LARGE_BATCH_BYTES = 1024 * 1024


def _malloc_trim() -> Callable[[int], int] | None:
    with contextlib.suppress(OSError, AttributeError):
        name = ctypes.util.find_library("c")
        if name is not None:
            trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
            return trim
    return None  # not glibc (musl, macOS): nothing to do


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    if _TRIM is not None:
        _TRIM(0)
