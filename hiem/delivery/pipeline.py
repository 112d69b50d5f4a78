"""The per-process delivery pipeline: per-consumer queues in front of a sender pool, and one recorder.

::

    hiem.deliver task --claims--> OriginQueues --(at most HIEM_CONSUMER_CONCURRENCY per origin)--> sender
    threads (build, sign, POST) --Attempted--> OutcomeRecorder --(one transaction per batch)--> database

Why this shape (the measurements behind each point are in docs/performance.md):

* claims over a consumer's concurrency limit wait here, in memory, so a consumer that hangs holds its
  slots and its queue (given back to the database after :data:`BUSY_WAIT_SECONDS`), never every sender;
* :meth:`OriginQueues.submit_all` blocks at :data:`BACKLOG` claims: backpressure on the Celery task;
* one recorder writes up to :data:`RECORD_BATCH` outcomes per transaction instead of one writer each;
* sender threads retire after :data:`SENDS_PER_POOL` sends, because libxml2 keeps every id libxmlsec1
  registers in the dictionary of the thread that built the document, for as long as the thread lives.

Nothing here needs to be durable: every claim carries a lease in the database, and the sweeper hands
the claims of a process that died to another worker when their leases expire.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from hiem.clock import utcnow
from hiem.delivery.attempts import Attempted
from hiem.delivery.context import DeliveryContext
from hiem.store.deliveries import Claim

log = logging.getLogger(__name__)

#: sender threads per process (they wait on consumers, so more than cores)
SENDER_THREADS = 32
#: in embedded mode the same process serves publishers and subscribers: signing is CPU-bound, and every
#: runnable thread lengthens the web threads' wait for the GIL (their answers took seconds with 32)
EMBEDDED_SENDER_THREADS = 8
#: sends made by one sender pool before it is replaced by a fresh one (see "Sender threads retire")
SENDS_PER_POOL = 5000
#: claims that may wait in one process, over all consumers
BACKLOG = 512
#: the express lane's own sender threads and backlog (small fan-outs; see OriginQueues), and how many
#: express claims may wait for one consumer (a consumer that hangs must not take the whole backlog)
EXPRESS_SENDER_THREADS = 4
EMBEDDED_EXPRESS_SENDER_THREADS = 2
EXPRESS_BACKLOG = 128
EXPRESS_ORIGIN_LIMIT = 32
#: claims that may wait for one consumer before the rest are given back to the database
ORIGIN_QUEUE_LIMIT = 128
#: how long a claim waits for room in its consumer's queue before it is given back to the database,
#: and how long a claim given back waits before it is tried again
BUSY_WAIT_SECONDS = 2.0
BUSY_RETRY_SECONDS = 1.0
#: how long one batch of outcomes is retried while the database is unreachable
RECORD_RETRY_SECONDS = 30.0
#: outcomes per recording transaction, and how long the recorder waits to fill one
RECORD_BATCH = 500
RECORD_LINGER_SECONDS = 0.02


class SenderPool:
    """Sender threads, replaced by fresh ones every :data:`SENDS_PER_POOL` sends (see the module docstring).

    A retired pool takes no more work; its threads finish what they hold and exit.
    """

    def __init__(self, threads: int, name: str) -> None:
        self._threads, self._name = threads, name
        self._lock = threading.Lock()
        self._pool = self._new_pool()
        self._sends_on_pool = 0
        self._in_flight: dict[ThreadPoolExecutor, int] = {}  # sends started and not ended, per pool
        self._closing = False

    def submit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on a sender thread; RuntimeError once the pool is shutting down."""
        with self._lock:  # submit under the lock: another send must not retire this pool in between
            pool = self._pool_for_next_send()
            future = pool.submit(fn)  # RuntimeError once shut down (nothing counted yet)
            self._in_flight[pool] = self._in_flight.get(pool, 0) + 1
        future.add_done_callback(lambda _future: self._ended(pool))

    def pools(self) -> int:
        """Pools still tracked: the current one and retired ones with sends not yet ended."""
        with self._lock:
            return len({self._pool, *self._in_flight})

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix=self._name)

    def _pool_for_next_send(self) -> ThreadPoolExecutor:
        self._sends_on_pool += 1
        if self._sends_on_pool > SENDS_PER_POOL and not self._closing:
            retired = self._pool
            retired.shutdown(wait=False)
            if not self._in_flight.get(retired):
                self._in_flight.pop(retired, None)
            self._pool, self._sends_on_pool = self._new_pool(), 1
        return self._pool

    def _ended(self, pool: ThreadPoolExecutor) -> None:
        with self._lock:
            left = self._in_flight[pool] - 1
            if left or pool is self._pool:
                self._in_flight[pool] = left
            else:
                del self._in_flight[pool]  # a retired pool with nothing left: forget it

    def shutdown(self) -> None:
        """Finish the sends in progress, in the current pool and any retired one still finishing."""
        with self._lock:
            self._closing = True
            pools = {self._pool, *self._in_flight}
        for pool in pools:
            pool.shutdown(wait=True, cancel_futures=False)


