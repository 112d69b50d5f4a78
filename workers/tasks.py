"""The tasks: ``hiem.fanout`` (one per notification) and ``hiem.deliver`` (one per batch of deliveries)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from hiem.delivery import channel_name_for
from hiem.errors import DeliveryError
from hiem.store import deliveries as store
from hiem.wsn.outgoing import build_delivery
from workers.app import app
from workers.runtime import runtime

log = logging.getLogger(__name__)

#: deliveries per hiem.deliver task; they are sent concurrently inside the task
DELIVER_CHUNK = 20
_MAX_THREADS = 16


@app.task(name="hiem.fanout")
def fanout(notification_id: int) -> int:
    """Match in the database, then hand the new deliveries to the workers in batches."""
    rt = runtime()
    with rt.db.session() as session:
        matched = store.fan_out(session, notification_id)
    enqueue_new_deliveries(notification_id)
    return matched


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
def deliver(delivery_ids: list[int]) -> None:
    if len(delivery_ids) == 1:
        deliver_one(delivery_ids[0])
        return
    with ThreadPoolExecutor(max_workers=min(_MAX_THREADS, len(delivery_ids))) as pool:
        list(pool.map(deliver_one, delivery_ids))


def deliver_one(delivery_id: int) -> str | None:
    """One attempt for one delivery; returns the resulting state (None when there was nothing to do)."""
    rt = runtime()
    settings = rt.settings.delivery
    with rt.db.session() as session:
        claim = store.claim(session, delivery_id, settings.visibility_timeout)
    if claim is None:
        return None
    try:
        channel = rt.channel(channel_name_for(claim.consumer_address))
        request = build_delivery(claim)
        outcome = channel.deliver(request)
    except DeliveryError as exc:
        retryable = exc.retryable
        with rt.db.session() as session:
            return store.record_failure(session, claim, error=str(exc), status_code=exc.status_code,
                                        retryable=retryable, retry_after=exc.retry_after, settings=settings)
    except Exception as exc:  # a bug must not lose the delivery: record it and retry later
        log.exception("delivery %s failed unexpectedly", delivery_id)
        with rt.db.session() as session:
            return store.record_failure(session, claim, error=f"internal error: {exc!r}", status_code=None,
                                        retryable=True, retry_after=None, settings=settings)
    with rt.db.session() as session:
        store.record_delivered(session, claim, outcome.status_code)
    return "delivered"
