"""Fewer malloc arenas for the long-running processes.

glibc gives each thread that allocates under contention an arena of its own (up to 8 per core);
memory freed in one arena serves only that arena, so a threaded server's resident size creeps up
as each arena's free pieces fragment, though its Python objects do not grow. The soak measured it
(docs/reliability.md): two API processes beside each other under the same requests, the one with
two arenas stayed flat to the kilobyte while the one with glibc's default grew. Python's own
allocator serves the small objects either way; what the cap may cost in speed under heavy
multi-threaded allocation has not been measured.

``limit_arenas()`` sets ``M_ARENA_MAX`` with ``mallopt`` before the process starts its threads,
unless ``MALLOC_ARENA_MAX`` is set in the environment (then glibc has already applied it).
Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_ARENA_MAX = -8  # <malloc.h>
DEFAULT_ARENAS = 2


def limit_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc's malloc arenas; True if it was done here."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))
