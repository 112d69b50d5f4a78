"""Durability under faults, with real processes: what the README's "at least once" promise is worth.

Every test breaks something real (kill -9 a worker, SIGKILL Redis, cut the database's TCP connections,
a consumer that refuses, hangs or answers 503) and then checks the consumer's side (what arrived, with
which wsa:MessageID) and the ``deliveries`` rows (nothing left pending, in flight or retrying).
The measured numbers are printed (``pytest -s``) and quoted in docs/delivery.md.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from lxml import etree
from sqlalchemy.pool import NullPool

import tests.conftest as harness
from hiem import ns
from tests.conftest import Broker
from tests.support import wsn
from tests.support.barrier import marker_of, marker_subscription, publish_marker, wait_for_marker
from tests.support.consumer import Received, RecordingConsumer
from tests.support.faults import RedisServer, TcpProxy, wait_until
from tests.support.processes import ROOT, free_port
from tests.support.services import fresh_postgres_database, require_redis

pytestmark = pytest.mark.slow

ORDER_NS = "urn:test:durability"


# -- helpers -----------------------------------------------------------------------------------------------
@contextmanager
def running_broker(mode: str, tmp: Path, database_url: str | None = None, broker_url: str | None = None,
                   workers: int = 1, **env: str) -> Iterator[Broker]:
    """start_broker, stopped afterwards; the processes' logs are printed when the test fails.

    conftest's start_broker builds the environment with ``hiem_env(**FAST, **overrides)``, so overriding a
    FAST key (HIEM_BACKOFF_BASE, HIEM_READ_TIMEOUT, ...) raises TypeError; those keys go into FAST instead.
    """
    fast = {key: env.pop(key) for key in list(env) if key in harness.FAST}
    saved = harness.FAST
    harness.FAST = {**saved, **fast}
    try:
        broker = harness.start_broker(mode, tmp, database_url, broker_url, workers, **env)
    finally:
        harness.FAST = saved
    try:
        yield broker
    except BaseException:
        for proc in [broker.web, *broker.workers]:
            print(f"----- {proc.log_path.name} -----\n{proc.output()[-8000:]}")
        raise
    finally:
        broker.stop()


class Rows:
    """Read-only access to the broker's tables, straight from the database (not through hiem)."""

    def __init__(self, database_url: str) -> None:
        self.engine = sa.create_engine(database_url, poolclass=NullPool)

    def close(self) -> None:
        self.engine.dispose()

    def query(self, sql: str, **params: object) -> list[sa.Row]:
        # a shared PostgreSQL server can be briefly out of connections ("too many clients"): try again
        for attempt in range(25):
            try:
                with self.engine.connect() as connection:
                    return list(connection.execute(sa.text(sql), params))
            except sa.exc.OperationalError:
                if attempt == 24:
                    raise
                time.sleep(0.2)
        raise AssertionError("unreachable")

    def deliveries(self) -> list[sa.Row]:
        return self.query(
            "SELECT d.id, d.state, d.attempts, d.last_error, d.last_status, d.subscription_id, d.notification_id,"
            " d.next_attempt_at, s.consumer_address FROM deliveries d JOIN subscriptions s"
            " ON s.id = d.subscription_id ORDER BY d.id")

    def states(self) -> Counter[str]:
        return Counter(row.state for row in self.query("SELECT state FROM deliveries"))

    def delivery_for(self, subscription: str) -> sa.Row | None:
        rows = [row for row in self.deliveries() if row.subscription_id == subscription]
        assert len(rows) <= 1, rows
        return rows[0] if rows else None

    def consumer(self, origin: str) -> sa.Row | None:
        rows = self.query("SELECT origin, consecutive_failures, parked_until, park_count, last_error"
                          " FROM consumers WHERE origin = :origin", origin=origin)
        return rows[0] if rows else None

    def all_finished(self, expected: int, state: str = "delivered") -> bool:
        states = self.states()
        return sum(states.values()) == expected and states[state] == expected


@contextmanager
def rows_of(broker: Broker) -> Iterator[Rows]:
    rows = Rows(broker.env["HIEM_DATABASE_URL"])
    try:
        yield rows
    finally:
        rows.close()


