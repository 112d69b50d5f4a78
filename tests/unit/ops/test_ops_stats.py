"""The overview's numbers from real rows: accepted per minute, latency percentiles, counts by state."""

from __future__ import annotations

from datetime import timedelta

from hiem.clock import utcnow
from hiem.ops import stats
from hiem.ops.render import age, seconds, utc, when
from hiem.store.db import Database
from hiem.store.models import Consumer
from tests.unit.ops.conftest import Seeded, add_subscription, finish, publish


def test_percentile_is_nearest_rank() -> None:
    assert stats.percentile([], 0.5) is None
    assert stats.percentile([3.0], 0.95) == 3.0
    values = [float(v) for v in range(1, 101)]
    assert stats.percentile(values, 0.50) == 50.0
    assert stats.percentile(values, 0.95) == 95.0
    assert stats.percentile(list(reversed(values)), 0.95) == 95.0


def test_snapshot_of_one_good_and_one_failing_delivery(db: Database, seeded: Seeded) -> None:
    with db.session() as session:
        snap = stats.snapshot(session)
    assert snap.accepted.last_minute == 1 and sum(snap.accepted.per_minute) == 1
    assert len(snap.accepted.per_minute) == stats.MINUTES and not snap.accepted.window_full
    assert snap.deliveries["delivered"] == 1 and snap.deliveries["dead"] == 1
    assert sum(snap.deliveries.values()) == 2
    assert snap.dead_letters == 1
    assert snap.recent.latencies == [2.0] and snap.recent.p50 == 2.0 and snap.recent.p95 == 2.0
    assert sorted(snap.recent.attempts) == [1, 1]
    assert snap.subscriptions["active"] == 2
    assert snap.parked == 0
    as_json = snap.to_json()
    assert as_json["dead_letters"] == 1 and as_json["latency_seconds"]["p50"] == 2.0  # type: ignore[index]


def test_accepted_per_minute_buckets(db: Database) -> None:
    add_subscription(db, "s", "http://c.example/")
    now = utcnow()
    for minutes_ago in (0.1, 0.2, 1.5, 4.5, 4.6, 4.7, 30):
        publish(db, received_at=now - timedelta(minutes=minutes_ago))
    with db.session() as session:
        accepted = stats.accepted_per_minute(session, now)
    assert accepted.per_minute[-1] == 2, "this minute"
    assert accepted.per_minute[-2] == 1, "one to two minutes ago"
    assert accepted.per_minute[-5] == 3, "four to five minutes ago"
    assert sum(accepted.per_minute) == 6, "the one 30 minutes ago is outside the window"


def test_latency_percentiles_and_the_window(db: Database) -> None:
    add_subscription(db, "s", "http://c.example/")
    for after in (1.0, 2.0, 3.0, 4.0, 100.0):
        finish(db, publish(db), "s", "delivered", after=after, attempts=2)
    old = publish(db, received_at=utcnow() - timedelta(hours=3))
    finish(db, old, "s", "delivered", after=5.0)  # finished hours ago: outside the hour
    with db.session() as session:
        recent = stats.recent_deliveries(session, utcnow())
    assert sorted(recent.latencies) == [1.0, 2.0, 3.0, 4.0, 100.0]
    assert recent.p50 == 3.0 and recent.p95 == 100.0
    assert recent.attempts == [2] * 5


def test_parked_consumers_count_only_future_parks(db: Database) -> None:
    now = utcnow()
    with db.session() as session:
        session.add_all([
            Consumer(origin="http://a:80", consecutive_failures=5, parked_until=now + timedelta(minutes=1),
                     park_count=1, updated_at=now),
            Consumer(origin="http://b:80", consecutive_failures=5, parked_until=now - timedelta(minutes=1),
                     park_count=1, updated_at=now)])
    with db.session() as session:
        assert stats.parked_consumers(session, now) == 1


def test_time_rendering_is_utc_with_age() -> None:
    now = utcnow()
    assert age(now - timedelta(seconds=12), now) == "12 s ago"
    assert age(now - timedelta(minutes=3, seconds=5), now) == "3 min ago"
    assert age(now - timedelta(hours=2), now) == "2 h ago"
    assert age(now - timedelta(days=4), now) == "4 d ago"
    assert age(now + timedelta(minutes=5), now) == "in 5 min"
    assert utc(now.replace(tzinfo=None)).endswith(" UTC"), "naive SQLite times are UTC"
    html = str(when(now))
    assert "<time datetime=" in html and "Z" in html and 'class="age"' in html
    assert seconds(0.25) == "250 ms" and seconds(2.0) == "2.0 s" and seconds(600) == "10.0 min"
    assert seconds(None) == "\N{EN DASH}"
