"""The notification outbox and the delivery state machine.

::

    pending --claim--> in_flight --ok--> delivered
       ^                  |  \\--final error / attempts or age exhausted--> dead --redeliver--> pending
       |                  \\--retryable error--> retrying --(due: sweeper)--> pending
       +--(lease expired: sweeper or broker redelivery)-- in_flight

Every transition is a conditional UPDATE, so duplicate task messages (broker redelivery, two sweepers)
can never deliver the same row twice concurrently: the loser's UPDATE matches no row.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    DateTime,
    Integer,
    String,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.dml import Update

from hiem.clock import utcnow
from hiem.config import DeliverySettings
from hiem.store.db import Database, as_utc
from hiem.store.models import (
    Delivery,
    DeliveryState,
    FanoutState,
    Notification,
    Subscription,
    SubscriptionStatus,
    SubscriptionTopic,
)

S = DeliveryState
#: subscriptions that get deliveries created (paused ones keep theirs until resumed)
_RECEIVING = (SubscriptionStatus.ACTIVE.value, SubscriptionStatus.PAUSED.value)


@dataclass(frozen=True)
class NewNotification:
    message_id: str | None
    topic_id: int
    topic_namespace: str
    topic_path: str
    message_xml: bytes
    producer_reference: bytes
    publisher: str | None


def record_notification(session: Session, new: NewNotification) -> Notification:
    """The outbox row: the notification and its pending fan-out job, in the caller's transaction."""
    now = utcnow()
    row = Notification(
        message_id=new.message_id, topic_id=new.topic_id, topic_namespace=new.topic_namespace,
        topic_path=new.topic_path, message_xml=new.message_xml, producer_reference=new.producer_reference,
        publisher=new.publisher, received_at=now, fanout_state=FanoutState.PENDING.value,
        fanout_enqueued_at=now,
    )
    session.add(row)
    session.flush()
    return row


#: PostgreSQL advisory lock space (the first key; the topic id is the second): fan-outs per topic in turn
_TOPIC_FANOUT_LOCK = 0x68696566


def fan_out_in_order(db: Database, notification_id: int,
                     evaluate: Callable[[int, bytes, list[FilterRow]], Collection[str]] | None = None) -> list[int]:
    """Fan out ``notification_id``, and before it every older notification still pending on its topic, one
    transaction each, so a topic's notifications are numbered in the order the broker accepted them.
    Returns the ids this call fanned out (another worker may have done some meanwhile).

    ``evaluate(notification id, message, candidates)`` returns the ids of the candidates whose
    MessageContent filter matches. It runs between transactions: no lock and no turn at SQLite's writer
    is held while filters run. Without it, filtered subscriptions get nothing.
    """
    done: list[int] = []
    while True:
        with db.session() as session:
            topic = select(Notification.topic_id).where(Notification.id == notification_id).scalar_subquery()
            pending = session.execute(
                select(Notification.id, Notification.topic_id, Notification.message_xml)
                .where(Notification.topic_id == topic, Notification.fanout_state == FanoutState.PENDING.value,
                       Notification.id <= notification_id)
                .order_by(Notification.id).limit(1)).first()
            if pending is None:
                return done
            candidates = filter_candidates(session, pending.topic_id, utcnow())
        matched = evaluate(pending.id, pending.message_xml, candidates) if evaluate and candidates else ()
        with db.session() as session:
            done += fan_out(session, pending.id, matched)
        if pending.id == notification_id:
            return done


def fan_out(session: Session, notification_id: int, matched_filters: Collection[str] = ()) -> list[int]:
    """Fan out one pending notification; returns ``[notification_id]``, or ``[]`` when it is done already.

    One statement creates a pending delivery per matching subscription, numbered from the subscription's
    own counter (``last_sequence``, incremented in the same statement): nothing is loaded into Python and
    numbers are gap-free per subscription. There is no global lock:

    * fan-outs of one topic take turns (a transaction-scoped advisory lock on the topic);
    * the matching subscription rows are locked in id order, one set per transaction, so fan-outs of
      different topics that share subscribers (wildcards) wait only for the rows they share and cannot
      deadlock;
    * fan-outs over disjoint subscriber sets run side by side.

    ``matched_filters``: the subscriptions with a MessageContent filter that matched (see
    :func:`fan_out_in_order`); those with a filter that are not in it get nothing.
    """
    topic_id = session.scalar(select(Notification.topic_id).where(Notification.id == notification_id))
    if topic_id is None:
        return []
    if session.bind.dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(_TOPIC_FANOUT_LOCK, topic_id)))
    notification = session.scalars(select(Notification).where(
        Notification.id == notification_id, Notification.fanout_state == FanoutState.PENDING.value)).first()
    if notification is None:  # a redelivered task, after the first one finished
        return []
    now = utcnow()
    _number_and_insert(session, notification, now, list(matched_filters))
    notification.matched = session.scalar(select(func.count()).select_from(Delivery).where(
        Delivery.notification_id == notification.id)) or 0
    notification.fanout_state = FanoutState.DONE.value
    notification.fanout_done_at = now
    return [notification.id]


