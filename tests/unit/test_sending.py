"""The per-process delivery pipeline (hiem.delivery.pipeline): per-consumer limits, a hanging consumer, batching."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from hiem.config import DeliverySettings
from hiem.delivery import pipeline as sending
from hiem.delivery.attempts import Attempted
from hiem.delivery.pipeline import OriginQueues, OutcomeRecorder
from hiem.store.deliveries import Claim
from tests.support.faults import wait_until


def claim(n: int, address: str = "http://a.example/notify") -> Claim:
    return Claim(delivery_id=n, attempt=1, notification_id=1, subscription_id=f"s{n}", consumer_address=address,
                 consumer_reference_parameters=b"", manager_address="http://hiem/wsn/SubscriptionManager",
                 dialect="http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete", soap_version="1.2",
                 sequence=n, topic_namespace="urn:t", topic_path="a", message_xml=b"<m/>",
                 producer_reference=b"", created_at=datetime.now(UTC))


class Batches:
    """The recorder's write function: keeps every batch it was given."""

    def __init__(self) -> None:
        self.batches: list[list[Attempted]] = []
        self.lock = threading.Lock()

    def __call__(self, batch: list[Attempted]) -> None:
        with self.lock:
            self.batches.append(list(batch))

    def items(self) -> list[Attempted]:
        with self.lock:
            return [item for batch in self.batches for item in batch]


def wait_for(predicate, timeout: float = 10.0) -> object:  # type: ignore[no-untyped-def]
    return wait_until(predicate, timeout, "the pipeline", interval=0.01)


def hanging_on(release: threading.Event, origin: str | None = None):  # type: ignore[no-untyped-def]
    """A send that holds its thread until ``release`` for ``origin`` (every origin when None), then succeeds."""

    def send(_rt, c: Claim, at: str) -> Attempted:  # type: ignore[no-untyped-def]
        if origin is None or at == origin:
            release.wait(10)
        return Attempted(c, at, status_code=202)

    return send


@pytest.fixture
def pipeline():  # type: ignore[no-untyped-def]
    made: list[tuple[OriginQueues, OutcomeRecorder]] = []

    def make(send, limit: int = 2, lease: float = 60.0):  # type: ignore[no-untyped-def]
        written = Batches()
        recorder = OutcomeRecorder(written)
        recorder.start()
        delivery = DeliverySettings(consumer_concurrency=limit, visibility_timeout=lease)
        rt = SimpleNamespace(settings=SimpleNamespace(delivery=delivery))
        queues = OriginQueues(rt, send, recorder, threads=8, backlog=64)  # type: ignore[arg-type]
        made.append((queues, recorder))
        return queues, written

    yield make
    for queues, recorder in made:
        queues.shutdown()
        recorder.stop()


def test_at_most_the_limit_per_consumer_and_every_outcome_recorded_in_batches(pipeline) -> None:  # type: ignore[no-untyped-def]
    lock, sending_now, peak = threading.Lock(), [0], [0]

    def send(_rt, c: Claim, origin: str) -> Attempted:  # type: ignore[no-untyped-def]
        with lock:
            sending_now[0] += 1
            peak[0] = max(peak[0], sending_now[0])
        time.sleep(0.01)
        with lock:
            sending_now[0] -= 1
        return Attempted(c, origin, status_code=202)

    queues, written = pipeline(send, limit=3)
    queues.submit_all([(claim(n), "http://a.example:80") for n in range(40)])
    wait_for(lambda: len(written.items()) == 40)
    assert peak[0] == 3, "the per-consumer limit is what bounds concurrency"
    assert sorted(item.claim.delivery_id for item in written.items()) == list(range(40))
    assert len(written.batches) < 40, "outcomes are written in batches, not one transaction each"


def test_a_hanging_consumer_does_not_hold_back_another(pipeline, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sending, "ORIGIN_QUEUE_LIMIT", 2)
    monkeypatch.setattr(sending, "BUSY_WAIT_SECONDS", 0.2)
    release = threading.Event()
    queues, written = pipeline(hanging_on(release, "http://hang:80"), limit=1)
    started = time.monotonic()
    queues.submit_all([(claim(n, "http://hang/"), "http://hang:80") for n in range(10)])
    queues.submit_all([(claim(100 + n, "http://ok/"), "http://ok:80") for n in range(5)])
    wait_for(lambda: sum(1 for i in written.items() if i.origin == "http://ok:80") == 5)
    assert time.monotonic() - started < 3, "the healthy consumer waited behind the hanging one"
    released = [i for i in written.items() if i.released_until is not None]
    # 1 sending + 2 queued stay; the other 7 go back to the database without an attempt
    assert sorted(i.claim.delivery_id for i in released) == list(range(3, 10))
    assert all("busy" in i.released_reason for i in released)
    release.set()
    wait_for(lambda: sum(1 for i in written.items() if i.origin == "http://hang:80" and i.status_code) == 3)