def utc(value: datetime | str | None) -> datetime | None:
    """A column read with plain SQL as an aware datetime (SQLite gives back naive ISO text; hiem stores UTC)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def subscribe(base_url: str, consumer_url: str) -> str:
    response = wsn.call(base_url, "Subscribe", wsn.subscribe_body(consumer_url))
    assert response.status_code == 200, response.text
    return wsn.subscription_id(response)


def subscribe_many(base_url: str, consumer_urls: list[str]) -> list[str]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(lambda url: subscribe(base_url, url), consumer_urls))


def publish(base_url: str, index: int = 0) -> httpx.Response:
    payload = f"<t:Event xmlns:t='{ORDER_NS}'>{index}</t:Event>"
    return wsn.call(base_url, "Notify", wsn.notify_body(payload=payload))


def message_id(received: Received | bytes) -> str:
    body = received.body if isinstance(received, Received) else received
    header = etree.fromstring(body).find(f"{{{ns.SOAP12}}}Header")
    return header.findtext(f"{{{ns.WSA}}}MessageID")


def event_index(body: bytes) -> int:
    node = etree.fromstring(body).find(f".//{{{ORDER_NS}}}Event")
    return int(node.text)


def accept_after(low: float, high: float):  # type: ignore[no-untyped-def]
    def behaviour(_: bytes) -> tuple[int, dict[str, str], bytes]:
        time.sleep(random.uniform(low, high))
        return 202, {}, b""
    return behaviour


def check_fan_out_complete(consumer: RecordingConsumer, paths: list[str]) -> dict[str, object]:
    """Every path got the notification; copies of one delivery share its MessageID; report duplicates."""
    by_path: dict[str, list[str]] = defaultdict(list)
    for received in list(consumer.received):
        by_path[received.path].append(message_id(received))
    missing = [p for p in paths if p not in by_path]
    assert not missing, f"{len(missing)} subscribers never received the notification: {missing[:5]}"
    assert set(by_path) == set(paths), set(by_path) - set(paths)
    for path, ids in by_path.items():
        assert len(set(ids)) == 1, f"{path}: copies with different MessageIDs {ids}"
    firsts = [ids[0] for ids in by_path.values()]
    assert len(set(firsts)) == len(paths), "each delivery has its own MessageID"
    duplicates = sum(len(ids) - 1 for ids in by_path.values())
    return {"duplicates": duplicates, "duplicated_subscribers": sum(1 for ids in by_path.values() if len(ids) > 1)}


# -- 1. a worker killed (kill -9, whole process group) in the middle of a 200-subscriber fan-out -------------
def test_worker_killed_during_fan_out_loses_nothing(tmp_path):
    redis_url = require_redis()
    total = 200
    with (fresh_postgres_database() as database_url, RecordingConsumer(accept_after(0.02, 0.05)) as consumer,
          running_broker("distributed", tmp_path, database_url, redis_url) as broker, rows_of(broker) as rows):
        paths = [f"/c/{i}" for i in range(total)]
        subscribe_many(broker.url, [f"http://127.0.0.1:{consumer.port}{p}" for p in paths])

        assert publish(broker.url).status_code == 202
        wait_until(lambda: len(consumer.received) >= 20, 60, "the first 20 deliveries", interval=0.005)
        broker.workers[0].kill()  # SIGKILL to the worker's process group: parent and pool children
        killed_at = time.monotonic()
        at_kill = len(consumer.received)
        states_at_kill = rows.states()
        assert at_kill < total, "the fan-out was over before the kill; the test proves nothing"

        broker.start_worker()
        wait_until(lambda: len({r.path for r in consumer.received}) == total, 90,
                   "every subscriber to receive the notification")
        recovered = time.monotonic() - killed_at
        wait_until(lambda: rows.all_finished(total), 30, "all 200 deliveries to be recorded as delivered")

        report = check_fan_out_complete(consumer, paths)
        assert rows.states() == Counter({"delivered": total})
        # only a row claimed (in flight) but not recorded when the worker died can have been sent twice
        assert report["duplicates"] <= states_at_kill["in_flight"], (report, states_at_kill)
        print(f"\n[worker kill] received {at_kill}/{total} at the kill, rows then {dict(states_at_kill)}; "
              f"all {total} received {recovered:.1f}s after the kill; {report['duplicates']} duplicate "
              f"sends ({report['duplicated_subscribers']} subscribers), all with their first copy's MessageID")


# -- 2. retries until the consumer is back; dead after the bound; redelivery ---------------------------------
def test_retry_until_consumer_back_then_dead_letter_and_redelivery(tmp_path):
    max_attempts = 5
    env = {"HIEM_MAX_ATTEMPTS": str(max_attempts), "HIEM_BACKOFF_BASE": "0.5", "HIEM_BACKOFF_MAX": "1",
           # keep the circuit breaker out of this test (test 6 covers it)
           "HIEM_BREAKER_THRESHOLD": "100"}
    down = threading.Event()
    down.set()

    def flaky(_: bytes) -> tuple[int, dict[str, str], bytes]:
        return (503, {}, b"") if down.is_set() else (202, {}, b"")

    late_port = free_port()  # nothing listens here yet: connection refused
    late_url = f"http://127.0.0.1:{late_port}/late"
    with (RecordingConsumer(flaky) as stays_down,
          running_broker("embedded", tmp_path, **env) as broker, rows_of(broker) as rows):
        late = subscribe(broker.url, late_url)
        dead = subscribe(broker.url, stays_down.url)
        published = time.monotonic()
        assert publish(broker.url).status_code == 202

        # the late consumer: refused twice (at least), then it starts listening and gets the Notify
        def refused_twice() -> bool:
            row = rows.delivery_for(late)
            return row is not None and row.attempts >= 2 and row.state == "retrying"
        wait_until(refused_twice, 20, "two refused attempts")
        row = rows.delivery_for(late)
        assert "Connect" in row.last_error and "refused" in row.last_error, row.last_error
        with RecordingConsumer(port=late_port) as late_consumer:
            got = late_consumer.wait_for(1, timeout=20)
            wait_until(lambda: rows.delivery_for(late).state == "delivered", 10, "the late delivery recorded")
            row = rows.delivery_for(late)
            assert 3 <= row.attempts <= max_attempts, row.attempts
            assert row.last_error is None
            # barrier: a marker to the same endpoint through a second subscription (another topic; a second
            # Notify on this one would also go to the 503 consumer), published once the delivery was recorded:
            # a second send already on its way was queued for this consumer before the marker; one merely
            # scheduled in the database is not, so the row must also still be delivered, attempts unchanged
            with marker_subscription(broker.url, late_url):
                publish_marker(broker.url, "after-late")
                wait_for_marker(late_consumer, "after-late")
            assert [marker_of(r) for r in late_consumer.received] == [None, "after-late"], "delivered once, not again"
            after = rows.delivery_for(late)
            assert (after.state, after.attempts) == ("delivered", row.attempts), "no second send scheduled"
            print(f"\n[retry] late consumer received it after {got[0].at - published:.1f}s, "
                  f"attempt {row.attempts}")

        # the consumer answering 503 throughout: dead after max_attempts, with the reason
        wait_until(lambda: rows.delivery_for(dead).state == "dead", 30, "the 503 delivery to go dead")
        row = rows.delivery_for(dead)
        assert row.attempts == max_attempts
        assert row.last_status == 503
        assert row.last_error.startswith("HTTP 503"), row.last_error
        assert f"gave up after {max_attempts} attempts" in row.last_error, row.last_error
        assert len(stays_down.received) == max_attempts
        first_id = message_id(stays_down.received[0])
        assert {message_id(r) for r in stays_down.received} == {first_id}, "every attempt has the same MessageID"

        # back up, redelivered by the operator: arrives exactly once more, same MessageID
        down.clear()
        redelivered = time.monotonic()
        redelivery = subprocess.run([sys.executable, "-m", "hiem.cli", "deliveries", "redeliver", str(row.id)],
                                    env=broker.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert redelivery.returncode == 0, redelivery.stdout + redelivery.stderr
        assert "redelivering 1 deliveries" in redelivery.stdout, redelivery.stdout
        stays_down.wait_for(max_attempts + 1, timeout=20)
        arrived = stays_down.received[-1].at - redelivered
        wait_until(lambda: rows.delivery_for(dead).state == "delivered", 10, "the redelivered delivery recorded")
        assert rows.delivery_for(dead).attempts == 1, "redelivery gives a fresh attempt budget"
        # barrier: a marker to the same consumer through a second subscription (another topic), published once
        # the redelivery was recorded: a second send already on its way was queued for this consumer before it;
        # one merely scheduled in the database is not, so the row must also still be delivered after one attempt
        with marker_subscription(broker.url, stays_down.url):
            publish_marker(broker.url, "after-redelivery")
            wait_for_marker(stays_down, "after-redelivery")
        assert [marker_of(r) for r in stays_down.received] == [None] * (max_attempts + 1) + ["after-redelivery"], \
            "exactly one more send after the redelivery"
        after = rows.delivery_for(dead)
        assert (after.state, after.attempts) == ("delivered", 1), "no second send scheduled"
        assert message_id(stays_down.received[max_attempts]) == first_id
        again = subprocess.run([sys.executable, "-m", "hiem.cli", "deliveries", "redeliver", str(row.id)],
                               env=broker.env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert again.returncode == 1 and "no dead deliveries matched" in again.stdout
        print(f"[dead letter] dead after {max_attempts} attempts: {row.last_error!r}; the redelivered delivery "
              f"arrived {arrived:.1f}s after `hiem deliveries redeliver` was started")


# -- 3. a hanging consumer does not delay a fast one ---------------------------------------------------------
class Hanging:
    """A consumer behaviour that holds every request until released (or ``hang`` seconds)."""

    def __init__(self, hang: float) -> None:
        self.hang = hang
        self.release = threading.Event()
        self.requests = 0
        self._lock = threading.Lock()

    def __call__(self, _: bytes) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests += 1
        self.release.wait(self.hang)
        return 202, {}, b""


def warm_up(broker: Broker, consumer: RecordingConsumer, count: int = 3) -> None:
    """A few deliveries first, so that the measured one does not pay the workers' first-task start-up."""
    for index in range(count):
        assert publish(broker.url, index).status_code == 202
        consumer.wait_for(index + 1, timeout=30)