def _receiving(topic_id: int, now: datetime):  # type: ignore[no-untyped-def]
    return and_(SubscriptionTopic.topic_id == topic_id, Subscription.status.in_(_RECEIVING),
                or_(Subscription.termination_time.is_(None), Subscription.termination_time > now))


@dataclass(frozen=True)
class FilterRow:
    subscription_id: str
    expression: str
    namespaces: dict[str, str]
    consumer_address: str
    manager_address: str
    topic_expression: str


def filter_candidates(session: Session, topic_id: int, now: datetime) -> list[FilterRow]:
    """The receiving subscriptions on a topic that have a MessageContent filter."""
    rows = session.execute(
        select(Subscription.id, Subscription.message_filter, Subscription.message_filter_namespaces,
               Subscription.consumer_address, Subscription.manager_address, Subscription.topic_expression)
        .join(SubscriptionTopic, SubscriptionTopic.subscription_id == Subscription.id)
        .where(_receiving(topic_id, now), Subscription.message_filter.is_not(None))
        .order_by(Subscription.id)).all()
    return [FilterRow(sid, expression, namespaces or {}, consumer, manager, topic)
            for sid, expression, namespaces, consumer, manager, topic in rows]


def note_filter_failure(session: Session, subscription_id: str, error: str, now: datetime) -> None:
    session.execute(update(Subscription).where(Subscription.id == subscription_id).values(
        filter_failures=Subscription.filter_failures + 1, filter_failed_at=now, filter_error=error[:512]))


def _number_and_insert(session: Session, notification: Notification, now: datetime, filtered: list[str]) -> None:
    when = bindparam("now", now, type_=DateTime(timezone=True))
    chosen = (select(Subscription.id)
              .join(SubscriptionTopic, SubscriptionTopic.subscription_id == Subscription.id)
              .where(_receiving(notification.topic_id, when),
                     or_(Subscription.message_filter.is_(None),
                         Subscription.id.in_(bindparam("filtered", filtered, expanding=True)))))
    columns = ["notification_id", "subscription_id", "sequence", "state", "attempts", "created_at", "updated_at"]

    def rows(numbered):  # type: ignore[no-untyped-def]
        return select(
            literal(notification.id, Integer), numbered.c.id, numbered.c.last_sequence,
            # a paused subscription's deliveries are held from the start: nothing can send them early
            case((numbered.c.pull_point_id.is_not(None), literal(S.STORED.value, String)),
                 (numbered.c.status == SubscriptionStatus.PAUSED.value, literal(S.HELD.value, String)),
                 else_=literal(S.PENDING.value, String)),
            literal(0, Integer), when, when)

    if session.bind.dialect.name == "postgresql":
        # lock in id order, then count up and insert in the same statement
        locked = chosen.order_by(Subscription.id).with_for_update(of=Subscription).cte("locked")
        numbered = (update(Subscription).where(Subscription.id == locked.c.id)
                    .values(last_sequence=Subscription.last_sequence + 1)
                    .returning(Subscription.id, Subscription.last_sequence, Subscription.status,
                               Subscription.pull_point_id).cte("numbered"))
        session.execute(postgresql.insert(Delivery).from_select(columns, rows(numbered)))
        return
    # SQLite has one writer at a time and no UPDATE in a WITH clause: two statements see the same rows
    ids = chosen.scalar_subquery()
    session.execute(update(Subscription).where(Subscription.id.in_(ids))
                    .values(last_sequence=Subscription.last_sequence + 1))
    numbered = (select(Subscription.id, Subscription.last_sequence, Subscription.status, Subscription.pull_point_id)
                .where(Subscription.id.in_(ids)).subquery("numbered"))
    session.execute(sqlite.insert(Delivery).from_select(columns, rows(numbered)))


