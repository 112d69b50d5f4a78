"""The tasks, ``hiem.fanout`` (one per notification) and ``hiem.deliver`` (one per batch of deliveries),
and the per-process sending pipeline they feed (:mod:`hiem.delivery.pipeline`), which this module owns."""

from __future__ import annotations

import logging
import threading

from celery.signals import worker_process_init, worker_process_shutdown

from hiem import content_filter
from hiem.clock import utcnow
from hiem.delivery.attempts import Attempted, record, send
from hiem.delivery.pipeline import (
    EMBEDDED_EXPRESS_SENDER_THREADS,
    EMBEDDED_SENDER_THREADS,
    EXPRESS_SENDER_THREADS,
    SENDER_THREADS,
    OriginQueues,
    OutcomeRecorder,
)
from hiem.store import breaker
from hiem.store import deliveries as store
from hiem.worker import runtime as runtimes
from hiem.worker.celery_app import app, express_queue
from hiem.worker.filters import FilterPass
from hiem.worker.runtime import Runtime, runtime

log = logging.getLogger(__name__)

#: deliveries per hiem.deliver task: claimed in one transaction, then sent concurrently
DELIVER_CHUNK = 50
#: a fan-out of at most this many deliveries is sent by the process that made it, on its express senders
EXPRESS_DELIVERIES = 100


class _Pipeline:
    """This process's per-consumer queues, sender threads and outcome recorder, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queues: OriginQueues | None = None
        self._recorder: OutcomeRecorder | None = None

    def queues(self, rt: Runtime) -> OriginQueues:
        with self._lock:
            if self._queues is None:
                self._recorder = OutcomeRecorder(lambda batch: record_and_follow(rt, batch))
                self._recorder.start()
                embedded = rt.settings.embedded  # fewer runnable threads: the web threads share the GIL
                self._queues = OriginQueues(
                    rt, send, self._recorder, threads=EMBEDDED_SENDER_THREADS if embedded else SENDER_THREADS,
                    express_threads=EMBEDDED_EXPRESS_SENDER_THREADS if embedded else EXPRESS_SENDER_THREADS)
            return self._queues

    def park(self, origin: str, until) -> None:  # type: ignore[no-untyped-def]
        """Hold back this process's queued claims for an origin the breaker just parked."""
        if self._queues is not None:
            self._queues.park(origin, until)

    def close(self) -> None:
        """Finish the sends in progress and write their outcomes (a graceful stop re-sends nothing)."""
        with self._lock:
            queues, recorder, self._queues, self._recorder = self._queues, self._recorder, None, None
        if queues is not None:
            queues.shutdown()
        if recorder is not None:
            recorder.stop()

    def forget(self) -> None:
        """In a forked child: the parent's threads did not come along; start afresh."""
        self._queues = self._recorder = None
        self._lock = threading.Lock()


pipeline = _Pipeline()


def shutdown() -> None:
    """Finish this process's sends, record their outcomes, then let go of its resources."""
    pipeline.close()
    runtimes.shutdown()


@worker_process_init.connect
def _reset_child(**_: object) -> None:
    pipeline.forget()
    runtimes.reset_after_fork()
    content_filter.use_sandboxes(1)  # the pool children are one per core already


@worker_process_shutdown.connect
def _finish_child(**_: object) -> None:
    shutdown()


@app.task(name="hiem.fanout")
def fanout(notification_id: int) -> int:
    """Match in the database, then hand the new deliveries to the workers in batches."""
    rt = runtime()
    done = store.fan_out_in_order(rt.db, notification_id, FilterPass(rt))
    for nid in done:
        enqueue_new_deliveries(nid)
    return len(done)


def enqueue_new_deliveries(notification_id: int) -> None:
    """Hand a fan-out's new deliveries on: a small fan-out's to this process's express senders at once, a
    large one's to the queue in batches, for every worker to share."""
    rt = runtime()
    after = 0
    with rt.db.session() as session:
        matched = store.matched_count(session, notification_id)
    if matched <= EXPRESS_DELIVERIES:
        send_here(rt, notification_id)
        return
    while True:
        with rt.db.session() as session:
            ids = store.next_unqueued(session, notification_id, after, rt.settings.delivery.fanout_batch)
            if not ids:
                return
            send_deliveries(ids)
            store.mark_enqueued(session, ids)
        after = ids[-1]


def send_here(rt: Runtime, notification_id: int) -> None:
    """A small fan-out's deliveries, claimed and sent by the process that created them: a trip through the
    queue (and a wait there behind other work) less. Marked enqueued first, so if this process dies before
    claiming them, the sweeper hands them to the queue like any lost message."""
    with rt.db.session() as session:
        ids = store.next_unqueued(session, notification_id, 0, EXPRESS_DELIVERIES)
        store.mark_enqueued(session, ids)
    if ids:
        pipeline.queues(rt).submit_all(claim_admitted(rt, ids), express=True)