def test_recorder_retries_a_failed_write_then_stops_cleanly() -> None:
    from sqlalchemy.exc import OperationalError

    calls: list[int] = []

    def flaky(batch: list[Attempted]) -> None:
        calls.append(len(batch))
        if len(calls) == 1:
            raise OperationalError("UPDATE", {}, Exception("database is locked"))

    recorder = OutcomeRecorder(flaky)
    recorder.start()
    recorder.put(Attempted(claim(1), "http://a:80", status_code=200))
    wait_for(lambda: len(calls) == 2)
    recorder.put(Attempted(claim(2), "http://a:80", status_code=200))
    recorder.stop()
    assert not recorder.is_alive()
    assert calls == [1, 1, 1], "the failed batch was written again, and the last one before stopping"


def test_recorder_gives_up_at_its_deadline_without_a_last_pause(monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging
    import time

    from sqlalchemy.exc import OperationalError

    from hiem.delivery import pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "RECORD_RETRY_SECONDS", 1.0)
    calls: list[float] = []

    def down(batch: list[Attempted]) -> None:
        calls.append(time.monotonic())
        raise OperationalError("UPDATE", {}, Exception("server closed the connection"))

    recorder = OutcomeRecorder(down)
    with caplog.at_level(logging.ERROR, logger=pipeline_module.log.name):
        recorder.start()
        recorder.put(Attempted(claim(1), "http://a:80", status_code=200))
        wait_for(lambda: "gave up recording 1 delivery outcomes" in caplog.text)
        gave_up = time.monotonic()
    recorder.stop()
    # tries at 0, 0.2 and 0.6 s; the next pause (0.8 s) would pass the deadline, so it gives up at once
    assert len(calls) == 3
    assert gave_up - calls[-1] < 0.5, "no pause after the last try"


def test_claims_of_an_origin_parked_meanwhile_go_back_until_the_park_ends(pipeline) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()
    sent: list[int] = []

    def send(_rt, c: Claim, origin: str) -> Attempted:  # type: ignore[no-untyped-def]
        gate.wait(10)
        sent.append(c.delivery_id)
        return Attempted(c, origin, status_code=202)

    queues, written = pipeline(send, limit=1)
    queues.submit_all([(claim(n), "http://a:80") for n in range(4)])
    until = datetime.now(UTC) + timedelta(minutes=5)
    queues.park("http://a:80", until)  # what the recorder does when a failure parks the origin
    gate.set()
    wait_for(lambda: len(written.items()) == 4)
    assert sent == [0], "only the claim already being sent went out"
    released = sorted((i for i in written.items() if i.released_until), key=lambda i: i.claim.delivery_id)
    assert [i.claim.delivery_id for i in released] == [1, 2, 3]
    assert all(i.released_until == until and "parked" in i.released_reason for i in released)


def test_a_stopping_process_gives_back_what_it_has_not_started(pipeline) -> None:  # type: ignore[no-untyped-def]
    gate = threading.Event()

    def send(_rt, c: Claim, origin: str) -> Attempted:  # type: ignore[no-untyped-def]
        gate.wait(10)
        return Attempted(c, origin, status_code=202)

    queues, written = pipeline(send, limit=2)
    queues.submit_all([(claim(n), "http://a:80") for n in range(6)])
    stopper = threading.Thread(target=queues.shutdown)
    stopper.start()
    wait_for(lambda: len(written.items()) == 4)  # the 4 queued ones, given back at once
    gate.set()
    stopper.join(10)
    assert not stopper.is_alive()
    wait_for(lambda: len(written.items()) == 6)
    items = written.items()
    assert sorted(i.claim.delivery_id for i in items if i.status_code) == [0, 1], "sends in progress finish"
    assert sorted(i.claim.delivery_id for i in items if i.released_until) == [2, 3, 4, 5]
    assert all(i.released_reason == "worker stopping" for i in items if i.released_until)


