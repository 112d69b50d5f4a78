"""Fan-outs without a global lock, on a real PostgreSQL: each subscription numbers its own deliveries.

* Fan-outs over disjoint subscriber sets run side by side: the second one finishes while the first still
  holds its transaction open (with the old global advisory lock it waited, and ``lock_timeout`` fails it).
* Fan-outs over shared subscribers, many at once from threads: no deadlock (rows are locked in id order),
  and every subscription's numbers are 1..n without a gap or a repeat, matching its counter.
* Fan-outs of one topic take turns, in accept order: a redelivered task waits for the first and then
  finds nothing to do; a later notification's task fans out an older one still pending on its topic first.
"""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select, text

from hiem.clock import utcnow
from hiem.store import deliveries
from hiem.store.db import Database
from hiem.store.migrate import upgrade
from hiem.store.models import (
    Delivery,
    Notification,
    Subscription,
    SubscriptionTopic,
    TopicNamespaceRow,
    TopicRow,
)
from tests.support.services import fresh_postgres_database

pytestmark = pytest.mark.postgres

BIG, SMALL, SHARED = 300, 10, 40


@pytest.fixture
def db() -> Iterator[Database]:
    with fresh_postgres_database() as url:
        database = Database(url)
        upgrade(database)
        now = utcnow()
        with database.session() as session:
            session.add(TopicNamespaceRow(id=1, uri="urn:t", loaded_at=now))
            session.add_all([TopicRow(id=1, namespace_id=1, name="big", path="big"),
                             TopicRow(id=2, namespace_id=1, name="small", path="small")])
            session.flush()
            subscribers = {"big": [f"b{n:04d}" for n in range(BIG)], "small": [f"s{n:04d}" for n in range(SMALL)],
                           "both": [f"x{n:04d}" for n in range(SHARED)]}
            for ids in subscribers.values():
                session.add_all([Subscription(id=sid, consumer_address="http://c/", manager_address="http://m/",
                                              topic_expression="t:*", dialect="d", created_at=now) for sid in ids])
            session.flush()
            session.add_all([SubscriptionTopic(subscription_id=sid, topic_id=1)
                             for sid in subscribers["big"] + subscribers["both"]])
            session.add_all([SubscriptionTopic(subscription_id=sid, topic_id=2)
                             for sid in subscribers["small"] + subscribers["both"]])
        yield database
        database.dispose()


def _notify(db: Database, topic_id: int) -> int:
    with db.session() as session:
        row = Notification(topic_id=topic_id, topic_namespace="urn:t", topic_path="x", message_xml=b"<m/>",
                           received_at=utcnow(), fanout_state="pending")
        session.add(row)
        session.flush()
        return row.id


def test_fan_outs_over_disjoint_subscribers_run_side_by_side(db: Database) -> None:
    with db.session() as session:  # no subscriber on both topics here
        session.execute(text("DELETE FROM subscription_topics WHERE subscription_id LIKE 'x%'"))
    big, small = _notify(db, 1), _notify(db, 2)
    finished = threading.Event()
    errors: list[BaseException] = []

    def small_fan_out() -> None:
        try:
            with db.session() as session:
                session.execute(text("SET LOCAL lock_timeout = '5s'"))
                assert deliveries.fan_out(session, small) == [small]
            finished.set()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    with db.session() as holding:
        assert deliveries.fan_out(holding, big) == [big]  # BIG rows locked until this transaction ends
        other = threading.Thread(target=small_fan_out)
        other.start()
        other.join(30)
        assert not errors, errors
        assert finished.is_set(), "the small fan-out waited for the big one"
    with db.session() as session:
        counts = dict(session.execute(select(Delivery.notification_id, text("count(*)"))
                                      .group_by(Delivery.notification_id)).all())
    assert counts == {big: BIG, small: SMALL}


def test_concurrent_fan_outs_over_shared_subscribers_number_without_gaps(db: Database) -> None:
    rng = random.Random(7)
    topics = [rng.choice((1, 2)) for _ in range(24)]
    assert set(topics) == {1, 2}
    ids = [_notify(db, topic) for topic in topics]

    def run(nid: int) -> list[int]:
        with db.session() as session:
            session.execute(text("SET LOCAL lock_timeout = '30s'"))
            return deliveries.fan_out(session, nid)

    with ThreadPoolExecutor(max_workers=6) as pool:
        done = list(pool.map(run, ids))
    assert sorted(n for part in done for n in part) == sorted(ids)
    with db.session() as session:
        numbers: dict[str, list[int]] = defaultdict(list)
        for sid, sequence in session.execute(select(Delivery.subscription_id, Delivery.sequence)):
            numbers[sid].append(sequence)
        counters = dict(session.execute(select(Subscription.id, Subscription.last_sequence)).all())
    expected = {1: topics.count(1), 2: topics.count(2)}
    for sid, got in numbers.items():
        wanted = len(topics) if sid.startswith("x") else expected[1 if sid.startswith("b") else 2]
        assert sorted(got) == list(range(1, wanted + 1)), (sid, sorted(got))
        assert counters[sid] == wanted
    assert len(numbers) == BIG + SMALL + SHARED


def test_one_topic_takes_turns_in_accept_order(db: Database) -> None:
    first, second = _notify(db, 2), _notify(db, 2)
    redelivered: list[list[int]] = []
    with db.session() as holding:
        assert deliveries.fan_out(holding, first) == [first]
        other = threading.Thread(target=lambda: redelivered.append(_fan_out(db, first)))
        other.start()
        other.join(1.0)
        assert other.is_alive(), "a fan-out of the same topic waits for the one in progress"
    other.join(30)
    assert redelivered == [[]], "and then finds the work done"
    third = _notify(db, 2)
    assert _fan_out(db, third) == [second, third], "an older pending notification of the topic goes first"
    with db.session() as session:
        order = [nid for nid, in session.execute(select(Delivery.notification_id).where(
            Delivery.subscription_id == "s0000").order_by(Delivery.sequence))]
    assert order == [first, second, third]


def _fan_out(db: Database, nid: int) -> list[int]:
    return deliveries.fan_out_in_order(db, nid)