def matched_count(session: Session, notification_id: int) -> int:
    """How many deliveries the notification's fan-out created."""
    return session.scalar(select(Notification.matched).where(Notification.id == notification_id)) or 0


def next_unqueued(session: Session, notification_id: int, after_id: int, limit: int) -> list[int]:
    """Keyset page of a notification's deliveries not yet handed to the broker."""
    return list(session.scalars(
        select(Delivery.id)
        .where(Delivery.notification_id == notification_id, Delivery.id > after_id,
               Delivery.state == S.PENDING.value, Delivery.enqueued_at.is_(None))
        .order_by(Delivery.id).limit(limit)
    ))


def mark_enqueued(session: Session, ids: list[int]) -> None:
    if ids:
        session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(enqueued_at=utcnow()))


@dataclass(frozen=True)
class Claim:
    """Everything a worker needs to send one delivery, read in the claiming transaction."""

    delivery_id: int
    attempt: int
    notification_id: int
    subscription_id: str
    consumer_address: str
    consumer_reference_parameters: bytes
    manager_address: str
    dialect: str
    soap_version: str
    sequence: int | None
    topic_namespace: str
    topic_path: str
    message_xml: bytes
    producer_reference: bytes
    created_at: datetime


def claim_many(session: Session, delivery_ids: list[int], lease_seconds: float,
               ordered: bool = False) -> list[Claim]:
    """Take deliveries for one attempt each: one conditional UPDATE for the whole batch, then one read of
    their subscriptions and one of their notifications (each message once, however many deliveries).

    A delivery is skipped (left for later, no attempt spent) when someone else holds it, when a resumed
    subscription's held backlog must go first (the resume task sends it after that backlog), or, with
    ``ordered``, while an earlier notification for the same subscription still waits to be sent (it is
    enqueued when its predecessor ends). Deliveries of a subscription that was paused meanwhile go back to
    held; those of an ended one are cancelled.
    """
    if not delivery_ids:
        return []
    now = utcnow()
    taken = session.execute(_CLAIM[ordered], {"ids": list(delivery_ids), "now": now,
                                               "lease_end": now + timedelta(seconds=lease_seconds)}).all()
    if not taken:
        return []
    subscriptions = {row.id: row for row in session.execute(
        _CLAIMED_SUBSCRIPTIONS, {"ids": list({row.subscription_id for row in taken})})}
    notifications = {row.id: row for row in session.execute(
        _CLAIMED_NOTIFICATIONS, {"ids": list({row.notification_id for row in taken})})}
    claims: list[Claim] = []
    held: list[int] = []
    cancelled: dict[str, list[int]] = {}
    for row in sorted(taken, key=lambda r: r.id):
        subscription = subscriptions[row.subscription_id]
        ended = as_utc(subscription.termination_time)
        if subscription.status == SubscriptionStatus.PAUSED.value:
            held.append(row.id)
        elif subscription.status != SubscriptionStatus.ACTIVE.value or (ended is not None and ended <= now):
            reason = f"subscription {subscription.status if ended is None or ended > now else 'expired'}"
            cancelled.setdefault(reason, []).append(row.id)
        else:
            notification = notifications[row.notification_id]
            claims.append(Claim(
                delivery_id=row.id, attempt=row.attempts, notification_id=row.notification_id,
                subscription_id=subscription.id, consumer_address=subscription.consumer_address,
                consumer_reference_parameters=subscription.consumer_reference_parameters,
                manager_address=subscription.manager_address, dialect=subscription.dialect,
                soap_version=subscription.soap_version, sequence=row.sequence,
                topic_namespace=notification.topic_namespace, topic_path=notification.topic_path,
                message_xml=notification.message_xml, producer_reference=notification.producer_reference,
                created_at=as_utc(row.created_at),
            ))
    if held:
        session.execute(update(Delivery).where(Delivery.id.in_(held)).values(
            state=S.HELD.value, attempts=Delivery.attempts - 1, lease_until=None, updated_at=now))
    for reason, ids in cancelled.items():
        session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(
            state=S.CANCELLED.value, last_error=reason, lease_until=None, updated_at=now))
    return claims


