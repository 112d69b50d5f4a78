"""hiem.memory: the malloc arena cap that keeps long-running processes' memory flat."""

from __future__ import annotations

import subprocess
import sys


def test_arena_cap_applies_on_glibc_and_defers_to_an_explicit_environment() -> None:
    script = "from hiem.memory import limit_malloc_arenas; print(limit_malloc_arenas())"
    applied = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                             env={"PATH": "/usr/bin:/bin"}).stdout.strip()
    assert applied == ("True" if sys.platform == "linux" else "False")
    deferred = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                              env={"PATH": "/usr/bin:/bin", "MALLOC_ARENA_MAX": "4"}).stdout.strip()
    assert deferred == "False", "an operator's MALLOC_ARENA_MAX wins"
