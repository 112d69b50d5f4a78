"""Read-only queries behind the console pages (topics, subscriptions, notifications, dead letters).

Each returns plain dataclasses or ORM rows read inside the caller's session, so templates never trigger
lazy loads after the transaction ends. Lists are bounded: a console page is for reading, not export.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from hiem import addressing, ns
from hiem.store import breaker
from hiem.store.models import (
    Consumer,
    Delivery,
    DeliveryState,
    Notification,
    Subscription,
    SubscriptionStatus,
    SubscriptionTopic,
    TopicNamespaceRow,
    TopicRow,
)
from hiem.wsn import messages

PAGE = 200


# -- topics -------------------------------------------------------------------------------------------------
@dataclass
class TopicNode:
    id: int
    name: str
    path: str
    active: int
    children: list[TopicNode] = field(default_factory=list)


@dataclass
class TopicTree:
    uri: str
    name: str | None
    roots: list[TopicNode]


def topic_trees(session: Session) -> list[TopicTree]:
    """Every namespace's tree with, per node, the active subscriptions whose compiled topics include it."""
    active = dict(session.execute(
        select(SubscriptionTopic.topic_id, func.count())
        .join(Subscription, Subscription.id == SubscriptionTopic.subscription_id)
        .where(Subscription.status == SubscriptionStatus.ACTIVE.value)
        .group_by(SubscriptionTopic.topic_id)).all())
    trees = {ns.id: TopicTree(ns.uri, ns.name, []) for ns in
             session.scalars(select(TopicNamespaceRow).order_by(TopicNamespaceRow.uri))}
    nodes: dict[int, TopicNode] = {}
    rows = session.scalars(select(TopicRow).order_by(TopicRow.namespace_id, TopicRow.path)).all()
    for row in rows:
        nodes[row.id] = TopicNode(row.id, row.name, row.path, int(active.get(row.id, 0)))
    for row in rows:
        parent = nodes.get(row.parent_id) if row.parent_id is not None else None
        (parent.children if parent else trees[row.namespace_id].roots).append(nodes[row.id])
    return list(trees.values())


# -- subscriptions ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SubscriptionFilter:
    topic: str = ""          # substring of the topic expression
    topic_id: int | None = None  # a node of the topic tree (the compiled topic set includes it)
    organization: str = ""
    consumer: str = ""
    status: str = ""


def find_subscriptions(session: Session, f: SubscriptionFilter, limit: int = PAGE) -> list[Subscription]:
    query = select(Subscription).order_by(Subscription.created_at.desc()).limit(limit)
    if f.topic:
        query = query.where(Subscription.topic_expression.contains(f.topic, autoescape=True))
    if f.topic_id is not None:
        query = query.where(Subscription.id.in_(
            select(SubscriptionTopic.subscription_id).where(SubscriptionTopic.topic_id == f.topic_id)))
    if f.organization:
        query = query.where(or_(Subscription.organization.contains(f.organization, autoescape=True),
                                Subscription.subscriber.contains(f.organization, autoescape=True)))
    if f.consumer:
        query = query.where(Subscription.consumer_address.contains(f.consumer, autoescape=True))
    if f.status:
        query = query.where(Subscription.status == f.status)
    return list(session.scalars(query))


def topic_label(session: Session, topic_id: int) -> str | None:
    return session.scalar(select(TopicRow.path).where(TopicRow.id == topic_id))


@dataclass(frozen=True)
class DeliveryRow:
    delivery: Delivery
    topic_path: str
    received_at: datetime
    consumer_address: str


def subscription_eprs(subscription: Subscription) -> tuple[str, str]:
    """(SubscriptionReference, ConsumerReference) as pretty XML: what the subscriber holds and gave us."""
    reference = messages.subscription_reference(subscription.manager_address, subscription.id)
    consumer = addressing.EndpointReference(subscription.consumer_address,
                                            subscription.consumer_reference_parameters or b"")
    nsmap = {"wsnt": ns.WSNT, "wsa": ns.WSA}
    first, second = (etree.tostring(addressing.epr_element(ns.qname(ns.WSNT, tag), epr, nsmap), pretty_print=True,
                                    encoding="unicode")
                     for tag, epr in (("SubscriptionReference", reference), ("ConsumerReference", consumer)))
    return first, second


