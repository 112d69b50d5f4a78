"""The benchmark's helper processes are ready only when *they* say so, not when an earlier process sharing
the same (appended) log did: the 2026-12-05 CI run's signing floor connected to a consumer not yet listening."""

from __future__ import annotations

import time
from pathlib import Path

from bench.harness import Proc


def test_ready_line_of_an_earlier_process_in_the_same_log_is_not_taken(tmp_path: Path) -> None:
    log = tmp_path / "consumer.log"
    log.write_text("consumer listening on 127.0.0.1:1\n")  # what the previous consumer left
    proc = Proc(["-c", "import time; time.sleep(0.5); print('consumer listening', flush=True); time.sleep(30)"],
                log)
    started = time.monotonic()
    try:
        proc.start("listening", timeout=20)
        waited = time.monotonic() - started
        assert waited >= 0.5, f"start() returned after {waited:.2f} s, before the process printed its line"
        assert proc.output() == "consumer listening\n"
    finally:
        proc.stop()
    assert log.read_text().startswith("consumer listening on 127.0.0.1:1\n")  # earlier output kept
