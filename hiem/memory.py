"""Keeping a long-running hiem process's memory flat.

glibc's malloc gives threads their own arenas (up to 8 per core). hiem's processes run dozens of threads
(sender threads, web threads, Celery threads) that each build and free lxml documents and 10-15 KB
signed messages; spread over many arenas, the freed memory fragments and the resident size keeps
creeping up with the number of messages sent instead of staying at the working set
(``docs/performance.md``, "Memory"). Two arenas per process keeps it flat at no measurable cost in
throughput: the threads mostly wait on the network or the GIL, not on malloc.

This is what ``MALLOC_ARENA_MAX=2`` in the environment does; doing it at start-up means operators do not
have to know about it. An explicit ``MALLOC_ARENA_MAX`` always wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

#: mallopt parameter number of M_ARENA_MAX in glibc's malloc.h
_M_ARENA_MAX = -8
DEFAULT_ARENAS = 2


def limit_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap glibc malloc's arenas for this process (call before starting threads); True when applied.

    A no-op where the C library is not glibc (musl, macOS) or when ``MALLOC_ARENA_MAX`` is set.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = mallopt(_M_ARENA_MAX, arenas) == 1
    if applied:
        log.debug("malloc arenas limited to %d", arenas)
    return applied
