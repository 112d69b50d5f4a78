"""The console's read-only pages: each turns a request's query into a template name and its context.

They run inside one database session the caller opens, so everything a template touches is loaded.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from hiem.ops import operators, queries, stats
from hiem.ops.queue import QueueStatus
from hiem.store.models import DeliveryState, Subscription, SubscriptionStatus

Page = tuple[str, dict[str, Any]]
DELIVERY_STATES = [s.value for s in DeliveryState]


def overview(session: Session, queue: QueueStatus, query: dict[str, str]) -> Page:
    snap = stats.snapshot(session)
    peak = max(snap.accepted.per_minute or [0]) or 1
    return "overview.html", {"snap": snap, "queue": queue, "states": DELIVERY_STATES, "peak": peak,
                             "window_minutes": stats.MINUTES}


def topics(session: Session, query: dict[str, str]) -> Page:
    return "topics.html", {"trees": queries.topic_trees(session)}


def subscription_filter(query: dict[str, str]) -> queries.SubscriptionFilter:
    topic_id = query.get("topic_id", "")
    status = query.get("status", "")
    return queries.SubscriptionFilter(
        topic=query.get("topic", "").strip(), topic_id=int(topic_id) if topic_id.isdigit() else None,
        organization=query.get("organization", "").strip(), consumer=query.get("consumer", "").strip(),
        status=status if status in {s.value for s in SubscriptionStatus} else "")


def subscriptions(session: Session, query: dict[str, str]) -> Page:
    f = subscription_filter(query)
    rows = queries.find_subscriptions(session, f)
    return "subscriptions.html", {
        "filter": f, "rows": rows, "limit": queries.PAGE, "statuses": [s.value for s in SubscriptionStatus],
        "topic_node": queries.topic_label(session, f.topic_id) if f.topic_id is not None else None}


def subscription(session: Session, subscription_id: str) -> Page | None:
    row = session.get(Subscription, subscription_id)
    if row is None:
        return None
    reference, consumer = queries.subscription_eprs(row)
    return "subscription.html", {"sub": row, "reference_epr": reference, "consumer_epr": consumer,
                                 "deliveries": queries.deliveries_of(session, subscription_id=row.id)}


def notifications(session: Session, query: dict[str, str]) -> Page:
    return "notifications.html", {"rows": queries.recent_notifications(session)}


def deliveries(session: Session, query: dict[str, str]) -> Page:
    consumer = query.get("consumer", "").strip()
    return "deliveries.html", {
        "consumer": consumer,
        "dead": queries.deliveries_of(session, state=DeliveryState.DEAD.value, consumer=consumer or None,
                                      limit=queries.PAGE),
        "by_consumer": queries.dead_by_consumer(session), "parked": queries.parked_consumers(session),
        "limit": queries.PAGE}


def actions(session: Session, query: dict[str, str]) -> Page:
    return "actions.html", {"rows": operators.recent_actions(session)}
