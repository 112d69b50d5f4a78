"""Pull points in the database: a pull point owns subscriptions whose deliveries wait as ``stored`` rows
until GetMessages takes them, oldest first. Bounded by count and age: the oldest are dropped (audited)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from hiem.clock import utcnow
from hiem.store.deliveries import Replayed
from hiem.store.models import Delivery, DeliveryState, Notification, PullPoint, Subscription, SubscriptionStatus

S = DeliveryState


def create(session: Session, pull_point_id: str, organization: str | None) -> PullPoint:
    row = PullPoint(id=pull_point_id, created_at=utcnow(), organization=organization)
    session.add(row)
    return row


def active(session: Session, pull_point_id: str) -> PullPoint | None:
    row = session.get(PullPoint, pull_point_id)
    return row if row is not None and row.destroyed_at is None else None


def destroy(session: Session, pull_point_id: str) -> bool:
    """Destroy a pull point: its subscriptions end and whatever was still stored is dropped."""
    now = utcnow()
    if session.execute(update(PullPoint).where(PullPoint.id == pull_point_id, PullPoint.destroyed_at.is_(None))
                       .values(destroyed_at=now)).rowcount != 1:
        return False
    subs = select(Subscription.id).where(Subscription.pull_point_id == pull_point_id).scalar_subquery()
    session.execute(update(Subscription).where(Subscription.pull_point_id == pull_point_id,
                                               Subscription.status.in_(("active", "paused")))
                    .values(status=SubscriptionStatus.UNSUBSCRIBED.value, terminated_at=now))
    session.execute(update(Delivery).where(Delivery.subscription_id.in_(subs), Delivery.state == S.STORED.value)
                    .values(state=S.DROPPED.value, last_error="pull point destroyed", updated_at=now))
    return True


def take(session: Session, pull_point_id: str, limit: int) -> list[tuple[str, str, str, Replayed]]:
    """Up to ``limit`` stored messages, oldest first, marked delivered: (subscription id, manager address,
    dialect, message). The UPDATE is conditional, so two concurrent GetMessages never both return one."""
    rows = session.execute(
        select(Delivery.id, Subscription.id, Subscription.manager_address, Subscription.dialect, Delivery.sequence,
               Notification.id, Notification.topic_namespace, Notification.topic_path, Notification.message_xml,
               Notification.producer_reference)
        .join(Subscription, Subscription.id == Delivery.subscription_id)
        .join(Notification, Notification.id == Delivery.notification_id)
        .where(Subscription.pull_point_id == pull_point_id, Delivery.state == S.STORED.value)
        .order_by(Notification.id, Delivery.id).limit(limit)).all()
    now = utcnow()
    taken = []
    for delivery_id, sub_id, manager, dialect, sequence, *message in rows:
        if session.execute(update(Delivery).where(Delivery.id == delivery_id, Delivery.state == S.STORED.value)
                           .values(state=S.DELIVERED.value, delivered_at=now, updated_at=now,
                                   attempts=1)).rowcount == 1:
            taken.append((sub_id, manager, dialect, Replayed(sequence or 0, *message)))
    return taken


def enforce_bounds(session: Session, max_messages: int, max_age: timedelta) -> list[Delivery]:
    """Drop stored messages beyond a pull point's bounds (oldest first); returns them for the audit trail."""
    now = utcnow()
    dropped: list[Delivery] = []
    too_old = list(session.scalars(select(Delivery).where(Delivery.state == S.STORED.value,
                                                          Delivery.created_at < now - max_age)))
    dropped += too_old
    counts = session.execute(
        select(Subscription.pull_point_id, func.count()).join(Delivery, Delivery.subscription_id == Subscription.id)
        .where(Delivery.state == S.STORED.value, Subscription.pull_point_id.is_not(None))
        .group_by(Subscription.pull_point_id).having(func.count() > max_messages)).all()
    for pull_point_id, count in counts:
        dropped += list(session.scalars(
            select(Delivery).join(Subscription, Subscription.id == Delivery.subscription_id)
            .where(Subscription.pull_point_id == pull_point_id, Delivery.state == S.STORED.value)
            .order_by(Delivery.notification_id, Delivery.id).limit(count - max_messages)))
    for delivery in {d.id: d for d in dropped}.values():
        delivery.state, delivery.updated_at = S.DROPPED.value, now
        delivery.last_error = "dropped from the pull point: retention bound (count or age) reached"
    return list({d.id: d for d in dropped}.values())


__all__ = ["active", "create", "destroy", "enforce_bounds", "take"]
