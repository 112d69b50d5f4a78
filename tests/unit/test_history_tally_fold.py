"""The history tallies (hiem.store.tallies) against full counts, on SQLite and PostgreSQL: before any fold,
after folds, after the retention purge, and with a row that commits late with an earlier timestamp."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from hiem.clock import utcnow
from hiem.config import RetentionSettings
from hiem.store import retention, tallies
from hiem.store.db import Database, as_utc
from hiem.store.migrate import upgrade
from hiem.store.models import (
    Delivery,
    DeliveryState,
    HistoryTally,
    Notification,
    Subscription,
    TopicNamespaceRow,
    TopicRow,
)
from tests.support.services import fresh_postgres_database

NOW = utcnow()
DAY = timedelta(days=1)
WINDOWS = retention.RetentionWindows(delivered=7 * DAY, dead=30 * DAY, notifications=7 * DAY)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'hiem.db'}")
        yield from _seeded(database)
    else:
        with fresh_postgres_database() as url:
            yield from _seeded(Database(url))


def _seeded(database: Database) -> Iterator[Database]:
    upgrade(database)
    with database.session() as session:
        session.add(TopicNamespaceRow(id=1, uri="urn:t", loaded_at=NOW))
        session.add_all([TopicRow(id=1, namespace_id=1, name="a", path="a"),
                         TopicRow(id=2, namespace_id=1, name="b", path="b")])
        session.add_all([Subscription(id=sub, consumer_address="http://c/", manager_address="http://m/",
                                      topic_expression="t:a", dialect="d", created_at=NOW - 40 * DAY)
                         for sub in ("s1", "s2")])
    try:
        yield database
    finally:
        database.dispose()


def _add(db: Database, nid: int, when, states: dict[str, str], topic: int = 1) -> None:  # type: ignore[no-untyped-def]
    """Notification ``nid`` received at ``when`` with one delivery per subscription, in ``states``."""
    with db.session() as session:
        session.add(Notification(id=nid, topic_id=topic, topic_namespace="urn:t", topic_path="a",
                                 message_xml=b"<m/>", received_at=when, fanout_state="done"))
        session.flush()
        session.add_all([Delivery(notification_id=nid, subscription_id=sub, sequence=nid, state=state,
                                  created_at=when, updated_at=when + timedelta(seconds=1))
                         for sub, state in states.items()])


def _finish(db: Database, nid: int, sub: str, state: str, when) -> None:  # type: ignore[no-untyped-def]
    with db.session() as session:
        session.execute(update(Delivery).where(Delivery.notification_id == nid, Delivery.subscription_id == sub)
                        .values(state=state, updated_at=when))


def _full(db: Database) -> tuple[dict[str, int], dict[str, int], dict[int, int]]:
    """What the tallies must equal, counted the old way: rows by state, and counters as rows + purged."""
    with db.session() as session:
        by_state = dict.fromkeys((s.value for s in DeliveryState), 0)
        by_state.update(session.execute(select(Delivery.state, func.count()).group_by(Delivery.state)).all())
        purged = retention.purged_deliveries(session)
        completed = {s: by_state[s] + purged.get(s, 0) for s in tallies.FINAL}
        kept = dict(session.execute(select(Notification.topic_id, func.count())
                                    .group_by(Notification.topic_id)).all())
        received = {t: kept.get(t, 0) + n for t, n in retention.purged_notifications(session).items()}
        received.update({t: n for t, n in kept.items() if t not in received})
    return by_state, completed, received


def _read(db: Database) -> tuple[dict[str, int], dict[str, int], dict[int, int]]:
    with db.session() as session:
        found = tallies.deliveries(session)
        return found.by_state, found.completed, tallies.received(session)


def _through(db: Database):  # type: ignore[no-untyped-def]
    with db.session() as session:
        return as_utc(session.scalar(select(HistoryTally.through).where(HistoryTally.kind == tallies.WATERMARK)))


def test_reads_agree_with_full_counts_before_and_after_folds_and_after_a_purge(db: Database) -> None:
    for nid in range(1, 6):  # history: 40 days old, so the purge takes it (but each subscription's latest)
        _add(db, nid, NOW - 40 * DAY + nid * timedelta(hours=1), {"s1": "delivered", "s2": "cancelled"},
             topic=1 + nid % 2)
    _add(db, 6, NOW - 2 * DAY, {"s1": "delivered", "s2": "dead"})
    _add(db, 7, NOW - timedelta(minutes=1), {"s1": "pending", "s2": "in_flight"})  # in play, and recent
    assert _read(db) == _full(db), "before any fold: everything is after the watermark"

    assert tallies.fold(db, NOW) == 11 + 6  # finished deliveries and notifications up to NOW - 5 min
    assert _read(db) == _full(db)
    with db.session() as session:
        assert session.get(HistoryTally, "deliveries:delivered").rows == 6  # type: ignore[union-attr]

    _finish(db, 7, "s1", "delivered", NOW)  # finishes after the fold: counted as after the watermark
    _finish(db, 6, "s2", "delivered", NOW)  # redelivered from dead, delivered now
    assert _read(db) == _full(db)
    assert tallies.fold(db, NOW + timedelta(minutes=10)) == 3  # the two just finished and notification 7
    assert tallies.fold(db, NOW + timedelta(minutes=10)) == 0, "the watermark does not move twice"
    assert _read(db) == _full(db)

    before = _read(db)
    purged = retention.purge(db, WINDOWS, NOW + timedelta(minutes=10), batch=3)
    assert purged.counts["deliveries_finished"] == 10 and purged.counts["notifications"] == 5
    after = _read(db)
    assert after == _full(db)
    assert after[1] == before[1] and after[2] == before[2], "counters do not move when rows are purged"
    assert after[0]["delivered"] == before[0]["delivered"] - 5


def test_the_first_fold_takes_over_what_was_purged_before_there_were_tallies(db: Database) -> None:
    for nid in range(1, 4):
        _add(db, nid, NOW - 40 * DAY + nid * timedelta(hours=1), {"s1": "delivered", "s2": "dropped"})
    retention.purge(db, WINDOWS, NOW, batch=100)  # the purge of a version without tallies
    full = _full(db)
    assert full[1] == {"delivered": 3, "cancelled": 0, "dropped": 3} and full[0]["delivered"] == 1
    assert _read(db) == full
    tallies.fold(db, NOW)
    assert _read(db) == full


def test_a_late_commit_stamped_before_the_fold_is_counted(db: Database) -> None:
    """A worker stamps updated_at, then its transaction commits after a fold ran: the fold's watermark is
    SETTLE behind that fold's clock, so the row is still after it and counted. Without the margin, the
    same row would be missed for good."""
    _add(db, 1, NOW - timedelta(minutes=3), {"s1": "in_flight", "s2": "in_flight"})
    stamped = NOW - timedelta(seconds=2)
    tallies.fold(db, NOW)
    _finish(db, 1, "s1", "delivered", stamped)  # committed after the fold, stamped before it
    assert _through(db) < stamped
    assert _read(db) == _full(db)
    tallies.fold(db, NOW + tallies.SETTLE)
    assert _read(db) == _full(db)

    tallies.fold(db, NOW + 2 * tallies.SETTLE, settle=timedelta(0))  # no margin at all
    _finish(db, 1, "s2", "delivered", NOW + 2 * tallies.SETTLE - timedelta(seconds=1))
    assert _read(db)[1]["delivered"] == _full(db)[1]["delivered"] - 1, "missed: why the margin exists"


def test_the_margin_never_outlasts_a_retention_window() -> None:
    assert tallies.settle_margin(RetentionSettings()) == tallies.SETTLE
    short = RetentionSettings(delivered=timedelta(seconds=1), notifications=timedelta(seconds=30))
    assert tallies.settle_margin(short) == timedelta(milliseconds=500)
