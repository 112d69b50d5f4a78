"""Subscriptions: creating them with their compiled topic set, ending them, listing them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from hiem.clock import utcnow
from hiem.store.models import Subscription, SubscriptionStatus, SubscriptionTopic


@dataclass(frozen=True)
class NewSubscription:
    id: str
    consumer_address: str
    consumer_reference_parameters: bytes
    manager_address: str
    topic_expression: str
    dialect: str
    topic_namespaces: dict[str, str]
    is_wildcard: bool
    soap_version: str
    created_at: datetime
    termination_time: datetime | None = None
    message_filter: str | None = None
    message_filter_namespaces: dict[str, str] | None = None
    pull_point_id: str | None = None
    heartbeat_seconds: float | None = None
    subscriber: str | None = None
    organization: str | None = None


def create(session: Session, new: NewSubscription, topic_ids: Iterable[int]) -> None:
    """Insert the subscription and its compiled topic set.

    Subscribe's hot path: two Core INSERTs on the tables with plain parameter dicts, compiled once and
    cached by SQLAlchemy (building the statement with ``.values()`` cost more than the database did).
    """
    session.execute(_INSERT_SUBSCRIPTION, {
        "id": new.id, "consumer_address": new.consumer_address,
        "consumer_reference_parameters": new.consumer_reference_parameters,
        "manager_address": new.manager_address, "topic_expression": new.topic_expression, "dialect": new.dialect,
        "topic_namespaces": new.topic_namespaces, "is_wildcard": new.is_wildcard, "soap_version": new.soap_version,
        "status": SubscriptionStatus.ACTIVE.value, "subscriber": new.subscriber, "organization": new.organization,
        "created_at": new.created_at, "termination_time": new.termination_time,
        "message_filter": new.message_filter, "message_filter_namespaces": new.message_filter_namespaces or {},
        "pull_point_id": new.pull_point_id, "heartbeat_seconds": new.heartbeat_seconds,
        "next_heartbeat_at": new.created_at + timedelta(seconds=new.heartbeat_seconds)
        if new.heartbeat_seconds else None,
    })
    session.execute(_INSERT_TOPICS, [{"subscription_id": new.id, "topic_id": topic_id}
                                     for topic_id in sorted(set(topic_ids))])


_INSERT_SUBSCRIPTION = insert(Subscription.__table__)
_INSERT_TOPICS = insert(SubscriptionTopic.__table__)


def get(session: Session, subscription_id: str) -> Subscription | None:
    return session.get(Subscription, subscription_id)


def end(session: Session, subscription_id: str, status: SubscriptionStatus) -> Subscription | None:
    """End an active subscription (kept as a record); None when it is unknown or already ended.

    The conditional UPDATE makes two concurrent Unsubscribes safe: exactly one of them wins.
    """
    now = utcnow()
    result = session.execute(
        update(Subscription)
        .where(Subscription.id == subscription_id,
               Subscription.status.in_((SubscriptionStatus.ACTIVE.value, SubscriptionStatus.PAUSED.value)))
        .values(status=status.value, terminated_at=now)
    )
    if result.rowcount != 1:
        return None
    return session.get(Subscription, subscription_id)


def _change(session: Session, subscription_id: str, allowed: tuple[str, ...], **values: object) -> bool:
    result = session.execute(update(Subscription).where(
        Subscription.id == subscription_id, Subscription.status.in_(allowed)).values(**values))
    return result.rowcount == 1


def renew(session: Session, subscription_id: str, termination: datetime | None) -> bool:
    return _change(session, subscription_id, (SubscriptionStatus.ACTIVE.value, SubscriptionStatus.PAUSED.value),
                   termination_time=termination)


def pause(session: Session, subscription_id: str) -> bool:
    """Pausing a paused subscription is fine (idempotent); an ended one is not."""
    return _change(session, subscription_id, (SubscriptionStatus.ACTIVE.value, SubscriptionStatus.PAUSED.value),
                   status=SubscriptionStatus.PAUSED.value)


def resume(session: Session, subscription_id: str) -> bool:
    return _change(session, subscription_id, (SubscriptionStatus.ACTIVE.value, SubscriptionStatus.PAUSED.value),
                   status=SubscriptionStatus.ACTIVE.value)


def expire_due(session: Session, limit: int = 1000) -> list[Subscription]:
    """End subscriptions whose termination time has passed; returns them (for the audit trail)."""
    now = utcnow()
    due = list(session.scalars(select(Subscription).where(
        Subscription.status.in_((SubscriptionStatus.ACTIVE.value, SubscriptionStatus.PAUSED.value)),
        Subscription.termination_time.is_not(None), Subscription.termination_time <= now).limit(limit)))
    for row in due:
        row.status, row.terminated_at = SubscriptionStatus.EXPIRED.value, now
    return due


def heartbeats_due(session: Session, limit: int = 500) -> list[Subscription]:
    """Active subscriptions whose heartbeat is due (an indexed lookup), each moved to its next slot."""
    now = utcnow()
    due = list(session.scalars(select(Subscription).where(
        Subscription.status == SubscriptionStatus.ACTIVE.value, Subscription.next_heartbeat_at <= now)
        .order_by(Subscription.next_heartbeat_at).limit(limit)))
    for row in due:
        row.next_heartbeat_at = now + timedelta(seconds=row.heartbeat_seconds or 0)
    return due


def list_subscriptions(session: Session, status: str | None = None, limit: int = 1000) -> list[Subscription]:
    query = select(Subscription).order_by(Subscription.created_at).limit(limit)
    if status:
        query = query.where(Subscription.status == status)
    return list(session.scalars(query))


def active_wildcards(session: Session) -> list[Subscription]:
    return list(session.scalars(select(Subscription).where(
        Subscription.status == SubscriptionStatus.ACTIVE.value, Subscription.is_wildcard.is_(True))))


def add_topics(session: Session, subscription_id: str, topic_ids: Iterable[int]) -> int:
    """Extend a subscription's compiled topic set (after new topics were loaded); returns rows added."""
    have = set(session.scalars(select(SubscriptionTopic.topic_id).where(
        SubscriptionTopic.subscription_id == subscription_id)))
    new = set(topic_ids) - have
    session.add_all(SubscriptionTopic(subscription_id=subscription_id, topic_id=t) for t in new)
    return len(new)