def test_a_claim_that_waited_half_its_lease_is_given_back_not_sent(pipeline, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    sent: list[int] = []

    def send(_rt, c: Claim, origin: str) -> Attempted:  # type: ignore[no-untyped-def]
        sent.append(c.delivery_id)
        time.sleep(0.3)
        return Attempted(c, origin, status_code=202)

    queues, written = pipeline(send, limit=1, lease=0.4)
    queues.submit_all([(claim(n), "http://a:80") for n in range(3)])
    wait_for(lambda: len(written.items()) == 3)
    assert sent == [0], "the others would have outlived half their 0.4 s lease before their turn"
    assert all(i.released_reason == "waited too long for the consumer"
               for i in written.items() if i.released_until)


def test_sender_threads_are_replaced_every_few_thousand_sends_and_nothing_is_lost(pipeline, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """libxml2 keeps every id libxmlsec1 resolved in the sending thread's dictionary for the thread's
    life, so sender pools retire after SENDS_PER_POOL sends; the retired threads finish and exit."""
    monkeypatch.setattr(sending, "SENDS_PER_POOL", 5)
    threads_seen: set[threading.Thread] = set()  # the objects: the OS reuses the idents of ended threads
    lock = threading.Lock()

    def send(_rt, c: Claim, origin: str) -> Attempted:  # type: ignore[no-untyped-def]
        with lock:
            threads_seen.add(threading.current_thread())
        time.sleep(0.005)
        return Attempted(c, origin, status_code=202)

    queues, written = pipeline(send, limit=4)
    queues.submit_all([(claim(n), "http://a.example:80") for n in range(60)])
    wait_for(lambda: len(written.items()) == 60)
    assert sorted(item.claim.delivery_id for item in written.items()) == list(range(60)), "each sent once"
    assert len(threads_seen) > 4, "more threads than one pool ever needed at once: pools were replaced"
    wait_for(lambda: queues.pools() <= 2)  # retired pools with nothing left are forgotten (one per lane left)
    wait_for(lambda: sum(thread.is_alive() for thread in threads_seen) <= 8)  # at most one pool (8) lives on


def test_express_claims_are_sent_while_every_main_sender_is_busy(pipeline) -> None:  # type: ignore[no-untyped-def]
    """A small fan-out's deliveries have sender threads of their own: they go out while all 8 main threads
    hang on a large fan-out's consumer."""
    release = threading.Event()
    queues, written = pipeline(hanging_on(release, "http://big:80"), limit=8)
    try:
        queues.submit_all([(claim(n, "http://big/"), "http://big:80") for n in range(20)])
        queues.submit_all([(claim(100 + n, "http://small/"), "http://small:80") for n in range(5)], express=True)
        wait_for(lambda: len(written.items()) == 5)
        assert {item.claim.delivery_id for item in written.items()} == set(range(100, 105))
    finally:
        release.set()
    wait_for(lambda: len(written.items()) == 25)


def test_express_claims_go_first_in_their_consumers_queue(pipeline) -> None:  # type: ignore[no-untyped-def]
    release = threading.Event()
    order: list[int] = []

    def send(_rt, c: Claim, origin: str) -> Attempted:  # type: ignore[no-untyped-def]
        if c.delivery_id == 0:
            release.wait(10)
        order.append(c.delivery_id)
        return Attempted(c, origin, status_code=202)

    queues, written = pipeline(send, limit=1)
    queues.submit_all([(claim(n), "http://a:80") for n in range(5)])
    queues.submit_all([(claim(100), "http://a:80"), (claim(101), "http://a:80")], express=True)
    queues.submit_all([(claim(102), "http://a:80")], express=True)
    release.set()
    wait_for(lambda: len(written.items()) == 8)
    assert order == [0, 100, 101, 102, 1, 2, 3, 4]  # express first, each kind in the order it came


def test_express_claims_never_wait_for_room_they_are_given_back(pipeline, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A consumer that hangs holds at most EXPRESS_ORIGIN_LIMIT waiting express claims; the rest are given
    back to the database at once (the caller, a fan-out task, is never blocked by one slow consumer)."""
    monkeypatch.setattr(sending, "EXPRESS_ORIGIN_LIMIT", 3)
    release = threading.Event()
    queues, written = pipeline(hanging_on(release), limit=1)
    try:
        started = time.monotonic()
        queues.submit_all([(claim(n, "http://hang/"), "http://hang:80") for n in range(10)], express=True)
        assert time.monotonic() - started < 1.0
        # 1 sending + 3 waiting; the other 6 given back, due again shortly
        wait_for(lambda: len(written.items()) == 6)
        assert all(item.released_until is not None for item in written.items())
        assert sorted(item.claim.delivery_id for item in written.items()) == list(range(4, 10))
    finally:
        release.set()
    wait_for(lambda: len(written.items()) == 10)
