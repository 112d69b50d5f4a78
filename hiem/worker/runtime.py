"""The resources one worker process holds: settings, database, audit trail, signer, delivery channels.

The runtime holds resources and nothing else: the sending pipeline belongs to :mod:`hiem.worker.tasks`,
and the runtime is built by the composition root (:mod:`hiem.app.context`), which hands this module
either a ready runtime (embedded mode: the web part's own resources, so the process has one
:class:`~hiem.store.db.Database`) or a factory (``hiem worker``).

Why a factory, built on first use: Celery's prefork pool forks children after the parent imported the
tasks; a connection pool or an HTTP client inherited across fork would be shared by two processes, so
each child builds its own (and :func:`reset_after_fork` drops anything inherited).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from hiem.audit.trail import AuditTrail
from hiem.config import Settings
from hiem.delivery import DeliveryChannel, DeliveryRequest, make_channel
from hiem.security.setup import BrokerSigner, broker_identity
from hiem.store.db import Database
from hiem.store.deliveries import Claim
from hiem.wsn.outgoing import build_delivery

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Satisfies :class:`hiem.delivery.context.DeliveryContext` for the sending pipeline."""

    settings: Settings
    db: Database
    audit: AuditTrail
    _channels: dict[str, DeliveryChannel] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _signer: BrokerSigner | None = None
    _control: BoundedSenders | None = None

    @property
    def control_senders(self) -> BoundedSenders:
        """Threads for control messages (endpoint heartbeats), apart from the delivery pipeline."""
        with self._lock:
            if self._control is None:
                self._control = BoundedSenders(CONTROL_THREADS, CONTROL_BACKLOG)
            return self._control

    @property
    def signer(self) -> BrokerSigner:
        """Signs every outgoing Notify (the broker's key and its system assertion)."""
        with self._lock:
            if self._signer is None:
                self._signer = BrokerSigner(self.settings, broker_identity(self.settings))
            return self._signer

    def channel(self, name: str) -> DeliveryChannel:
        with self._lock:
            if name not in self._channels:
                self._channels[name] = make_channel(name, self.settings.delivery)
            return self._channels[name]

    def build(self, claim: Claim) -> DeliveryRequest:
        return build_delivery(claim, self.signer)

    def close(self) -> None:
        if self._control is not None:
            self._control.shutdown()
        for channel in self._channels.values():
            channel.close()
        self._channels.clear()
        self.db.dispose()


#: threads per process for control messages (heartbeats), and how many may wait for one of them
CONTROL_THREADS = 8
CONTROL_BACKLOG = 256


class BoundedSenders:
    """A thread pool whose queue is bounded: ``submit`` blocks when the backlog is full (backpressure on
    the caller, so a process never piles up more work in memory than it can send soon)."""

    def __init__(self, threads: int, backlog: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="hiem-control")
        self._room = threading.BoundedSemaphore(backlog)

    def submit(self, fn: Callable[..., object], *args: object) -> None:
        self._room.acquire()
        future = self._pool.submit(fn, *args)
        future.add_done_callback(self._done)

    def _done(self, future: Future[object]) -> None:
        self._room.release()
        if future.exception() is not None:
            log.error("a control-message thread failed", exc_info=future.exception())

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


_runtime: Runtime | None = None
_factory: Callable[[], Runtime] | None = None
#: the runtime was handed over ready-made and belongs to someone else (embedded: the web part)
_borrowed = False
_guard = threading.Lock()


def configure(factory: Callable[[], Runtime]) -> None:
    """Build this process's runtime with ``factory`` on first use (``hiem worker``, each pool child)."""
    global _runtime, _factory, _borrowed
    with _guard:
        _factory, _runtime, _borrowed = factory, None, False


def install(runtime_: Runtime) -> None:
    """Use this ready runtime (embedded mode: the resources the web part already holds)."""
    global _runtime, _factory, _borrowed
    with _guard:
        _runtime, _factory, _borrowed = runtime_, None, True


def runtime() -> Runtime:
    global _runtime
    with _guard:
        if _runtime is None:
            if _factory is None:
                raise RuntimeError("the worker runtime is not configured: start the process with `hiem worker` "
                                   "or `hiem serve`")
            _runtime = _factory()
        return _runtime


def shutdown() -> None:
    """Let go of this process's resources (the pipeline is finished first, by hiem.worker.tasks)."""
    global _runtime
    with _guard:
        current, _runtime = _runtime, None
    if current is not None:
        current.close()


def reset_after_fork() -> None:
    global _runtime
    with _guard:
        if _runtime is not None and not _borrowed:
            _runtime.db.engine.dispose(close=False)
            _runtime = None
