"""The retention purge on a real SQLite database: what goes, what stays, in batches, and what it counts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hiem.clock import utcnow
from hiem.store import retention
from hiem.store.db import Database
from hiem.store.migrate import upgrade
from hiem.store.models import (
    AuditRecord,
    Delivery,
    NonceEntry,
    Notification,
    PullPoint,
    Subscription,
    SubscriptionTopic,
    TopicNamespaceRow,
    TopicRow,
)

NOW = utcnow()
OLD = NOW - timedelta(days=40)
WINDOWS = retention.RetentionWindows(delivered=timedelta(days=7), dead=timedelta(days=30),
                                     notifications=timedelta(days=7))


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'hiem.db'}")
    upgrade(database)
    with database.session() as session:
        session.add(TopicNamespaceRow(id=1, uri="urn:t", loaded_at=NOW))
        session.add_all([TopicRow(id=1, namespace_id=1, name="a", path="a"),
                         TopicRow(id=2, namespace_id=1, name="b", path="b")])
        for sub in ("s1", "s2"):
            session.add(Subscription(id=sub, consumer_address="http://c/", manager_address="http://m/",
                                     topic_expression="t:a", dialect="d", created_at=OLD))
    return database


def _notification(session, nid: int, when, topic: int = 1) -> None:  # type: ignore[no-untyped-def]
    session.add(Notification(id=nid, topic_id=topic, topic_namespace="urn:t", topic_path="a", message_xml=b"<m/>",
                             received_at=when, fanout_state="done"))
    session.flush()  # before any delivery refers to it


def _delivery(session, nid: int, sub: str, seq: int, state: str, when) -> None:  # type: ignore[no-untyped-def]
    session.add(Delivery(notification_id=nid, subscription_id=sub, sequence=seq, state=state, created_at=when,
                         updated_at=when))


def _left(db: Database) -> dict[str, object]:
    with db.session() as session:
        deliveries = sorted((d.subscription_id, d.sequence, d.state) for d in session.scalars(select(Delivery)))
        notifications = sorted(session.scalars(select(Notification.id)))
        nonces = session.scalar(select(func.count()).select_from(NonceEntry))
    return {"deliveries": deliveries, "notifications": notifications, "nonces": nonces}


def test_finished_rows_go_when_their_window_ends_and_everything_in_play_stays(db: Database) -> None:
    with db.session() as session:
        for nid in range(1, 8):
            _notification(session, nid, OLD)
        _notification(session, 8, NOW)
        _delivery(session, 1, "s1", 1, "delivered", OLD)        # old, finished: goes
        _delivery(session, 2, "s1", 2, "cancelled", OLD)        # old, finished: goes
        _delivery(session, 3, "s1", 3, "dead", NOW - timedelta(days=10))  # dead, within 30 days: stays
        _delivery(session, 4, "s1", 4, "retrying", OLD)         # in play: stays whatever its age
        _delivery(session, 5, "s1", 5, "delivered", OLD)        # s1's latest: stays (numbering goes on from it)
        _delivery(session, 6, "s2", 1, "dead", OLD)             # dead beyond 30 days: goes
        _delivery(session, 7, "s2", 2, "stored", OLD)           # waiting in a pull point: stays
        _delivery(session, 8, "s2", 3, "delivered", NOW)        # recent: stays
        session.add(NonceEntry(key="gone", expires_at=NOW - timedelta(seconds=1)))
        session.add(NonceEntry(key="kept", expires_at=NOW + timedelta(hours=1)))
    purged = retention.purge(db, WINDOWS, NOW, batch=100)
    left = _left(db)
    assert left["deliveries"] == [("s1", 3, "dead"), ("s1", 4, "retrying"), ("s1", 5, "delivered"),
                                  ("s2", 2, "stored"), ("s2", 3, "delivered")]
    # notifications 1, 2 and 6 lost their last delivery and are old: gone; the others are still needed
    assert left["notifications"] == [3, 4, 5, 7, 8]
    assert left["nonces"] == 1
    assert purged.counts == {"deliveries_finished": 2, "deliveries_dead": 1, "subscriptions": 0, "pull_points": 0,
                             "notifications": 3, "audit_records": 0, "security_nonces": 1}
    with db.session() as session:
        assert retention.purged_deliveries(session) == {"delivered": 1, "cancelled": 1, "dead": 1}
        assert retention.purged_notifications(session) == {1: 3}


def test_a_body_stays_for_its_window_even_when_no_delivery_needs_it(db: Database) -> None:
    with db.session() as session:
        _notification(session, 1, NOW - timedelta(days=1))  # matched nobody, but inside the replay window
    retention.purge(db, WINDOWS, NOW, batch=100)
    assert _left(db)["notifications"] == [1]


def test_purge_works_in_batches_and_totals_add_up_across_runs(db: Database) -> None:
    with db.session() as session:
        for nid in range(1, 26):
            _notification(session, nid, OLD, topic=2)
            _delivery(session, nid, "s1", nid, "delivered", OLD)
    first = retention.purge(db, WINDOWS, NOW, batch=10, max_batches=2)
    assert first.counts["deliveries_finished"] == 20  # two batches of ten, the rest waits for the next run
    second = retention.purge(db, WINDOWS, NOW, batch=10)
    assert second.counts["deliveries_finished"] == 4  # 25 minus s1's latest
    assert _left(db)["deliveries"] == [("s1", 25, "delivered")]
    with db.session() as session:
        assert retention.purged_deliveries(session) == {"delivered": 24}
        assert retention.purged_notifications(session) == {2: 24}


def test_db_stats_counts_rows_and_finds_the_oldest(db: Database) -> None:
    with db.session() as session:
        _notification(session, 1, OLD)
        _notification(session, 2, NOW)
    with db.session() as session:
        stats = {s.table: s for s in retention.table_stats(session)}
    assert stats["notifications"].rows == 2
    assert stats["notifications"].oldest is not None
    assert stats["deliveries"].rows == 0 and stats["deliveries"].oldest is None


def _end(session, sub: str, status: str, when) -> None:  # type: ignore[no-untyped-def]
    row = session.get(Subscription, sub)
    row.status, row.terminated_at = status, when


def test_ended_subscriptions_go_after_their_window_with_all_they_left(db: Database) -> None:
    with db.session() as session:
        session.add(Subscription(id="s3", consumer_address="http://c/", manager_address="http://m/",
                                 topic_expression="t:a", dialect="d", created_at=OLD, pull_point_id="pp-gone"))
        session.add_all([SubscriptionTopic(subscription_id=sub, topic_id=1) for sub in ("s1", "s2", "s3")])
        session.add_all([PullPoint(id="pp-gone", created_at=OLD, destroyed_at=OLD),
                         PullPoint(id="pp-live", created_at=OLD)])
        _end(session, "s1", "unsubscribed", OLD)                # ended 40 days ago: goes
        _end(session, "s2", "expired", NOW - timedelta(days=3))  # ended recently: stays for the operators
        _end(session, "s3", "unsubscribed", OLD)                 # goes, and then its destroyed pull point
        for nid in (1, 2, 3):
            _notification(session, nid, OLD)
        _delivery(session, 1, "s1", 1, "dead", OLD)
        _delivery(session, 2, "s1", 2, "cancelled", OLD)
        _delivery(session, 3, "s2", 1, "delivered", OLD)                 # s2's latest: stays
    purged = retention.purge(db, WINDOWS, NOW, batch=100)
    assert purged.counts["subscriptions"] == 2 and purged.counts["pull_points"] == 1
    with db.session() as session:
        assert sorted(session.scalars(select(Subscription.id))) == ["s2"]
        assert sorted(session.scalars(select(SubscriptionTopic.subscription_id))) == ["s2"]
        assert list(session.scalars(select(PullPoint.id))) == ["pp-live"]
        assert retention.purged_deliveries(session) == {"dead": 1, "cancelled": 1}
        assert retention.purged_by_table(session)["subscriptions"] == 2
    assert _left(db) == {"deliveries": [("s2", 1, "delivered")], "notifications": [3], "nonces": 0}


def _audit(session, rid: int, when, shipped: bool) -> None:  # type: ignore[no-untyped-def]
    session.add(AuditRecord(id=rid, kind="k", outcome=0, event={}, created_at=when,
                            shipped_at=when if shipped else None))


@pytest.mark.parametrize("shipping, left", [(True, [2, 3]), (False, [3])])
def test_audit_records_go_after_their_window_and_never_before_they_are_shipped(
        db: Database, shipping: bool, left: list[int]) -> None:
    with db.session() as session:
        _audit(session, 1, OLD, shipped=True)
        _audit(session, 2, OLD, shipped=False)   # the repository does not have it yet
        _audit(session, 3, NOW, shipped=True)    # inside the window
    windows = retention.RetentionWindows(WINDOWS.delivered, WINDOWS.dead, WINDOWS.notifications,
                                         audit=timedelta(days=30), audit_shipping=shipping)
    purged = retention.purge(db, windows, NOW, batch=1)  # one record per transaction
    assert purged.counts["audit_records"] == 3 - len(left)
    with db.session() as session:
        assert sorted(session.scalars(select(AuditRecord.id))) == left
        assert retention.purged_by_table(session)["audit_records"] == 3 - len(left)


def test_an_ended_subscription_waits_while_a_delivery_of_it_changed_inside_the_window(db: Database) -> None:
    with db.session() as session:
        _end(session, "s1", "unsubscribed", OLD)
        _notification(session, 1, OLD)
        _delivery(session, 1, "s1", 1, "cancelled", NOW - timedelta(days=1))  # cancelled long after the end
    assert retention.purge(db, WINDOWS, NOW, batch=100).counts["subscriptions"] == 0
    later = NOW + timedelta(days=30)
    assert retention.purge(db, WINDOWS, later, batch=100).counts["subscriptions"] == 1
