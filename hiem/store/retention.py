"""Retention: deleting finished rows in small batches, and counting what was deleted.

What goes, and when (the windows are :class:`hiem.config.RetentionSettings`):

* deliveries that ended well or were never needed (``delivered``, ``cancelled``, ``dropped``), once not
  updated for ``delivered``; ``dead`` ones after ``dead`` (they are the redelivery queue). Rows still in
  play (pending, in flight, retrying, held, stored in a pull point) are never touched, nor is the latest
  delivery of each live subscription (so hiem:Replay can name the oldest number still kept);
* subscriptions that ended (unsubscribed or expired) longer ago than ``ended_subscriptions``, with their
  topic rows and every delivery left (the operator had that long to look at them); destroyed pull points
  after the same window, once no subscription names them;
* notifications, once received longer ago than ``notifications``, fanned out, and referenced by no
  delivery any more: a body stays while a delivery, a pull point or a replay window can still need it;
* audit records older than ``audit``, and while they are shipped to a repository only those it already
  has (an unshipped record is never deleted: the repository is the record of truth);
* security nonces whose expiry has passed.

Each batch is its own short transaction (a purge never holds SQLite's writer, or a PostgreSQL row lock,
for long) and adds what it deleted to ``purge_totals`` in the same transaction: per delivery state
(``deliveries:delivered``...), per topic (``notifications:<topic id>``) and per table, so /metrics can keep its
counters monotonic (rows still here + rows purged) and ``hiem status`` can say what went. With
PostgreSQL, two sweepers purging at once skip each other's rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session, aliased

from hiem.store.db import Database
from hiem.store.models import (
    AuditRecord,
    Delivery,
    DeliveryState,
    FanoutState,
    NonceEntry,
    Notification,
    PullPoint,
    PurgeTotal,
    Subscription,
    SubscriptionStatus,
    SubscriptionTopic,
)

FINISHED = (DeliveryState.DELIVERED.value, DeliveryState.CANCELLED.value, DeliveryState.DROPPED.value)
ENDED = (SubscriptionStatus.UNSUBSCRIBED.value, SubscriptionStatus.EXPIRED.value)

#: what a purge run reports, in the order it runs (subscriptions before notifications: deleting an ended
#: subscription's deliveries frees the notifications they held)
KINDS = ("deliveries_finished", "deliveries_dead", "subscriptions", "pull_points", "notifications",
         "audit_records", "security_nonces")
DELIVERIES_PREFIX, NOTIFICATIONS_PREFIX = "deliveries:", "notifications:"
FILTER_FAILURES = "filter_failures"


@dataclass(frozen=True)
class RetentionWindows:
    delivered: timedelta
    dead: timedelta
    notifications: timedelta
    ended_subscriptions: timedelta = timedelta(days=30)
    audit: timedelta = timedelta(days=2190)
    #: audit records go to a repository: delete only what it already has
    audit_shipping: bool = False


@dataclass
class Purged:
    """Rows deleted by one purge run, per kind."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def purge(database: Database, windows: RetentionWindows, now: datetime, batch: int,
          max_batches: int = 100) -> Purged:
    """Delete what the windows allow, ``batch`` rows per transaction, at most ``max_batches`` per kind
    (the rest waits for the next run, so one run stays short)."""
    purged = Purged()
    steps = {
        "deliveries_finished": lambda s: _finished_deliveries(s, now - windows.delivered, batch),
        "deliveries_dead": lambda s: _dead_deliveries(s, now - windows.dead, batch),
        "subscriptions": lambda s: _ended_subscriptions(s, now - windows.ended_subscriptions, batch),
        "pull_points": lambda s: _pull_points(s, now - windows.ended_subscriptions, batch),
        "notifications": lambda s: _notifications(s, now - windows.notifications, batch),
        "audit_records": lambda s: _audit_records(s, now - windows.audit, windows.audit_shipping, batch),
        "security_nonces": lambda s: _nonces(s, now, batch),
    }
    for kind, step in steps.items():
        for _ in range(max_batches):
            with database.session() as session:
                by_key = step(session)
                for key, deleted in by_key.items():
                    _count(session, key, deleted, now)
            deleted = by_key.get(kind, sum(by_key.values()))  # a subscription batch also counts its deliveries
            purged.counts[kind] += deleted
            if deleted < batch:
                break
    return purged