def deliveries_of(session: Session, subscription_id: str | None = None, notification_id: int | None = None,
                  state: str | None = None, consumer: str | None = None, limit: int = 50) -> list[DeliveryRow]:
    query = (select(Delivery, Notification.topic_path, Notification.received_at, Subscription.consumer_address)
             .join(Notification, Notification.id == Delivery.notification_id)
             .join(Subscription, Subscription.id == Delivery.subscription_id)
             .order_by(Delivery.id.desc()).limit(limit))
    if subscription_id is not None:
        query = query.where(Delivery.subscription_id == subscription_id)
    if notification_id is not None:
        query = query.where(Delivery.notification_id == notification_id)
    if state:
        query = query.where(Delivery.state == state)
    if consumer:
        query = query.where(Subscription.consumer_address == consumer)
    return [DeliveryRow(*row) for row in session.execute(query)]


# -- notifications ------------------------------------------------------------------------------------------
FAILING = (DeliveryState.RETRYING.value,)


@dataclass(frozen=True)
class FanoutProgress:
    """Where a notification's deliveries are; ``waiting`` is everything not yet final nor failing (pending,
    in flight, held for a paused subscription, and any state added later)."""

    notification: Notification
    delivered: int
    failing: int
    dead: int
    waiting: int
    cancelled: int

    @property
    def matched(self) -> int:
        return self.notification.matched


def recent_notifications(session: Session, limit: int = 50) -> list[FanoutProgress]:
    rows = list(session.scalars(select(Notification).order_by(Notification.id.desc()).limit(limit)))
    counts: dict[int, dict[str, int]] = {row.id: {} for row in rows}
    if rows:
        for nid, state, count in session.execute(
                select(Delivery.notification_id, Delivery.state, func.count())
                .where(Delivery.notification_id.in_(list(counts))).group_by(Delivery.notification_id, Delivery.state)):
            counts[nid][state] = int(count)
    result = []
    for row in rows:
        c = counts[row.id]
        delivered, failing = c.get(DeliveryState.DELIVERED.value, 0), sum(c.get(s, 0) for s in FAILING)
        dead, cancelled = c.get(DeliveryState.DEAD.value, 0), c.get(DeliveryState.CANCELLED.value, 0)
        waiting = sum(c.values()) - delivered - failing - dead - cancelled
        result.append(FanoutProgress(row, delivered, failing, dead, waiting, cancelled))
    return result


# -- dead letters and parked consumers ----------------------------------------------------------------------
@dataclass(frozen=True)
class DeadByConsumer:
    consumer_address: str
    count: int
    last_error: str | None
    latest: datetime


def dead_by_consumer(session: Session, limit: int = PAGE) -> list[DeadByConsumer]:
    latest = func.max(Delivery.updated_at)
    rows = session.execute(
        select(Subscription.consumer_address, func.count(), latest, func.max(Delivery.id))
        .join(Subscription, Subscription.id == Delivery.subscription_id)
        .where(Delivery.state == DeliveryState.DEAD.value)
        .group_by(Subscription.consumer_address).order_by(latest.desc()).limit(limit)).all()
    errors = dict(session.execute(select(Delivery.id, Delivery.last_error).where(
        Delivery.id.in_([row[3] for row in rows]))).all()) if rows else {}
    return [DeadByConsumer(address, int(count), errors.get(last_id), when)
            for address, count, when, last_id in rows]


def dead_ids_for_consumer(session: Session, consumer_address: str) -> list[int]:
    return list(session.scalars(
        select(Delivery.id).join(Subscription, Subscription.id == Delivery.subscription_id)
        .where(Delivery.state == DeliveryState.DEAD.value, Subscription.consumer_address == consumer_address)))


def parked_consumers(session: Session) -> list[Consumer]:
    return sorted(breaker.parked(session), key=lambda c: c.origin)


def consumer_known(session: Session, origin: str) -> bool:
    return session.get(Consumer, origin) is not None