def _claim_statement(ordered: bool) -> Update:
    """claim_many's conditional UPDATE, built once: a Core statement with an expanding IN is compiled once
    and cached, where building the ORM statement anew for every batch cost a worker more CPU than the
    UPDATE itself (docs/performance.md, "Where the time goes")."""
    deliveries, other = Delivery.__table__, Delivery.__table__.alias("other")
    now = bindparam("now", type_=DateTime(timezone=True))
    blockers = [and_(other.c.state == S.HELD.value, other.c.sequence < deliveries.c.sequence)]
    if ordered:
        blockers.append(and_(other.c.notification_id < deliveries.c.notification_id,
                             other.c.state.in_((S.PENDING.value, S.IN_FLIGHT.value, S.RETRYING.value))))
    blocked = exists().where(other.c.subscription_id == deliveries.c.subscription_id, or_(*blockers))
    return (update(deliveries)
            .where(deliveries.c.id.in_(bindparam("ids", expanding=True)), ~blocked, or_(
                deliveries.c.state == S.PENDING.value,
                and_(deliveries.c.state == S.IN_FLIGHT.value, deliveries.c.lease_until < now)))
            .values(state=S.IN_FLIGHT.value, attempts=deliveries.c.attempts + 1, updated_at=now,
                    lease_until=bindparam("lease_end", type_=DateTime(timezone=True)))
            .returning(deliveries.c.id, deliveries.c.attempts, deliveries.c.notification_id,
                       deliveries.c.subscription_id, deliveries.c.sequence, deliveries.c.created_at))


_CLAIM = {False: _claim_statement(False), True: _claim_statement(True)}
_CLAIMED_SUBSCRIPTIONS = (
    select(Subscription.id, Subscription.status, Subscription.termination_time, Subscription.consumer_address,
           Subscription.consumer_reference_parameters, Subscription.manager_address, Subscription.dialect,
           Subscription.soap_version)
    .where(Subscription.id.in_(bindparam("ids", expanding=True))))
_CLAIMED_NOTIFICATIONS = (
    select(Notification.id, Notification.topic_namespace, Notification.topic_path, Notification.message_xml,
           Notification.producer_reference)
    .where(Notification.id.in_(bindparam("ids", expanding=True))))


def release_many(session: Session, claims: list[Claim], until: datetime, reason: str) -> None:
    """Give claimed deliveries back without spending an attempt (consumer parked, or busy for too long)."""
    if claims:
        session.execute(
            update(Delivery)
            .where(tuple_(Delivery.id, Delivery.attempts).in_([(c.delivery_id, c.attempt) for c in claims]),
                   Delivery.state == S.IN_FLIGHT.value)
            .values(state=S.RETRYING.value, attempts=Delivery.attempts - 1, next_attempt_at=until,
                    lease_until=None, updated_at=utcnow(), last_error=reason[:500])
        )


def next_in_order(session: Session, subscription_id: str) -> int | None:
    """Ordered delivery: the oldest pending delivery of a subscription (to enqueue after one completes)."""
    return session.scalar(select(Delivery.id).where(
        Delivery.subscription_id == subscription_id, Delivery.state == S.PENDING.value)
        .order_by(Delivery.notification_id).limit(1))


def record_delivered_many(session: Session, delivered: list[tuple[Claim, int | None]]) -> set[int]:
    """Record successful attempts ``(claim, HTTP status)``: one UPDATE per distinct status (normally one).

    Returns the ids that were still this attempt's to record: a delivery whose lease expired and that
    another worker claimed again meanwhile is that worker's to record (and audit).
    """
    now = utcnow()
    recorded: set[int] = set()
    by_status: dict[int | None, list[tuple[int, int]]] = {}
    for claim_, status in delivered:
        by_status.setdefault(status, []).append((claim_.delivery_id, claim_.attempt))
    for status, keys in by_status.items():
        recorded.update(session.scalars(_RECORD_DELIVERED, {"keys": keys, "now": now, "status": status}))
    return recorded


def _record_delivered_statement() -> Update:
    """record_delivered_many's UPDATE, built once (see :func:`_claim_statement`)."""
    deliveries = Delivery.__table__
    now = bindparam("now", type_=DateTime(timezone=True))
    return (update(deliveries)
            .where(tuple_(deliveries.c.id, deliveries.c.attempts).in_(bindparam("keys", expanding=True)),
                   deliveries.c.state == S.IN_FLIGHT.value)
            .values(state=S.DELIVERED.value, delivered_at=now, updated_at=now,
                    last_status=bindparam("status", type_=Integer), lease_until=None, last_error=None)
            .returning(deliveries.c.id))


