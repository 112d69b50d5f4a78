"""Workers seen and queue depth, asked of the broker (not the database, which cannot know either).

Distributed mode: the Redis lists behind the Celery queue ``HIEM_QUEUE`` and its express lane (LLEN, one
list per priority step as kombu lays them out) and the Celery workers that say they consume that queue.
Embedded mode has neither: its single worker runs inside ``hiem serve`` on an in-memory transport, and
the console says so.

A broadcast waits its whole timeout for replies, so answers are cached briefly: console pages poll every
few seconds and many operators may be watching.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from hiem.config import Settings
from hiem.worker.celery_app import express_queue

# kombu's Redis transport: priority 0 is the plain list name, the other steps add "\x06\x16<n>".
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
CACHE_SECONDS = 10.0
PING_TIMEOUT = 0.8


@dataclass(frozen=True)
class QueueStatus:
    mode: str                  # "embedded" | "distributed"
    queue: str
    depth: int | None          # messages waiting in the broker; None when it cannot be measured
    workers: list[str] | None  # Celery nodes consuming the queue that answered; None when not asked
    note: str = ""             # why a number is missing, in words for the operator

    def to_json(self) -> dict[str, object]:
        return {"mode": self.mode, "queue": self.queue, "depth": self.depth, "workers": self.workers,
                "note": self.note}


def queue_depth(settings: Settings) -> int | None:
    """Messages waiting in the Redis lists of the queue; None for a broker that is not Redis."""
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        return None
    import redis

    client = redis.Redis.from_url(settings.broker_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        with client.pipeline(transaction=False) as pipe:
            for queue in (settings.queue, express_queue(settings.queue)):
                for suffix in _PRIORITY_SUFFIXES:
                    pipe.llen(queue + suffix)
            return int(sum(pipe.execute()))
    finally:
        client.close()


def workers_seen(queue: str, timeout: float = PING_TIMEOUT) -> list[str]:
    """Node names of the Celery workers consuming ``queue`` that answer within ``timeout``.

    Asked with ``active_queues`` rather than ``ping``: a broadcast reaches every worker on the broker,
    including other deployments' sharing the Redis database, and only the queue tells ours apart.
    """
    from hiem.worker.celery_app import app

    # broadcast() returns one {node: queues} dict per reply; inspect() would merge same-named nodes
    replies = app.control.broadcast("active_queues", reply=True, timeout=timeout) or []
    return sorted(name for reply in replies for name, queues in reply.items()
                  if any(q.get("name") == queue for q in queues or []))


class QueueMonitor:
    """Measures :class:`QueueStatus` for one deployment, caching the answer for a few seconds."""

    def __init__(self, settings: Settings, cache_seconds: float = CACHE_SECONDS) -> None:
        self.settings = settings
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, QueueStatus] | None = None
        self._lock = threading.Lock()

    def status(self) -> QueueStatus:
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < self.cache_seconds:
                return self._cached[1]
            status = self._measure()
            self._cached = (time.monotonic(), status)
            return status

    def _measure(self) -> QueueStatus:
        s = self.settings
        if s.embedded:
            return QueueStatus("embedded", s.queue, None, None,
                               "embedded mode: one in-process worker on an in-memory queue (nothing to measure)")
        notes = []
        try:
            depth = queue_depth(s)
            if depth is None:
                notes.append("queue depth is measured for Redis brokers only")
        except Exception as exc:  # the broker being down is exactly what an operator needs to see
            depth = None
            notes.append(f"queue depth unavailable: {type(exc).__name__}")
        try:
            workers: list[str] | None = workers_seen(s.queue)
        except Exception as exc:
            workers = None
            notes.append(f"asking the workers failed: {type(exc).__name__}")
        return QueueStatus("distributed", s.queue, depth, workers, "; ".join(notes))
