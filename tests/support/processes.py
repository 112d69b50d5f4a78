"""Starting and stopping real hiem processes (``hiem serve``, ``hiem worker``) for tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx

from hiem.app.bootstrap import BUNDLED_TOPICS

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hiem_env(**overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIEM_")}
    env.update({"PYTHONUNBUFFERED": "1", "HIEM_TOPICS_DIR": str(BUNDLED_TOPICS)})
    env.update(overrides)
    return env


class HiemProcess:
    """One ``hiem`` subprocess with its output captured to a log file (shown when a test fails)."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args, self.env, self.log_path = args, env, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> HiemProcess:
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen([sys.executable, "-m", "hiem.cli", *self.args], env=self.env, cwd=ROOT,
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a Celery worker's pool children included)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(30)
        self._close_log()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def wait_healthy(base_url: str, proc: HiemProcess, timeout: float = 60.0, **client: object) -> None:
    """Poll /healthz; ``client`` holds httpx options (verify=, cert=) for an HTTPS broker."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc and proc.proc.poll() is not None:
            raise RuntimeError(f"hiem exited with {proc.proc.returncode}:\n{proc.output()[-4000:]}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1, **client).status_code == 200:  # type: ignore[arg-type]
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"hiem did not become healthy in {timeout}s:\n{proc.output()[-4000:]}")


def wait_for_log(proc: HiemProcess, needle: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in proc.output():
            return
        if proc.proc and proc.proc.poll() is not None:
            raise RuntimeError(f"process exited:\n{proc.output()[-4000:]}")
        time.sleep(0.2)
    raise RuntimeError(f"{needle!r} not seen in {timeout}s:\n{proc.output()[-4000:]}")