def test_hanging_consumer_does_not_delay_a_fast_one(tmp_path):
    read_timeout, hang = 6.0, 15.0
    hanging = Hanging(hang)
    # Distributed: the embedded memory transport polls once a second, so its idle publish-to-receipt latency
    # is already 1.2-2 s (two hops: fan-out, then deliver); Redis hands tasks over at once.
    redis_url = require_redis()
    with (fresh_postgres_database() as database_url, RecordingConsumer(hanging) as slow, RecordingConsumer() as fast,
          running_broker("distributed", tmp_path, database_url, redis_url, HIEM_READ_TIMEOUT=str(read_timeout))
          as broker, rows_of(broker) as rows):
        try:
            subscribe(broker.url, fast.url)
            warm_up(broker, fast)
            slow_subscription = subscribe(broker.url, slow.url)
            sent = time.monotonic()
            assert publish(broker.url, 99).status_code == 202
            accepted = time.monotonic()
            received = fast.wait_for(4, timeout=30)[-1]
            latency = received.at - sent
            wait_until(lambda: hanging.requests >= 1, 10, "the slow consumer to be sent its Notify")
            assert latency < 3.0, f"the fast consumer waited {latency:.2f}s"

            def timed_out() -> bool:
                row = rows.delivery_for(slow_subscription)
                return row is not None and row.state in ("retrying", "in_flight", "pending") and "timeout" in (
                    row.last_error or "")
            wait_until(timed_out, read_timeout + 15, "the hanging delivery to time out")
            timed = time.monotonic() - sent
            assert timed >= read_timeout - 0.5
            print(f"\n[slow consumer] fast consumer received {latency * 1000:.0f} ms after the publish was sent "
                  f"({(received.at - accepted) * 1000:.0f} ms after its 202) while the other hangs {hang:.0f}s; "
                  f"the hanging attempt was recorded as timed out {timed:.1f}s after the publish "
                  f"(HIEM_READ_TIMEOUT={read_timeout:.0f})")
        finally:
            hanging.release.set()


