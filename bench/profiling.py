"""py-spy recording and a readable summary of where the samples went.

``py-spy record --format raw`` writes collapsed stacks ("frame;frame;frame count"). The summary gives
(1) the share of samples per library, by the frame that was running (self time), and (2) the inclusive
share of the hiem/worker functions a delivery goes through.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

#: the functions of a delivery (and a fan-out), inclusive time
FOCUS = [
    "deliver", "claim_admitted", "claim_many", "gate", "send", "resolve_checked", "build_delivery",
    "SoapHttpChannel.deliver", "BrokerSigner.sign", "record", "record_delivered_many", "export_event", "add_many",
    "record_success", "Database.session", "SessionTransaction.commit",
    "_ConnectionFairy._checkout", "do_ping", "Connection.connect", "fanout", "fan_out", "enqueue_new_deliveries",
    "send_deliveries", "Task.delay", "Runtime.channel",
]

#: library functions in FOCUS (the others must be hiem's own)
LIBRARY_FOCUS = {"SessionTransaction.commit", "_ConnectionFairy._checkout", "do_ping", "Connection.connect",
                 "Task.delay"}

LIBRARIES = [
    ("sqlalchemy/", "SQLAlchemy"), ("psycopg", "psycopg"), ("signxml/", "signxml (signing)"),
    ("cryptography/", "signxml (signing)"), ("hiem/security", "hiem.security (signing)"),
    ("httpx/", "httpx"), ("httpcore/", "httpcore/h11"),
    ("h11/", "httpcore/h11"), ("urllib3/", "urllib3"), ("http/client.py", "urllib3"), ("/hiem/", "hiem"),
    ("workers/", "hiem workers"), ("celery/", "Celery/kombu"),
    ("kombu/", "Celery/kombu"), ("billiard/", "Celery/kombu"), ("redis/", "redis-py"), ("lxml", "lxml"),
    ("sqlite3", "sqlite3"), ("threading.py", "threads/locks"), ("concurrent/", "threads/locks"),
    ("cheroot/", "cheroot"), ("ssl.py", "ssl"), ("socket.py", "socket"), ("selectors.py", "selectors"),
]


def py_spy() -> str | None:
    found = Path(sys.executable).with_name("py-spy")
    return str(found) if found.exists() else shutil.which("py-spy")


def record(spy: str, pid: int, out: Path, seconds: float, *, gil: bool) -> None:
    """``gil``: threads holding the GIL, in ``pid`` and its children (where the CPU goes); otherwise every
    thread, idle ones included, of ``pid`` alone (where the time goes; pass one pool child)."""
    args = [spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(out),
            "--duration", str(max(1, int(seconds))), "--nonblocking"]
    args += ["--gil", "--subprocesses", "--rate", "100"] if gil else ["--idle", "--rate", "50"]
    subprocess.run(args, capture_output=True, timeout=seconds + 180, check=True)


def _frame_name(frame: str) -> tuple[str, str]:
    """("func (path:line)") -> (func, path)."""
    if " (" not in frame:
        return frame, ""
    name, _, rest = frame.partition(" (")
    return name, rest.rsplit(":", 1)[0]


def summarize(raw: Path, top: int = 25) -> dict[str, Any]:
    total = 0
    libraries: Counter[str] = Counter()
    focus: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith("process ") and not f.startswith("thread ")]
        if not frames:
            continue
        total += n
        name, path = _frame_name(frames[-1])
        libraries[next((label for needle, label in LIBRARIES if needle in path), "other (stdlib, C)")] += n
        leaves[f"{name} ({Path(path).name})"] += n
        seen = set()
        for frame in frames:
            fname, fpath = _frame_name(frame)
            ours = "hiem" in fpath or "workers" in fpath or fname in LIBRARY_FOCUS
            if fname in FOCUS and ours and fname not in seen:
                focus[fname] += n
                seen.add(fname)

    def pct(counter: Counter[str]) -> list[list[Any]]:
        return [[key, round(100 * value / total, 1)] for key, value in counter.most_common(top)] if total else []

    return {"samples": total, "by_library_self_pct": pct(libraries), "functions_inclusive_pct": pct(focus),
            "top_self_pct": pct(leaves)[:15]}