def _locked(session: Session, query):  # type: ignore[no-untyped-def]
    return query.with_for_update(skip_locked=True) if session.bind.dialect.name == "postgresql" else query


def _deliveries(session: Session, condition, batch: int) -> dict[str, int]:  # type: ignore[no-untyped-def]
    # A subscription's latest delivery stays whatever its age, so hiem:Replay can always name the oldest
    # number still retained (numbering itself goes on from subscriptions.last_sequence).
    later = aliased(Delivery)
    not_latest = or_(Delivery.sequence.is_(None), exists().where(
        later.subscription_id == Delivery.subscription_id, later.sequence > Delivery.sequence))
    rows = session.execute(_locked(session, select(Delivery.id, Delivery.state)
                                   .where(condition, not_latest).limit(batch))).all()
    if not rows:
        return {}
    session.execute(delete(Delivery).where(Delivery.id.in_([row.id for row in rows])))
    return _tally(f"{DELIVERIES_PREFIX}{row.state}" for row in rows)


def _finished_deliveries(session: Session, before: datetime, batch: int) -> dict[str, int]:
    return _deliveries(session, Delivery.state.in_(FINISHED) & (Delivery.updated_at < before), batch)


def _dead_deliveries(session: Session, before: datetime, batch: int) -> dict[str, int]:
    return _deliveries(session, (Delivery.state == DeliveryState.DEAD.value) & (Delivery.updated_at < before),
                       batch)


def _notifications(session: Session, before: datetime, batch: int) -> dict[str, int]:
    rows = session.execute(_locked(session, select(Notification.id, Notification.topic_id).where(
        Notification.received_at < before, Notification.fanout_state == FanoutState.DONE.value,
        ~exists().where(Delivery.notification_id == Notification.id)).order_by(Notification.id).limit(batch))).all()
    if not rows:
        return {}
    session.execute(delete(Notification).where(Notification.id.in_([row.id for row in rows])))
    return _tally(f"{NOTIFICATIONS_PREFIX}{row.topic_id}" for row in rows)


def _ended_subscriptions(session: Session, before: datetime, batch: int) -> dict[str, int]:
    # and none of its deliveries changed since: a delivery cancelled or given up after the end goes once it is
    # that old too, so the operators' tallies (folded well inside the window) have counted it first
    changed_since = exists().where(Delivery.subscription_id == Subscription.id, Delivery.updated_at >= before)
    ids = list(session.scalars(_locked(session, select(Subscription.id).where(
        Subscription.status.in_(ENDED), Subscription.terminated_at < before, ~changed_since)
        .order_by(Subscription.id).limit(batch))))
    if not ids:
        return {}
    states = session.scalars(select(Delivery.state).where(Delivery.subscription_id.in_(ids)))
    counts = _tally(f"{DELIVERIES_PREFIX}{state}" for state in states)
    # kept in the totals so hiem_filter_failures_total never goes down
    failures = session.scalar(select(func.sum(Subscription.filter_failures)).where(Subscription.id.in_(ids))) or 0
    if failures:
        counts[FILTER_FAILURES] = int(failures)
    session.execute(delete(Delivery).where(Delivery.subscription_id.in_(ids)))
    session.execute(delete(SubscriptionTopic).where(SubscriptionTopic.subscription_id.in_(ids)))
    session.execute(delete(Subscription).where(Subscription.id.in_(ids)))
    return {**counts, "subscriptions": len(ids)}


def _pull_points(session: Session, before: datetime, batch: int) -> dict[str, int]:
    ids = list(session.scalars(_locked(session, select(PullPoint.id).where(
        PullPoint.destroyed_at < before, ~exists().where(Subscription.pull_point_id == PullPoint.id))
        .order_by(PullPoint.id).limit(batch))))
    if not ids:
        return {}
    session.execute(delete(PullPoint).where(PullPoint.id.in_(ids)))
    return {"pull_points": len(ids)}