def test_hanging_consumer_does_not_hold_up_later_notifications(tmp_path):
    read_timeout, hang, count = 8.0, 20.0, 3
    hanging = Hanging(hang)
    redis_url = require_redis()
    latencies: list[float] = []
    with (fresh_postgres_database() as database_url, RecordingConsumer(hanging) as slow, RecordingConsumer() as fast,
          running_broker("distributed", tmp_path, database_url, redis_url, workers=0,
                         HIEM_READ_TIMEOUT=str(read_timeout)) as broker):
        try:
            broker.start_worker("-c", "2")  # Celery's default on this 2-core machine: one child per core
            subscribe(broker.url, fast.url)
            warm_up(broker, fast, 2)
            subscribe(broker.url, slow.url)
            for index in range(count):
                sent = time.monotonic()
                assert publish(broker.url, 10 + index).status_code == 202
                latencies.append(fast.wait_for(3 + index, timeout=60)[-1].at - sent)
                time.sleep(0.3)
            print(f"\n[slow consumer, sustained] fast consumer latencies with one consumer hanging: "
                  f"{[round(x, 2) for x in latencies]} s (HIEM_READ_TIMEOUT={read_timeout:.0f}, 2 worker children)")
            assert max(latencies) < 3.0, f"a later notification waited {max(latencies):.1f}s for a free worker"
        finally:
            hanging.release.set()


