"""The sweeper: the outbox's safety net. Every few seconds it re-enqueues

* fan-outs recorded but never finished (crash between commit and enqueue, lost broker message),
* deliveries pending too long, in flight past their lease (worker died), or retrying and due,
* held deliveries of a resumed subscription whose in-order drain was lost (its task failed, or was
  never enqueued after the resume committed);

and every ``HIEM_PURGE_INTERVAL`` it folds what finished into the operators' tallies
(:mod:`hiem.store.tallies`), then deletes what the retention windows no longer keep
(:mod:`hiem.store.retention`).

It runs as a thread in every worker process (and in ``hiem serve`` in embedded mode). Several sweepers
are safe together: PostgreSQL rows are taken with SKIP LOCKED and every task claims its row conditionally.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from sqlalchemy.exc import SQLAlchemyError

from hiem.addressing import EndpointReference
from hiem.audit import AuditKind
from hiem.audit import records as audit_records
from hiem.audit.codes import EventOutcomeIndicator
from hiem.audit.trail import Caller
from hiem.clock import utcnow
from hiem.delivery.policy import AddressNotAllowed, resolve_checked
from hiem.durations import parse_duration
from hiem.errors import DeliveryError
from hiem.store import deliveries as store
from hiem.store import pullpoints, retention, subscriptions, tallies
from hiem.worker.runtime import runtime
from hiem.wsn import endpoint_checks

log = logging.getLogger(__name__)

SWEEP_LIMIT = 5000


def sweep_once() -> tuple[int, int]:
    """One pass; returns (fan-outs, deliveries) re-enqueued."""
    from hiem.worker.tasks import deliver, send_deliveries, send_fanout

    rt = runtime()
    cutoff = utcnow() - timedelta(seconds=rt.settings.delivery.visibility_timeout)
    with rt.db.session() as session:
        fanouts = store.stale_fanouts(session, cutoff, SWEEP_LIMIT)
    for notification_id in fanouts:
        send_fanout(notification_id, rt.settings.queue)
    with rt.db.session() as session:
        due = store.requeue_due(session, cutoff, SWEEP_LIMIT)
    if due:
        send_deliveries(due)
    with rt.db.session() as session:
        drains = store.stalled_drains(session, cutoff, SWEEP_LIMIT)
    for subscription, held in drains.items():
        log.warning("subscription %s was resumed but %d held deliveries were never sent; sending them in order",
                    subscription, len(held))
        deliver.delay(held, sequential=True)
    with rt.db.session() as session:
        expired = subscriptions.expire_due(session)
        for row in expired:
            audit_records.add(session, rt.audit.subscription(
                AuditKind.SUBSCRIPTION_EXPIRED, Caller(address=None, user="hiem-reaper"), row.manager_address,
                subscription_id=row.id, topic=row.topic_expression, message_id=None,
                description=f"termination time {row.termination_time} reached"))
    if expired:
        log.info("expired %d subscriptions", len(expired))
    with rt.db.session() as session:
        dropped = pullpoints.enforce_bounds(session, rt.settings.pull_max_messages,
                                           parse_duration(rt.settings.pull_max_age))
        for delivery in dropped:
            sub = subscriptions.get(session, delivery.subscription_id)
            audit_records.add(session, rt.audit.exported(
                sub.manager_address, f"pull point {sub.pull_point_id}", subscription_id=sub.id,
                topic=sub.topic_expression, message_id=f"{sub.id}/{delivery.notification_id}",
                outcome=EventOutcomeIndicator.SERIOUS_FAILURE, description=delivery.last_error))
    if dropped:
        log.warning("dropped %d messages from full or stale pull points", len(dropped))
    with rt.db.session() as session:
        heartbeats = [(s.id, s.manager_address, s.consumer_address, s.consumer_reference_parameters, s.dialect,
                       s.soap_version) for s in subscriptions.heartbeats_due(session)]
    for item in heartbeats:
        rt.control_senders.submit(_send_heartbeat, *item)
    if fanouts or due:
        log.info("sweeper re-enqueued %d fan-outs and %d deliveries", len(fanouts), len(due))
    return len(fanouts), len(due)


def purge_once() -> retention.Purged:
    """Delete what the retention windows no longer keep, in batches; logs what went."""
    rt = runtime()
    window, audit = rt.settings.retention, rt.settings.audit
    windows = retention.RetentionWindows(window.delivered, window.dead, window.notifications, window.ended,
                                         timedelta(days=audit.retention_days), audit.shipping)
    purged = retention.purge(rt.db, windows, utcnow(), window.batch)
    if purged.total:
        log.info("retention purge deleted %s", ", ".join(f"{n} {kind.replace('_', ' ')}"
                                                         for kind, n in purged.counts.items() if n))
    return purged


def _send_heartbeat(subscription_id: str, manager: str, address: str, parameters: bytes, dialect: str,
                    soap_version: str) -> None:
    rt = runtime()
    try:
        addresses = resolve_checked(address, rt.settings.delivery.allow_private_addresses)
        request = endpoint_checks.control_request(
            topic_local="Heartbeat", subscription_id=subscription_id, manager_address=manager,
            consumer=EndpointReference(address, parameters), dialect_uri=dialect, soap_version=soap_version,
            signer=rt.signer, connect_to=addresses[0] if addresses else None)
        endpoint_checks.send_once(request, rt.settings.delivery)
    except (DeliveryError, AddressNotAllowed) as exc:
        log.info("heartbeat to subscription %s failed: %s", subscription_id, exc)


class Sweeper(threading.Thread):
    def __init__(self, interval: float) -> None:
        super().__init__(name="hiem-sweeper", daemon=True)
        self.interval = interval
        self._stop_event = threading.Event()

    def run(self) -> None:
        last_purge = 0.0
        while not self._stop_event.wait(self.interval):
            try:
                sweep_once()
                if time.monotonic() - last_purge >= runtime().settings.retention.interval:
                    last_purge = time.monotonic()
                    # first, so the purge never deletes a finished row the tallies have not counted yet
                    tallies.fold(runtime().db, utcnow(), tallies.settle_margin(runtime().settings.retention))
                    purge_once()
            except SQLAlchemyError as exc:
                log.warning("sweeper: database unavailable: %s", exc)
            except Exception:
                log.exception("sweeper pass failed")

    def stop(self) -> None:
        self._stop_event.set()
