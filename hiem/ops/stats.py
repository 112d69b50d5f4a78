"""The numbers the overview, ``hiem status`` and ``/metrics`` share, computed from the database.

Why from the database: it is the one place every web and worker process writes to, so any process can
answer for the whole deployment (in-process counters would each see a fraction).

Time-windowed figures (accepted per minute, latency, attempts) read their window through the timestamp
indexes (``notifications.received_at``, ``deliveries (state, updated_at)``), newest first and at most
``RECENT_ROWS`` rows: a read costs what the window holds, capped, however large the history grows. When
the cap is reached the figures are a lower bound and say so (``window_full``). Counts by state and the
counters come from :mod:`hiem.store.tallies`, which does not read the history either.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from hiem.audit import records as audit_records
from hiem.clock import utcnow
from hiem.store import retention, tallies
from hiem.store.db import as_utc
from hiem.store.models import Consumer, Delivery, DeliveryState, Notification, Subscription

RECENT_ROWS = 20_000
MINUTES = 15
LATENCY_WINDOW_SECONDS = 3600.0
FINISHED = (DeliveryState.DELIVERED.value, DeliveryState.DEAD.value)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (the value an operator can point at), None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass(frozen=True)
class Accepted:
    """Notifications accepted in each of the last ``MINUTES`` minutes, newest last."""

    per_minute: list[int]
    window_full: bool

    @property
    def last_minute(self) -> int:
        return self.per_minute[-1] if self.per_minute else 0


def accepted_per_minute(session: Session, now: datetime, minutes: int = MINUTES) -> Accepted:
    edges = [now - timedelta(minutes=i) for i in range(1, minutes + 1)]
    window = (select(Notification.received_at.label("at")).where(Notification.received_at >= edges[-1])
              .order_by(Notification.received_at.desc()).limit(RECENT_ROWS).subquery())
    # cumulative[i] = accepted since edges[i]; one portable query, no per-dialect date truncation
    columns = [func.coalesce(func.sum(case((window.c.at >= edge, 1), else_=0)), 0) for edge in edges]
    row = session.execute(select(func.count(), *columns).select_from(window)).one()
    scanned, cumulative = row[0], list(row[1:])
    per_minute = [cumulative[0]] + [cumulative[i] - cumulative[i - 1] for i in range(1, minutes)]
    return Accepted(list(reversed([int(v) for v in per_minute])), window_full=scanned >= RECENT_ROWS)


@dataclass(frozen=True)
class Recent:
    """Finished deliveries of the last hour: latencies (received to delivered) and attempts used."""

    latencies: list[float] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    window_full: bool = False

    @property
    def p50(self) -> float | None:
        return percentile(self.latencies, 0.50)

    @property
    def p95(self) -> float | None:
        return percentile(self.latencies, 0.95)


def recent_deliveries(session: Session, now: datetime, window: float = LATENCY_WINDOW_SECONDS) -> Recent:
    since = now - timedelta(seconds=window)
    # received_at row by row (a correlated lookup by primary key), not a join: with a join PostgreSQL
    # estimated the window generously and merge-joined it with the whole notifications table
    received = select(Notification.received_at).where(Notification.id == Delivery.notification_id).scalar_subquery()
    latencies, attempts, full = [], [], False
    for state in FINISHED:  # one index range per state, newest first: the (state, updated_at) index's order
        rows = session.execute(
            select(Delivery.attempts, Delivery.delivered_at, received)
            .where(Delivery.state == state, Delivery.updated_at >= since)
            .order_by(Delivery.updated_at.desc()).limit(RECENT_ROWS)).all()
        full = full or len(rows) >= RECENT_ROWS
        for tries, delivered_at, received_at in rows:
            attempts.append(int(tries))
            if state == DeliveryState.DELIVERED.value and delivered_at is not None:
                latencies.append(max(0.0, (as_utc(delivered_at) - as_utc(received_at)).total_seconds()))
    return Recent(latencies, attempts, window_full=full)


def deliveries_by_state(session: Session) -> dict[str, int]:
    return tallies.deliveries(session).by_state


def subscriptions_by_status(session: Session) -> dict[str, int]:
    """A group-by over the table: it holds live subscriptions and those ended within HIEM_RETAIN_ENDED
    (the purge deletes older ones), so it grows with the deployment, not with its history."""
    from hiem.store.models import SubscriptionStatus

    counts = dict.fromkeys((s.value for s in SubscriptionStatus), 0)
    for status, count in session.execute(select(Subscription.status, func.count()).group_by(Subscription.status)):
        counts[status] = int(count)
    return counts


def filter_failures(session: Session) -> int:
    """Failed MessageContent evaluations so far: on live subscriptions plus those purged with theirs."""
    live = session.scalar(select(func.sum(Subscription.filter_failures))) or 0
    return int(live) + retention.totals(session).get(retention.FILTER_FAILURES, (0, None))[0]


def parked_consumers(session: Session, now: datetime) -> int:
    return session.scalar(select(func.count()).select_from(Consumer).where(Consumer.parked_until > now)) or 0


@dataclass(frozen=True)
class Snapshot:
    """Everything on the overview that the database knows (the broker's half is :class:`QueueStatus`)."""

    at: datetime
    accepted: Accepted
    deliveries: dict[str, int]
    recent: Recent
    subscriptions: dict[str, int]
    parked: int
    audit_backlog: int
    #: rows the retention purge deleted so far (deliveries, notifications, security nonces), and its last run
    purged: dict[str, int] = field(default_factory=dict)
    last_purge_at: datetime | None = None

    @property
    def dead_letters(self) -> int:
        return self.deliveries.get(DeliveryState.DEAD.value, 0)

    def to_json(self) -> dict[str, object]:
        return {
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "accepted_last_minute": self.accepted.last_minute,
            "accepted_per_minute": self.accepted.per_minute,
            "accepted_window_full": self.accepted.window_full,
            "deliveries_by_state": self.deliveries,
            "latency_seconds": {"p50": self.recent.p50, "p95": self.recent.p95,
                                "samples": len(self.recent.latencies), "window_seconds": LATENCY_WINDOW_SECONDS},
            "dead_letters": self.dead_letters,
            "purged_rows": self.purged,
            "last_purge_at": self.last_purge_at.isoformat().replace("+00:00", "Z") if self.last_purge_at else None,
            "parked_consumers": self.parked,
            "audit_backlog": self.audit_backlog,
            "subscriptions_by_status": self.subscriptions,
        }


def snapshot(session: Session, now: datetime | None = None) -> Snapshot:
    now = now or utcnow()
    totals = retention.totals(session)
    purged = retention.purged_by_table(session)
    last = max((when for _, when in totals.values() if when is not None), default=None)
    return Snapshot(at=now, accepted=accepted_per_minute(session, now), deliveries=deliveries_by_state(session),
                    recent=recent_deliveries(session, now), subscriptions=subscriptions_by_status(session),
                    parked=parked_consumers(session, now), audit_backlog=audit_records.backlog(session),
                    purged=purged, last_purge_at=as_utc(last))