# -- 4. Redis killed (no persistence) during a fan-out and restarted ----------------------------------------
def test_redis_restart_during_fan_out_loses_nothing(tmp_path):
    total = 100
    with (RedisServer(tmp_path / "redis") as redis, fresh_postgres_database() as database_url,
          RecordingConsumer(accept_after(0.02, 0.05)) as consumer,
          running_broker("distributed", tmp_path, database_url, redis.url) as broker, rows_of(broker) as rows):
        paths = [f"/r/{i}" for i in range(total)]
        subscribe_many(broker.url, [f"http://127.0.0.1:{consumer.port}{p}" for p in paths])

        assert publish(broker.url).status_code == 202
        wait_until(lambda: len(consumer.received) >= 10, 60, "the first 10 deliveries", interval=0.005)
        redis.kill()
        killed_at = time.monotonic()
        at_kill = len(consumer.received)
        assert at_kill < total, "the fan-out was over before Redis died; the test proves nothing"
        time.sleep(1.0)
        redis.start()
        wait_until(lambda: len({r.path for r in consumer.received}) == total, 90,
                   "every subscriber to receive the notification after the Redis restart")
        recovered = time.monotonic() - killed_at
        wait_until(lambda: rows.all_finished(total), 30, "all deliveries recorded as delivered")
        report = check_fan_out_complete(consumer, paths)
        print(f"\n[redis restart] received {at_kill}/{total} when Redis was killed (down 1 s, restarted empty); "
              f"all {total} received {recovered:.1f}s after the kill; {report['duplicates']} duplicates")


# -- 5. the database unreachable: the publisher is told to retry (SOAP Receiver fault), /healthz says 503 ------
def test_database_unreachable_gives_the_publisher_a_receiver_fault(tmp_path):
    redis_url = require_redis()
    with fresh_postgres_database() as direct_url, RecordingConsumer() as consumer:
        direct = sa.engine.make_url(direct_url)
        with TcpProxy(direct.host or "127.0.0.1", direct.port or 5432) as proxy:
            proxied = direct.set(port=proxy.port).render_as_string(hide_password=False)
            with running_broker("distributed", tmp_path, proxied, redis_url) as broker:
                subscribe(broker.url, consumer.url)
                assert publish(broker.url, 1).status_code == 202
                consumer.wait_for(1)

                proxy.cut()
                started = time.monotonic()
                refused = publish(broker.url, 2)
                answered = time.monotonic() - started
                assert refused.status_code == 500, refused.text
                fault = wsn.body_element(refused)
                assert fault.tag == f"{{{ns.SOAP12}}}Fault", refused.text
                code = fault.findtext(f"{{{ns.SOAP12}}}Code/{{{ns.SOAP12}}}Value")
                prefix, _, local = code.partition(":")
                assert fault.nsmap[prefix] == ns.SOAP12 and local == "Receiver", code
                reason = fault.findtext(f"{{{ns.SOAP12}}}Reason/{{{ns.SOAP12}}}Text")
                assert "retry" in reason, reason
                health = httpx.get(f"{broker.url}/healthz", timeout=30)
                assert health.status_code == 503, health.text
                assert health.json()["database"].startswith("error"), health.text
                assert health.json()["broker"] == "ok"

                proxy.restore()
                wait_until(lambda: httpx.get(f"{broker.url}/healthz", timeout=30).status_code == 200, 30,
                           "/healthz to recover")
                assert publish(broker.url, 3).status_code == 202
                consumer.wait_for(2, timeout=30)
                # barrier: a marker (event 4) on the same subscription. Its fan-out first fans out every earlier
                # notification still pending, so a recorded Notify 2 would have been queued for this consumer first
                # (even one recorded but never enqueued, which the sweeper would only find after a whole lease)
                assert publish(broker.url, 4).status_code == 202
                consumer.wait_for_match(lambda r: event_index(r.body) == 4, 30, "the marker (event 4)")
                indexes = [event_index(r.body) for r in consumer.received]
                assert indexes == [1, 3, 4], "the refused Notify was not recorded, the accepted ones were delivered"
                rows = Rows(direct_url)
                try:
                    assert rows.query("SELECT count(*) AS n FROM notifications")[0].n == 3, "1, 3 and the marker"
                finally:
                    rows.close()
                print(f"\n[database cut] Receiver fault (HTTP 500) in {answered * 1000:.0f} ms; "
                      f"/healthz 503 ({health.json()['database']}); accepted again after the restore")