class OriginQueues:
    """Claims waiting per consumer origin; at most ``limit`` of each origin's are being sent at once.

    A claim is sent only while it is fresh: one that waited half its lease (``HIEM_VISIBILITY_TIMEOUT``)
    is given back instead, so its lease cannot expire mid-POST and have another worker send it too; one
    whose origin the breaker parked meanwhile waits in the database until the park ends; and a stopping
    process gives back what it has not started, so a graceful stop re-sends nothing.

    Express claims (the deliveries of a small fan-out) have sender threads and a backlog of their own, and
    an origin's waiting express claims go before its other ones (each kind in the order it came): a
    10-subscriber notification must not wait behind the hundreds of claims a large fan-out keeps queued
    here. They never block the caller: with no room (the express backlog, or :data:`EXPRESS_ORIGIN_LIMIT`
    waiting for their consumer) a claim is given back to the database and goes the ordinary way.
    """

    def __init__(self, rt: DeliveryContext, send: Callable[[DeliveryContext, Claim, str], Attempted],
                 recorder: OutcomeRecorder, *, threads: int = SENDER_THREADS, backlog: int = BACKLOG,
                 express_threads: int = EXPRESS_SENDER_THREADS) -> None:
        self._rt = rt
        self._send = send
        self._recorder = recorder
        self._limit = rt.settings.delivery.consumer_concurrency
        self._fresh_for = rt.settings.delivery.visibility_timeout / 2
        self._senders = {False: SenderPool(threads, "hiem-sender"),
                         True: SenderPool(express_threads, "hiem-express-sender")}
        self._room = {False: threading.BoundedSemaphore(backlog),
                      True: threading.BoundedSemaphore(EXPRESS_BACKLOG)}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # an origin's queue got shorter
        self._waiting: dict[bool, dict[str, deque[tuple[Claim, float]]]] = {False: {}, True: {}}
        self._sending: dict[str, int] = {}
        self._parked: dict[str, datetime] = {}
        self._closing = False

    def submit_all(self, admitted: list[tuple[Claim, str]], *, express: bool = False) -> None:
        """Queue claimed deliveries. Blocks while the process's backlog is full, and while a consumer's own
        queue is full for at most :data:`BUSY_WAIT_SECONDS`: a consumer that drains it slower than that (one
        that hangs) gets the rest of its claims in this batch given back to the database instead. Express
        claims never wait: without room they are given back at once."""
        claimed_at = time.monotonic()
        stalled: set[str] = set()
        for claim, origin in admitted:
            if express:
                queued = self._submit_express(claim, origin, claimed_at)
            else:
                queued = origin not in stalled and self._wait_for_room(origin)
                if queued:
                    self._submit(claim, origin, claimed_at)
                else:
                    stalled.add(origin)
            if not queued:
                self._give_back(claim, origin, utcnow() + timedelta(seconds=BUSY_RETRY_SECONDS),
                                "consumer busy (per-consumer concurrency limit)")

    def park(self, origin: str, until: datetime) -> None:
        """The breaker parked ``origin``: claims of it not yet sent wait in the database until ``until``."""
        with self._lock:
            self._parked[origin] = until

    def _wait_for_room(self, origin: str) -> bool:
        deadline = time.monotonic() + BUSY_WAIT_SECONDS
        with self._changed:
            while len(self._waiting[False].setdefault(origin, deque())) >= ORIGIN_QUEUE_LIMIT:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def _submit(self, claim: Claim, origin: str, claimed_at: float) -> None:
        self._room[False].acquire()
        with self._lock:
            start = self._take_slot(origin)
            if not start:
                self._waiting[False].setdefault(origin, deque()).append((claim, claimed_at))
        if start:
            self._start(claim, origin, claimed_at, False)

    def _submit_express(self, claim: Claim, origin: str, claimed_at: float) -> bool:
        """Queue an express claim if there is room now; False when it must be given back."""
        if not self._room[True].acquire(blocking=False):
            return False
        with self._lock:
            start = self._take_slot(origin)
            if not start:
                waiting = self._waiting[True].setdefault(origin, deque())
                if len(waiting) >= EXPRESS_ORIGIN_LIMIT:
                    self._room[True].release()
                    return False
                waiting.append((claim, claimed_at))
        if start:
            self._start(claim, origin, claimed_at, True)
        return True

    def _take_slot(self, origin: str) -> bool:
        """One of the origin's sending slots, if free (caller holds the lock)."""
        if self._sending.get(origin, 0) < self._limit:
            self._sending[origin] = self._sending.get(origin, 0) + 1
            return True
        return False

    def _start(self, claim: Claim, origin: str, claimed_at: float, express: bool) -> None:
        try:
            self._senders[express].submit(lambda: self._run(claim, origin, claimed_at, express))
        except RuntimeError:  # the pool is shutting down
            self._room[express].release()
            self._give_back(claim, origin, utcnow(), "worker stopping")
            self._next(origin)

    def _run(self, claim: Claim, origin: str, claimed_at: float, express: bool) -> None:
        try:
            held_back = self._held_back(origin, claimed_at)
            if held_back is not None:
                self._give_back(claim, origin, *held_back)
            else:
                self._recorder.put(self._send(self._rt, claim, origin))
        except Exception:  # send() never raises; if it does, the lease brings the delivery back
            log.exception("a sender thread failed")
        finally:
            self._room[express].release()
            self._next(origin)

    def _held_back(self, origin: str, claimed_at: float) -> tuple[datetime, str] | None:
        """Why a claim must not be sent now (and when it is due again), or None."""
        now = utcnow()
        with self._lock:
            closing, parked = self._closing, self._parked.get(origin)
        if closing:
            return now, "worker stopping"
        if parked is not None and parked > now:
            return parked, f"consumer parked by the circuit breaker until {parked:%H:%M:%S}"
        if time.monotonic() - claimed_at >= self._fresh_for:
            return now, "waited too long for the consumer"
        return None

    def _next(self, origin: str) -> None:
        """The slot a send of ``origin`` freed goes to its next waiting claim, express ones first."""
        with self._lock:
            for express in (True, False):
                waiting = self._waiting[express].get(origin)
                if waiting:
                    claim, claimed_at = waiting.popleft()
                    if not express:
                        self._changed.notify_all()
                    break
            else:
                self._sending[origin] -= 1
                return
        self._start(claim, origin, claimed_at, express)

    def _give_back(self, claim: Claim, origin: str, until: datetime, reason: str) -> None:
        self._recorder.put(Attempted(claim, origin, released_until=until, released_reason=reason))

    def pools(self) -> int:
        """Sender pools still tracked, both lanes (the tests watch retired pools go)."""
        return sum(senders.pools() for senders in self._senders.values())

    def shutdown(self) -> None:
        """Finish the POSTs in progress; give back every claim not started (recorded by the recorder,
        which must be stopped after this)."""
        with self._lock:
            self._closing = True
            pending = [(claim, origin, express) for express, by_origin in self._waiting.items()
                       for origin, queued in by_origin.items() for claim, _ in queued]
            for by_origin in self._waiting.values():
                for queued in by_origin.values():
                    queued.clear()
            self._changed.notify_all()
        for claim, origin, express in pending:
            self._room[express].release()
            self._give_back(claim, origin, utcnow(), "worker stopping")
        for senders in self._senders.values():
            senders.shutdown()


