"""CPU accounting during a benchmark: how busy the machine was, and how much of it was us.

On a shared 2-core machine another job's CPU use changes every figure; each result carries
``cpu``: the machine's busy cores on average, the share of our own processes by role, and the rest
("other": processes that are not part of this benchmark), so a disturbed figure can be recognized.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psutil


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


class CpuMeter:
    def __init__(self, roles: dict[str, int], database: str | None = None) -> None:
        self.roles = roles
        self.database = database
        self._start: dict[tuple[int, float], tuple[str, float]] = {}

    def _snapshot(self) -> dict[tuple[int, float], tuple[str, float]]:
        found: dict[tuple[int, float], tuple[str, float]] = {}
        # this process and its helpers (wrk); the roles' trees below take their own processes back
        for proc in _tree(os.getpid()):
            try:
                times = proc.cpu_times()
                found[(proc.pid, proc.create_time())] = ("bench", times.user + times.system)
            except psutil.Error:
                pass
        for role, pid in self.roles.items():
            for proc in _tree(pid):
                try:
                    times = proc.cpu_times()
                    found[(proc.pid, proc.create_time())] = (role, times.user + times.system)
                except psutil.Error:
                    pass
        for proc in psutil.process_iter(["name", "cmdline", "create_time", "cpu_times"]):
            try:
                name, cmd = proc.info["name"] or "", " ".join(proc.info["cmdline"] or [])
                times = proc.info["cpu_times"]
            except psutil.Error:
                continue
            if times is None:
                continue
            role = None
            if name.startswith("postgres") and self.database and self.database in cmd:
                role = "postgres"
            elif name.startswith("redis-server"):
                role = "redis"
            if role:
                found[(proc.pid, proc.info["create_time"])] = (role, times.user + times.system)
        return found

    def start(self) -> CpuMeter:
        self._t0 = time.monotonic()
        self._sys0 = psutil.cpu_times()
        self._start = self._snapshot()
        return self

    def stop(self) -> dict[str, Any]:
        wall = time.monotonic() - self._t0
        sys1 = psutil.cpu_times()
        end = self._snapshot()
        busy = (sum(sys1) - sys1.idle - getattr(sys1, "iowait", 0)) - \
            (sum(self._sys0) - self._sys0.idle - getattr(self._sys0, "iowait", 0))
        ours: dict[str, float] = {}
        for key, (role, cpu) in end.items():
            before = self._start.get(key, (role, 0.0))[1]
            ours[role] = ours.get(role, 0.0) + max(0.0, cpu - before)
        wall = max(wall, 1e-6)
        mine = sum(ours.values())
        return {
            "wall_s": round(wall, 2),
            "machine_busy_cores": round(busy / wall, 2),
            "cores_by_role": {k: round(v / wall, 2) for k, v in sorted(ours.items())},
            "other_cores": round(max(0.0, busy - mine) / wall, 2),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