# -- 6. the circuit breaker parks a refusing consumer, then lets it in again --------------------------------
def test_circuit_breaker_parks_a_refusing_consumer_and_recovers(tmp_path):
    env = {"HIEM_BREAKER_THRESHOLD": "3", "HIEM_BREAKER_PARK": "2", "HIEM_BACKOFF_BASE": "0.2",
           "HIEM_BACKOFF_MAX": "0.5"}
    port = free_port()  # nothing listens: connection refused
    origin = f"http://127.0.0.1:{port}"
    count = 4
    with running_broker("embedded", tmp_path, **env) as broker, rows_of(broker) as rows:
        subscribe(broker.url, f"{origin}/parked")
        for index in range(count):
            assert publish(broker.url, index).status_code == 202

        def parked_and_settled() -> sa.Row | None:
            consumer = rows.consumer(origin)
            deliveries = rows.deliveries()
            if consumer is None or consumer.parked_until is None or len(deliveries) != count:
                return None
            remaining = (utc(consumer.parked_until) - datetime.now(UTC)).total_seconds()
            settled = all(d.state == "retrying" for d in deliveries)
            return consumer if settled and remaining > 1.0 else None
        consumer = wait_until(parked_and_settled, 20, "the consumer to be parked with its deliveries waiting",
                              interval=0.05)
        assert consumer.consecutive_failures >= 3 and consumer.park_count >= 1
        assert "Connect" in consumer.last_error
        before = {d.id: d.attempts for d in rows.deliveries()}
        parked_until = utc(consumer.parked_until)
        for d in rows.deliveries():
            assert utc(d.next_attempt_at) <= parked_until, "released until the park ends, not later"
        time.sleep(max(0.0, (parked_until - datetime.now(UTC)).total_seconds() - 0.3))
        during = rows.deliveries()
        assert {d.id: d.attempts for d in during} == before, "attempts must not grow while parked"
        assert all(d.state == "retrying" for d in during), [d.state for d in during]
        print(f"\n[breaker] parked after {consumer.consecutive_failures} consecutive failures "
              f"(HIEM_BREAKER_THRESHOLD=3, HIEM_BREAKER_PARK=2); attempts per delivery while parked: "
              f"{sorted(before.values())}, unchanged")

        with RecordingConsumer(port=port) as back:
            back.wait_for(count, timeout=30)
            wait_until(lambda: rows.all_finished(count), 20, "every queued delivery delivered")
            state = rows.consumer(origin)
            assert state.consecutive_failures == 0 and state.parked_until is None and state.park_count == 0
            assert sorted(event_index(r.body) for r in back.received) == list(range(count))
            print(f"[breaker] after coming back: {len(back.received)} queued deliveries arrived; attempts "
                  f"{sorted(d.attempts for d in rows.deliveries())}; breaker closed")


