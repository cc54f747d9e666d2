"""Keep freed memory in the process: large tensors are allocated and freed at every step.

glibc serves allocations above its mmap threshold (adaptive, at most 32 MiB on 64-bit) with
fresh ``mmap`` pages and returns them on free, so every large tensor of a training update
pays a page fault per 4 KiB page when first written (issue 15 measured an ensemble of 100
networks 1.2-1.35x faster with glibc keeping its memory). `keep_freed_memory` raises the mmap
threshold to its maximum and the trim threshold above it, so that freed blocks stay in the
heap for the next update; `chunk_members` keeps the per-step tensors of an ensemble below
that size (and, smaller still, in cache). Without glibc (macOS, Windows, musl) only the
chunking applies.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

#: glibc's mallopt parameters and the largest mmap threshold it accepts on 64-bit
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
#: largest number of values in one ``(time, member, trial, unit)`` tensor of an update:
#: 4 MiB in float32, so that a chunk's working set stays in cache (measured: E=256
#: networks of N=32 updated 1.5x faster in chunks of 2^20 values than of 2^22, 1.7x faster
#: than in one piece)
CHUNK_VALUES = 1 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse; whether it could (once per process)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and \
        bool(mallopt(M_TRIM_THRESHOLD, 4 * MMAP_THRESHOLD_MAX))


def chunk_members(indices: list, values_per_member: int) -> list[list]:
    """``indices`` split into runs of members whose ``(time, member, trial, unit)``
    tensors hold at most `CHUNK_VALUES` values (at least one member per run)."""
    size = max(1, CHUNK_VALUES // max(1, values_per_member))
    return [indices[i:i + size] for i in range(0, len(indices), size)]