def _audit_records(session: Session, before: datetime, shipping: bool, batch: int) -> dict[str, int]:
    query = select(AuditRecord.id).where(AuditRecord.created_at < before)
    if shipping:
        query = query.where(AuditRecord.shipped_at.is_not(None))
    ids = list(session.scalars(_locked(session, query.order_by(AuditRecord.id).limit(batch))))
    if not ids:
        return {}
    session.execute(delete(AuditRecord).where(AuditRecord.id.in_(ids)))
    return {"audit_records": len(ids)}


def _nonces(session: Session, now: datetime, batch: int) -> dict[str, int]:
    keys = list(session.scalars(select(NonceEntry.key).where(NonceEntry.expires_at < now).limit(batch)))
    if not keys:
        return {}
    session.execute(delete(NonceEntry).where(NonceEntry.key.in_(keys)))
    return {"security_nonces": len(keys)}


def _tally(keys) -> dict[str, int]:  # type: ignore[no-untyped-def]
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    return counts


def _count(session: Session, kind: str, deleted: int, now: datetime) -> None:
    updated = session.execute(update(PurgeTotal).where(PurgeTotal.kind == kind).values(
        rows=PurgeTotal.rows + deleted, last_purge_at=now)).rowcount
    if not updated:
        session.execute(insert(PurgeTotal).values(kind=kind, rows=deleted, last_purge_at=now))


def totals(session: Session) -> dict[str, tuple[int, datetime | None]]:
    """Rows deleted so far per key (``deliveries:<state>``, ``notifications:<topic id>``,
    ``security_nonces``) and when the last batch of each ran. A table of a few rows per topic and state."""
    return {row.kind: (int(row.rows), row.last_purge_at) for row in session.scalars(select(PurgeTotal))}


def purged_by_table(session: Session) -> dict[str, int]:
    """Rows deleted so far per table, for /metrics and ``hiem status``."""
    by_key = {kind: rows for kind, (rows, _) in totals(session).items()}
    tables = dict.fromkeys(("deliveries", "notifications", "subscriptions", "pull_points", "audit_records",
                            "security_nonces"), 0)
    for kind, rows in by_key.items():
        table = kind.split(":", 1)[0]
        if table in tables:
            tables[table] += rows
    return tables


def purged_deliveries(session: Session) -> dict[str, int]:
    """Purged delivery rows per state."""
    return {kind[len(DELIVERIES_PREFIX):]: rows for kind, (rows, _) in totals(session).items()
            if kind.startswith(DELIVERIES_PREFIX)}


def purged_notifications(session: Session) -> dict[int, int]:
    """Purged notifications per topic id."""
    return {int(kind[len(NOTIFICATIONS_PREFIX):]): rows for kind, (rows, _) in totals(session).items()
            if kind.startswith(NOTIFICATIONS_PREFIX)}


@dataclass(frozen=True)
class TableStats:
    table: str
    rows: int
    oldest: datetime | None


def table_stats(session: Session) -> list[TableStats]:
    """Row counts and the oldest row of each growing table (for ``hiem db stats``: reads every row)."""
    from hiem.store.models import AuditRecord, OperatorAction, Subscription

    columns = [("notifications", Notification, Notification.received_at),
               ("deliveries", Delivery, Delivery.created_at),
               ("audit_records", AuditRecord, AuditRecord.created_at),
               ("subscriptions", Subscription, Subscription.created_at),
               ("operator_actions", OperatorAction, OperatorAction.at),
               ("security_nonces", NonceEntry, None)]
    stats = []
    for name, table, when in columns:
        count = session.scalar(select(func.count()).select_from(table)) or 0
        oldest = session.scalar(select(func.min(when))) if when is not None else None
        stats.append(TableStats(name, int(count), oldest))
    return stats