def test_circuit_breaker_trial_is_a_single_delivery(tmp_path):
    env = {"HIEM_BREAKER_THRESHOLD": "3", "HIEM_BREAKER_PARK": "2", "HIEM_BACKOFF_BASE": "0.2",
           "HIEM_BACKOFF_MAX": "0.5"}
    count = 4

    def unavailable(_: bytes) -> tuple[int, dict[str, str], bytes]:
        time.sleep(0.3)
        return 503, {}, b""

    with (RecordingConsumer(unavailable) as consumer, running_broker("embedded", tmp_path, **env) as broker,
          rows_of(broker) as rows):
        origin = f"http://127.0.0.1:{consumer.port}"
        subscribe(broker.url, consumer.url)
        for index in range(count):
            assert publish(broker.url, index).status_code == 202

        def parked_and_settled(parks: int) -> sa.Row | None:
            state = rows.consumer(origin)
            deliveries = rows.deliveries()
            settled = len(deliveries) == count and all(d.state == "retrying" for d in deliveries)
            return state if settled and state is not None and state.park_count == parks else None
        wait_until(lambda: parked_and_settled(1), 20, "the first park", interval=0.05)
        attempts = sum(d.attempts for d in rows.deliveries())
        wait_until(lambda: parked_and_settled(2), 20, "the failed trial to park the consumer again", interval=0.05)
        spent = sum(d.attempts for d in rows.deliveries()) - attempts
        print(f"\n[breaker trial] the failed trial after the first park spent {spent} attempts "
              f"({count} deliveries queued)")
        assert spent == 1, f"the trial spent {spent} attempts, one per queued delivery"


# -- 7. ordered delivery: a failing message holds back the later ones, order is kept --------------------------
def test_ordered_delivery_keeps_publish_order_through_retries(tmp_path):
    count, latency = 10, 0.1
    lock = threading.Lock()
    answers: list[tuple[int, int, float]] = []
    active = [0, 0]  # requests being answered now, the most at once

    def fails_twice(body: bytes) -> tuple[int, dict[str, str], bytes]:
        with lock:
            active[0] += 1
            active[1] = max(active)
        time.sleep(latency)
        with lock:
            active[0] -= 1
            status = 503 if len(answers) < 2 else 202
            answers.append((event_index(body), status, time.monotonic()))
        return status, {}, b""

    redis_url = require_redis()
    with (fresh_postgres_database() as database_url, RecordingConsumer(fails_twice) as consumer,
          running_broker("distributed", tmp_path, database_url, redis_url, HIEM_ORDERED_DELIVERY="1") as broker,
          rows_of(broker) as rows):
        subscribe(broker.url, consumer.url)
        started = time.monotonic()
        for index in range(count):
            assert publish(broker.url, index).status_code == 202
        published = time.monotonic() - started
        wait_until(lambda: sum(1 for answer in answers if answer[1] == 202) >= count, 60,
                   "every notification to be accepted")
        wait_until(lambda: rows.all_finished(count), 20, "every delivery recorded")
        # barrier: a marker (event `count`) on the same ordered subscription, claimed only once no earlier delivery
        # of it is pending, in flight or retrying: a second send of one of them would have come before it
        assert publish(broker.url, count).status_code == 202
        consumer.wait_for_match(lambda r: event_index(r.body) == count, 30, f"the marker (event {count})")
        with lock:
            seen = list(answers)
        accepted = [index for index, status, _ in seen if status == 202]
        assert accepted == list(range(count + 1)), f"accepted out of order: {seen}"
        assert [a[:2] for a in seen[:3]] == [(0, 503), (0, 503), (0, 202)], "the first is retried before the rest"
        assert len(consumer.received) == count + 2 + 1, "nothing sent twice (the 2 refusals, then the marker)"
        assert active[1] == 1, f"{active[1]} requests of one ordered subscription were in flight at once"
        first_ok, last_ok = seen[2][2], seen[-2][2]  # the first's and the last's acceptance (the marker's is -1)
        rate = (count - 1) / (last_ok - first_ok)
        print(f"\n[ordered] {count} published in {published:.2f}s; accepted in order {accepted[:count]} after 2 "
              f"refusals of the first; at most {active[1]} request in flight; once the first got through, "
              f"{rate:.1f} deliveries/s with a {latency * 1000:.0f} ms consumer; last accepted "
              f"{last_ok - started:.1f}s after the first publish")
