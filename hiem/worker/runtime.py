"""Per-process state of a worker: settings, database, delivery channels. Built once, lazily.

Why lazily: Celery's prefork pool forks children after the parent imported the tasks; a database
connection pool or an HTTP client inherited across fork would be shared by two processes. Each child
builds its own on first use (and :func:`reset_after_fork` drops anything inherited).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from hiem.audit.trail import AuditTrail
from hiem.config import Settings, load_settings
from hiem.delivery import DeliveryChannel, make_channel
from hiem.security.setup import BrokerSigner, broker_identity
from hiem.store.db import Database

if TYPE_CHECKING:
    from hiem.delivery.pipeline import OriginQueues, OutcomeRecorder

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    db: Database
    audit: AuditTrail
    _channels: dict[str, DeliveryChannel] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    _signer: BrokerSigner | None = None
    _senders: BoundedSenders | None = None
    _queues: OriginQueues | None = None
    _recorder: OutcomeRecorder | None = None

    @property
    def queues(self) -> OriginQueues:
        """This process's delivery pipeline (per-consumer queues, sender threads, outcome recorder)."""
        from hiem.delivery.attempts import send
        from hiem.delivery.pipeline import EMBEDDED_SENDER_THREADS, SENDER_THREADS, OriginQueues, OutcomeRecorder
        from hiem.worker.tasks import record_and_follow

        with self._lock:
            if self._queues is None:
                self._recorder = OutcomeRecorder(lambda batch: record_and_follow(self, batch))
                self._recorder.start()
                threads = EMBEDDED_SENDER_THREADS if self.settings.embedded else SENDER_THREADS
                self._queues = OriginQueues(self, send, self._recorder, threads=threads)
            return self._queues

    @property
    def senders(self) -> BoundedSenders:
        with self._lock:
            if self._senders is None:
                self._senders = BoundedSenders(CONTROL_THREADS, CONTROL_BACKLOG)
            return self._senders

    @property
    def signer(self) -> BrokerSigner:
        """Signs every outgoing Notify (the broker's key and a fresh system assertion per message)."""
        with self._lock:
            if self._signer is None:
                self._signer = BrokerSigner(self.settings, broker_identity(self.settings))
            return self._signer

    def park(self, origin: str, until: datetime) -> None:
        """Tell this process's delivery queues that the breaker parked ``origin`` (if they exist)."""
        if self._queues is not None:
            self._queues.park(origin, until)

    def channel(self, name: str) -> DeliveryChannel:
        with self._lock:
            if name not in self._channels:
                self._channels[name] = make_channel(name, self.settings.delivery)
            return self._channels[name]

    def close(self) -> None:
        """Finish what was handed over (sends in progress, outcomes not yet written), then let go."""
        if self._queues is not None:
            self._queues.shutdown()
        if self._recorder is not None:
            self._recorder.stop()
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        self.db.dispose()


#: threads per process for control messages (heartbeats), and how many may wait for one of them
CONTROL_THREADS = 8
CONTROL_BACKLOG = 256


class BoundedSenders:
    """A thread pool whose queue is bounded: ``submit`` blocks when the backlog is full (backpressure on
    the Celery task, so a process never piles up more work in memory than it can send soon)."""

    def __init__(self, threads: int, backlog: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hiem-sender")
        self._room = threading.BoundedSemaphore(backlog)

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        self._room.acquire()
        future = self._pool.submit(fn, *args)
        future.add_done_callback(self._done)

    def _done(self, future: Future[object]) -> None:
        self._room.release()
        if future.exception() is not None:
            log.error("a delivery thread failed", exc_info=future.exception())

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


_runtime: Runtime | None = None
_settings: Settings | None = None
_guard = threading.Lock()


def configure(settings: Settings) -> None:
    """Use these settings instead of reading the environment (``hiem serve --dev`` does this)."""
    global _settings, _runtime
    with _guard:
        _settings = settings
        _runtime = None


def current_settings() -> Settings:
    return _settings or load_settings()


def runtime() -> Runtime:
    global _runtime
    with _guard:
        if _runtime is None:
            settings = _settings or load_settings()
            _runtime = Runtime(settings=settings, db=Database(settings.database_url, settings.db_pool),
                               audit=AuditTrail(settings))
        return _runtime


def shutdown() -> None:
    """Finish this process's sends and write their outcomes (a graceful stop re-sends nothing)."""
    global _runtime
    with _guard:
        current, _runtime = _runtime, None
    if current is not None:
        current.close()


def reset_after_fork() -> None:
    global _runtime
    with _guard:
        if _runtime is not None:
            _runtime.db.engine.dispose(close=False)
        _runtime = None