class OutcomeRecorder(threading.Thread):
    """The one thread that writes delivery outcomes, in batches (see the module docstring)."""

    def __init__(self, write: Callable[[list[Attempted]], object]) -> None:
        super().__init__(name="hiem-recorder", daemon=True)
        self._write = write
        self._queue: queue.SimpleQueue[Attempted | None] = queue.SimpleQueue()
        self._stopping = threading.Event()

    def put(self, item: Attempted) -> None:
        self._queue.put(item)

    def run(self) -> None:
        while True:
            batch = self._collect()
            if batch is None:
                return
            if batch:
                self._flush(batch)

    def _collect(self) -> list[Attempted] | None:
        try:
            first = self._queue.get(timeout=0.5)
        except queue.Empty:
            return None if self._stopping.is_set() else []
        if first is None:
            return self._drain_rest()
        batch = [first]
        deadline = time.monotonic() + RECORD_LINGER_SECONDS
        while len(batch) < RECORD_BATCH:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                self._stopping.set()
                break
            batch.append(item)
        return batch

    def _drain_rest(self) -> list[Attempted] | None:
        rest: list[Attempted] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                rest.append(item)
        if rest:
            self._flush(rest)
        return None

    def _flush(self, batch: list[Attempted]) -> None:
        # Keep trying through a database restart (seconds): every outcome given up on is sent again.
        deadline = time.monotonic() + RECORD_RETRY_SECONDS
        attempt = 0
        while True:
            attempt += 1
            try:
                self._write(batch)
                return
            except SQLAlchemyError as exc:
                log.warning("recording %d delivery outcomes failed (try %d): %s", len(batch), attempt, exc)
                pause = min(5.0, 0.2 * 2 ** (attempt - 1))
                if time.monotonic() + pause > deadline:
                    break
                time.sleep(pause)
            except Exception:
                log.exception("recording %d delivery outcomes failed", len(batch))
                break
        # Not recorded: the deliveries stay in flight until their leases expire, then go again.
        log.error("gave up recording %d delivery outcomes; they will be sent again after their leases expire",
                  len(batch))

    def stop(self, timeout: float = RECORD_RETRY_SECONDS + 5) -> None:
        """Record what is queued, then end; waits as long as a batch may be retried (a database outage)."""
        self._queue.put(None)
        self.join(timeout)