_RECORD_DELIVERED = _record_delivered_statement()


def backoff_seconds(attempt: int, settings: DeliverySettings, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter (AWS architecture blog's "full jitter"), floored by Retry-After."""
    ceiling = min(settings.backoff_max, settings.backoff_base * (2 ** max(0, attempt - 1)))
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.backoff_max))
    return delay


def record_failure(session: Session, claim_: Claim, *, error: str, status_code: int | None, retryable: bool,
                   retry_after: float | None, settings: DeliverySettings) -> str | None:
    """Record a failed attempt; returns the new state (retrying or dead), or None when the attempt was
    no longer this claim's to record (its lease expired and the delivery was claimed again)."""
    now = utcnow()
    age = (now - claim_.created_at).total_seconds()
    exhausted = claim_.attempt >= settings.max_attempts or age >= settings.max_age_seconds
    state = S.RETRYING if retryable and not exhausted else S.DEAD
    if state is S.DEAD and retryable:
        error = f"{error} (gave up after {claim_.attempt} attempts, {int(age)} s)"
    next_at = now + timedelta(seconds=backoff_seconds(claim_.attempt, settings, retry_after)) \
        if state is S.RETRYING else None
    recorded = session.execute(
        update(Delivery)
        .where(Delivery.id == claim_.delivery_id, Delivery.state == S.IN_FLIGHT.value,
               Delivery.attempts == claim_.attempt)
        .values(state=state.value, last_error=error[:500], last_status=status_code, updated_at=now,
                next_attempt_at=next_at, lease_until=None)
    ).rowcount
    return state.value if recorded == 1 else None


# -- the sweeper's queries ---------------------------------------------------------------------------------
def stale_fanouts(session: Session, older_than: datetime, limit: int) -> list[int]:
    """Notifications whose fan-out was queued long ago and never finished (lost message, crash)."""
    query = (select(Notification.id)
             .where(Notification.fanout_state == FanoutState.PENDING.value,
                    or_(Notification.fanout_enqueued_at.is_(None), Notification.fanout_enqueued_at < older_than))
             .order_by(Notification.id).limit(limit))
    ids = list(session.scalars(_skip_locked(session, query)))
    if ids:
        session.execute(update(Notification).where(Notification.id.in_(ids)).values(fanout_enqueued_at=utcnow()))
    return ids


def requeue_due(session: Session, older_than: datetime, limit: int) -> list[int]:
    """Deliveries to hand to the broker again, moved to pending with a fresh enqueued_at:

    * pending but queued before ``older_than`` (or never queued and created before it),
    * in_flight whose lease expired (the worker died mid-attempt),
    * retrying whose next attempt is due.
    """
    now = utcnow()
    query = (select(Delivery.id).where(or_(
        and_(Delivery.state == S.PENDING.value,
             or_(Delivery.enqueued_at < older_than,
                 and_(Delivery.enqueued_at.is_(None), Delivery.created_at < older_than)))
        , and_(Delivery.state == S.IN_FLIGHT.value, Delivery.lease_until < now)
        , and_(Delivery.state == S.RETRYING.value, Delivery.next_attempt_at <= now)
    )).order_by(Delivery.id).limit(limit))
    ids = list(session.scalars(_skip_locked(session, query)))
    if ids:
        session.execute(update(Delivery).where(Delivery.id.in_(ids), Delivery.state != S.IN_FLIGHT.value)
                        .values(state=S.PENDING.value, enqueued_at=now, updated_at=now))
        session.execute(update(Delivery).where(Delivery.id.in_(ids), Delivery.state == S.IN_FLIGHT.value)
                        .values(enqueued_at=now))
    return ids


def redeliver(session: Session, ids: list[int] | None = None) -> list[int]:
    """Give dead deliveries (all of them when ``ids`` is None) a fresh attempt budget, due now.

    They become ``retrying`` with ``next_attempt_at = now``: the sweeper of whichever process runs it
    (embedded or distributed) hands them to a worker within one sweep interval.
    """
    query = select(Delivery.id).where(Delivery.state == S.DEAD.value)
    if ids is not None:
        query = query.where(Delivery.id.in_(ids))
    found = list(session.scalars(query))
    if found:
        now = utcnow()
        session.execute(update(Delivery).where(Delivery.id.in_(found)).values(
            state=S.RETRYING.value, attempts=0, created_at=now, updated_at=now, next_attempt_at=now))
    return found


