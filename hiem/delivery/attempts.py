"""One delivery attempt, split in its two halves: sending (no database) and recording (batched).

Why split: a database connection is never needed while a POST is in flight, and recording outcomes one
transaction per delivery made the ORM and the connection pool the bottleneck of a fan-out. Senders only
build, sign and POST; :func:`record` writes a whole batch of outcomes in one transaction (one UPDATE for
the successes, one multi-row INSERT for their audit events, the breaker once per origin).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime

from hiem.audit import AuditEvent
from hiem.audit import records as audit_records
from hiem.audit.codes import EventOutcomeIndicator
from hiem.delivery import channel_name_for
from hiem.delivery.context import DeliveryContext, delivery_message_id
from hiem.delivery.policy import AddressNotAllowed, HostNotResolved, resolve_checked
from hiem.errors import DeliveryError, DeliveryRefused
from hiem.store import breaker
from hiem.store import deliveries as store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempted:
    """What became of one claimed delivery: sent (``error`` None), failed, or given back unsent."""

    claim: store.Claim
    origin: str
    status_code: int | None = None
    error: DeliveryError | None = None
    #: given back without an attempt (consumer busy for too long): due again at this time
    released_until: datetime | None = None
    released_reason: str = ""


def send(rt: DeliveryContext, claim: store.Claim, origin: str) -> Attempted:
    """Check the address again, build and sign the Notify, POST it. Never raises: a bug must not lose the
    delivery, so it is recorded as a retryable error."""
    settings = rt.settings.delivery
    try:
        addresses = resolve_checked(claim.consumer_address, settings.allow_private_addresses)
    except HostNotResolved as exc:  # DNS may answer next time: retried within the delivery's budget
        return Attempted(claim, origin, error=DeliveryError(f"consumer address not checked: {exc}"))
    except AddressNotAllowed as exc:
        return Attempted(claim, origin, error=DeliveryRefused(f"consumer address refused: {exc}"))
    try:
        channel = rt.channel(channel_name_for(claim.consumer_address))
        request = rt.build(claim)
        if addresses:
            request = replace(request, connect_to=addresses[0])
        outcome = channel.deliver(request)
    except DeliveryError as exc:
        return Attempted(claim, origin, error=exc)
    except Exception as exc:
        log.exception("delivery %s failed unexpectedly", claim.delivery_id)
        return Attempted(claim, origin, error=DeliveryError(f"internal error: {exc!r}"))
    return Attempted(claim, origin, status_code=outcome.status_code)


@dataclass
class Recorded:
    """What a batch of outcomes changed: each recorded delivery's new state, and the origins it parked."""

    states: dict[int, str] = field(default_factory=dict)
    parked: dict[str, datetime] = field(default_factory=dict)


def record(rt: DeliveryContext, attempts: list[Attempted]) -> Recorded:
    """Write a batch of outcomes in one transaction.

    An outcome whose delivery was meanwhile claimed again by someone else (its lease expired) is not
    recorded: the conditional UPDATEs match no row, the newer attempt records itself, and neither an
    audit event nor a breaker failure is written for the stale one.
    """
    settings = rt.settings.delivery
    result = Recorded()
    sent = [item for item in attempts if item.released_until is None and item.error is None]
    # rendered before the transaction, so the writer is held for the statements only (hiem.store.turns)
    exported = {item.claim.delivery_id: audit_records.prepare(export_event(rt, item.claim)) for item in sent}
    with rt.db.session() as session:
        released: dict[tuple[datetime, str], list[store.Claim]] = {}
        for item in attempts:
            if item.released_until is not None:
                released.setdefault((item.released_until, item.released_reason), []).append(item.claim)
        for (until, reason), claims in released.items():
            store.release_many(session, claims, until, reason)
        recorded = store.record_delivered_many(session, [(item.claim, item.status_code) for item in sent])
        audit_records.add_prepared(session, [exported[item.claim.delivery_id] for item in sent
                                     if item.claim.delivery_id in recorded])
        result.states.update(dict.fromkeys(recorded, "delivered"))
        # origins in a fixed order: two processes updating the same breaker rows never deadlock
        for origin in sorted({item.origin for item in sent if item.claim.delivery_id in recorded}):
            breaker.record_success(session, origin)
        for item in sorted(attempts, key=lambda a: a.origin):
            if item.released_until is not None or item.error is None:
                continue
            error = item.error
            state = store.record_failure(session, item.claim, error=str(error), status_code=error.status_code,
                                         retryable=error.retryable, retry_after=error.retry_after, settings=settings)
            if state is None:
                continue
            result.states[item.claim.delivery_id] = state
            if error.retryable:
                parked = breaker.record_failure(session, item.origin, str(error),
                                                threshold=settings.breaker_threshold,
                                                first_park=settings.breaker_park_seconds)
                if parked is not None:
                    result.parked[item.origin] = parked
            if state == "dead":
                audit_records.add(session, export_event(rt, item.claim, EventOutcomeIndicator.SERIOUS_FAILURE,
                                                f"delivery given up: {error}"))
    return result


def export_event(rt: DeliveryContext, claim: store.Claim,
                 outcome: EventOutcomeIndicator = EventOutcomeIndicator.SUCCESS,
                 description: str | None = None) -> AuditEvent:
    """The ATNA Export event of one delivery (DICOM PS3.15 A.5.3.6: the broker sent data out)."""
    return rt.audit.exported(
        claim.manager_address, claim.consumer_address, subscription_id=claim.subscription_id,
        topic=f"{{{claim.topic_namespace}}}{claim.topic_path}",
        message_id=delivery_message_id(claim.subscription_id, claim.notification_id),
        outcome=outcome, description=description)