def send_deliveries(ids: list[int]) -> None:
    for start in range(0, len(ids), DELIVER_CHUNK):
        deliver.apply_async((ids[start:start + DELIVER_CHUNK],))


def send_fanout(notification_id: int, queue: str) -> None:
    """Queue a notification's fan-out on the express lane of ``queue`` (HIEM_QUEUE)."""
    fanout.apply_async((notification_id,), queue=express_queue(queue))


@app.task(name="hiem.deliver")
def deliver(delivery_ids: list[int], sequential: bool = False) -> None:
    """Send a batch concurrently, or one after the other (a resumed subscription's backlog, in order)."""
    if sequential:
        _deliver_in_order(delivery_ids)
        return
    # Claim the batch in one transaction, hand the claims to this process's per-consumer queues and
    # return: the task must not wait for the slowest consumer in it, or a consumer that hangs would hold
    # a worker slot per notification and starve every other consumer. Nothing is lost if this process
    # dies: each claim's lease expires and the sweeper sends it again.
    rt = runtime()
    pipeline.queues(rt).submit_all(claim_admitted(rt, delivery_ids))


def claim_admitted(rt: Runtime, delivery_ids: list[int]) -> list[tuple[store.Claim, str]]:
    """Claim deliveries and pass them through the circuit breaker, once per consumer origin.

    A parked consumer's deliveries are given back (no attempt spent) until the park ends; when a park has
    just ended, one delivery is admitted as the breaker's trial and the origin's others wait for its verdict.
    """
    settings = rt.settings.delivery
    admitted: list[tuple[store.Claim, str]] = []
    with rt.db.session() as session:
        claims = store.claim_many(session, delivery_ids, settings.visibility_timeout, ordered=settings.ordered)
        by_origin: dict[str, list[store.Claim]] = {}
        for claim in claims:
            by_origin.setdefault(breaker.origin_of(claim.consumer_address), []).append(claim)
        now = utcnow()
        for origin, group in by_origin.items():
            gate = breaker.gate(session, origin, now, threshold=settings.breaker_threshold,
                                trial_seconds=settings.connect_timeout + settings.read_timeout + 5)
            if gate.parked_until is None:
                admitted.extend((claim, origin) for claim in group)
                continue
            if gate.trial:
                admitted.append((group[0], origin))
                group = group[1:]
            store.release_many(session, group, gate.parked_until,
                               f"consumer parked by the circuit breaker until {gate.parked_until:%H:%M:%S}")
    return admitted


def _deliver_in_order(delivery_ids: list[int]) -> None:
    """A resumed subscription's backlog: each delivery sent and recorded before the next one is claimed."""
    rt = runtime()
    subscription = None
    for delivery_id in delivery_ids:
        with rt.db.session() as session:
            store.unhold(session, delivery_id)
            subscription = subscription or store.subscription_of(session, delivery_id)
        deliver_now(delivery_id)
    if subscription is not None:  # what arrived during the drain waited behind it: send it in order too
        with rt.db.session() as session:
            following = store.pending_for(session, subscription)
        for delivery_id in following:
            deliver_now(delivery_id)


def deliver_now(delivery_id: int) -> str | None:
    """One attempt for one delivery in this thread, recorded before returning; returns the new state
    (None when there was nothing to send: taken by someone else, parked, held or cancelled)."""
    rt = runtime()
    admitted = claim_admitted(rt, [delivery_id])
    if not admitted:
        return None
    claim, origin = admitted[0]
    states = record(rt, [send(rt, claim, origin)]).states
    follow_in_order(rt, states)
    return states.get(delivery_id)


def record_and_follow(rt: Runtime, batch: list[Attempted]) -> None:
    """The recorder's write: a batch of outcomes in one transaction, then what follows from it.

    Only ``record`` may raise (the recorder retries the batch); what follows is best effort once the
    outcomes are committed: an origin the breaker parked holds back this process's queued claims for it,
    and ordered delivery's next deliveries are enqueued (if that fails, the sweeper enqueues them later).
    """
    recorded = record(rt, batch)
    for origin, until in recorded.parked.items():
        pipeline.park(origin, until)
    try:
        follow_in_order(rt, recorded.states)
    except Exception:
        log.warning("could not enqueue the next ordered deliveries; the sweeper will", exc_info=True)


def follow_in_order(rt: Runtime, states: dict[int, str]) -> None:
    """Ordered delivery: after a delivery ends, enqueue the next pending one of its subscription."""
    if not rt.settings.delivery.ordered:
        return
    ended = [delivery_id for delivery_id, state in states.items() if state in {"delivered", "dead"}]
    if not ended:
        return
    with rt.db.session() as session:
        following = [store.next_in_order(session, subscription)
                     for subscription in store.subscriptions_of(session, ended)]
    for delivery_id in following:
        if delivery_id is not None:
            deliver.delay([delivery_id])