def list_deliveries(session: Session, state: str | None = None, limit: int = 200) -> list[Delivery]:
    query = select(Delivery).order_by(Delivery.id.desc()).limit(limit)
    if state:
        query = query.where(Delivery.state == state)
    return list(session.scalars(query))


def _skip_locked(session: Session, query):  # type: ignore[no-untyped-def]
    # PostgreSQL: two sweepers never pick the same rows; SQLite serializes writers anyway.
    if session.bind.dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True)
    return query


def held_for(session: Session, subscription_id: str) -> list[int]:
    """On resume: the subscription's held deliveries, in sequence order (still held: see :func:`unhold`).

    They are stamped as handed to a drain now: :func:`stalled_drains` finds them again only if nothing
    happens to the subscription's deliveries for a whole lease.
    """
    ids = list(session.scalars(select(Delivery.id).where(
        Delivery.subscription_id == subscription_id, Delivery.state == S.HELD.value).order_by(Delivery.sequence)))
    if ids:
        session.execute(update(Delivery).where(Delivery.id.in_(ids)).values(updated_at=utcnow()))
    return ids


def stalled_drains(session: Session, older_than: datetime, limit: int) -> dict[str, list[int]]:
    """Active subscriptions that still have held deliveries and whose deliveries all stood still since
    ``older_than``, each with its held deliveries in sequence order (stamped, as by :func:`held_for`).

    That is a resume whose in-order drain was lost: its task failed or was never enqueued after the
    resume committed. A drain at work touches a delivery at every step, so it is not taken for one.
    """
    other = aliased(Delivery)
    moved = exists().where(other.subscription_id == Delivery.subscription_id, other.updated_at >= older_than)
    subscriptions = list(session.scalars(
        select(Delivery.subscription_id).distinct()
        .join(Subscription, Subscription.id == Delivery.subscription_id)
        .where(Delivery.state == S.HELD.value, Subscription.status == SubscriptionStatus.ACTIVE.value, ~moved)
        .limit(limit)))
    return {subscription: held_for(session, subscription) for subscription in subscriptions}


def subscription_of(session: Session, delivery_id: int) -> str | None:
    return session.scalar(select(Delivery.subscription_id).where(Delivery.id == delivery_id))


def pending_for(session: Session, subscription_id: str) -> list[int]:
    """A subscription's pending deliveries in sequence order (what waited behind a resumed backlog)."""
    return list(session.scalars(select(Delivery.id).where(
        Delivery.subscription_id == subscription_id, Delivery.state == S.PENDING.value).order_by(Delivery.sequence)))


def unhold(session: Session, delivery_id: int) -> None:
    """Make one held delivery sendable, right before the in-order resume task sends it."""
    session.execute(update(Delivery).where(Delivery.id == delivery_id, Delivery.state == S.HELD.value).values(
        state=S.PENDING.value, enqueued_at=utcnow(), updated_at=utcnow()))


@dataclass(frozen=True)
class Replayed:
    sequence: int
    notification_id: int
    topic_namespace: str
    topic_path: str
    message_xml: bytes
    producer_reference: bytes


def replay_since(session: Session, subscription_id: str, after: int, limit: int) -> tuple[int | None, list[Replayed]]:
    """(oldest retained sequence, the notifications after ``after`` in sequence order, at most ``limit``)."""
    oldest = session.scalar(select(func.min(Delivery.sequence)).where(Delivery.subscription_id == subscription_id))
    rows = session.execute(
        select(Delivery.sequence, Notification.id, Notification.topic_namespace, Notification.topic_path,
               Notification.message_xml, Notification.producer_reference)
        .join(Notification, Notification.id == Delivery.notification_id)
        .where(Delivery.subscription_id == subscription_id, Delivery.sequence > after)
        .order_by(Delivery.sequence).limit(limit)).all()
    return oldest, [Replayed(*row) for row in rows]


def latest_on_topic(session: Session, topic_id: int) -> Notification | None:
    """GetCurrentMessage: the last notification the broker accepted on a topic."""
    return session.scalar(select(Notification).where(Notification.topic_id == topic_id)
                          .order_by(Notification.id.desc()).limit(1))


def subscriptions_of(session: Session, delivery_ids: list[int]) -> list[str]:
    """The distinct subscriptions of some deliveries."""
    return list(session.scalars(select(Delivery.subscription_id).where(Delivery.id.in_(delivery_ids)).distinct()))
