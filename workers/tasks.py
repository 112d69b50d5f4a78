"""The tasks: ``hiem.fanout`` (one per notification) and ``hiem.deliver`` (one per batch of deliveries)."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

from hiem.audit.codes import EventOutcomeIndicator
from hiem.delivery import channel_name_for
from hiem.errors import DeliveryError, DeliveryRefused
from hiem.store import audit, breaker
from hiem.store import deliveries as store
from hiem.store.db import utcnow
from hiem.wsn.outbound import AddressNotAllowed, resolve_checked
from hiem.wsn.outgoing import build_delivery, delivery_message_id
from workers.app import app
from workers.runtime import Runtime, runtime

log = logging.getLogger(__name__)

#: deliveries per hiem.deliver task; they are sent concurrently inside the task
DELIVER_CHUNK = 20
#: how long a delivery to a consumer already at its concurrency limit waits before trying again
BUSY_RETRY_SECONDS = 1.0


@app.task(name="hiem.fanout")
def fanout(notification_id: int) -> int:
    """Match in the database, then hand the new deliveries to the workers in batches."""
    rt = runtime()
    with rt.db.session() as session:
        done = store.fan_out(session, notification_id)
    for nid in done:
        enqueue_new_deliveries(nid)
    return len(done)


def enqueue_new_deliveries(notification_id: int) -> None:
    rt = runtime()
    after = 0
    while True:
        with rt.db.session() as session:
            ids = store.next_unqueued(session, notification_id, after, rt.settings.delivery.fanout_batch)
            if not ids:
                return
            send_deliveries(ids)
            store.mark_enqueued(session, ids)
        after = ids[-1]


def send_deliveries(ids: list[int]) -> None:
    for start in range(0, len(ids), DELIVER_CHUNK):
        deliver.delay(ids[start:start + DELIVER_CHUNK])


@app.task(name="hiem.deliver")
def deliver(delivery_ids: list[int], sequential: bool = False) -> None:
    """Send a batch concurrently, or one after the other (a resumed subscription's backlog, in order)."""
    if sequential:
        rt = runtime()
        subscription = None
        for delivery_id in delivery_ids:
            with rt.db.session() as session:
                store.unhold(session, delivery_id)
                subscription = subscription or store.subscription_of(session, delivery_id)
            deliver_one(delivery_id)
        if subscription is not None:  # what arrived during the drain waited behind it: send it in order too
            with rt.db.session() as session:
                following = store.pending_for(session, subscription)
            for delivery_id in following:
                deliver_one(delivery_id)
        return
    # Hand the batch to this process's sender threads and return: the task must not wait for the slowest
    # consumer in it, or a consumer that hangs would hold a worker slot per notification and starve every
    # other consumer. Nothing is lost if this process dies: each delivery's lease expires and the sweeper
    # sends it again.
    senders = runtime().senders
    for delivery_id in delivery_ids:
        senders.submit(deliver_one, delivery_id)


def deliver_one(delivery_id: int) -> str | None:
    """One attempt for one delivery; returns the resulting state (None when there was nothing to do).

    Before sending: the circuit breaker (a parked consumer's deliveries wait without spending attempts)
    and the per-consumer concurrency limit (a busy consumer's delivery is put back for a second instead
    of holding a worker thread, so one slow consumer cannot starve the others).
    """
    rt = runtime()
    settings = rt.settings.delivery
    with rt.db.session() as session:
        claim = store.claim(session, delivery_id, settings.visibility_timeout, ordered=settings.ordered)
        if claim is None:
            return None
        origin = breaker.origin_of(claim.consumer_address)
        parked = breaker.parked_until(session, origin, utcnow(), threshold=settings.breaker_threshold,
                                      probe_seconds=settings.connect_timeout + settings.read_timeout + 5)
        if parked is not None:
            store.release(session, claim, parked, f"consumer parked by the circuit breaker until {parked:%H:%M:%S}")
            return "parked"
    slots = rt.consumer_slots(origin)
    if not slots.acquire(blocking=False):
        with rt.db.session() as session:
            store.release(session, claim, utcnow() + timedelta(seconds=BUSY_RETRY_SECONDS),
                          "consumer busy (per-consumer concurrency limit)")
        return "busy"
    try:
        state = _attempt(rt, claim, origin)
    finally:
        slots.release()
    if settings.ordered and state in {"delivered", "dead"}:
        with rt.db.session() as session:
            following = store.next_in_order(session, claim.subscription_id)
        if following is not None:
            deliver.delay([following])
    return state


def _attempt(rt: Runtime, claim: store.Claim, origin: str) -> str:
    settings = rt.settings.delivery
    error: DeliveryError | None = None
    try:
        addresses = resolve_checked(claim.consumer_address, settings.allow_private_addresses)
    except AddressNotAllowed as exc:
        error = DeliveryRefused(f"consumer address refused: {exc}")
    outcome = None
    if error is None:
        try:
            channel = rt.channel(channel_name_for(claim.consumer_address))
            request = build_delivery(claim, rt.signer)
            if addresses:
                request = replace(request, connect_to=addresses[0])
            outcome = channel.deliver(request)
        except DeliveryError as exc:
            error = exc
        except Exception as exc:  # a bug must not lose the delivery: record it and retry later
            log.exception("delivery %s failed unexpectedly", claim.delivery_id)
            error = DeliveryError(f"internal error: {exc!r}")
    with rt.db.session() as session:
        if error is None:
            if store.record_delivered(session, claim, outcome.status_code if outcome else None):
                audit.add(session, _export_event(rt, claim))
            breaker.record_success(session, origin)
            return "delivered"
        if error.retryable:
            breaker.record_failure(session, origin, str(error), threshold=settings.breaker_threshold,
                                   first_park=settings.breaker_park_seconds)
        state = store.record_failure(session, claim, error=str(error), status_code=error.status_code,
                                     retryable=error.retryable, retry_after=error.retry_after, settings=settings)
        if state == "dead":
            audit.add(session, _export_event(rt, claim, EventOutcomeIndicator.SERIOUS_FAILURE,
                                             f"delivery given up: {error}"))
        return state


def _export_event(rt: Runtime, claim: store.Claim,
                  outcome: EventOutcomeIndicator = EventOutcomeIndicator.SUCCESS, description: str | None = None):
    return rt.audit.exported(
        claim.manager_address, claim.consumer_address, subscription_id=claim.subscription_id,
        topic=f"{{{claim.topic_namespace}}}{claim.topic_path}",
        message_id=delivery_message_id(claim.subscription_id, claim.notification_id),
        outcome=outcome, description=description)
