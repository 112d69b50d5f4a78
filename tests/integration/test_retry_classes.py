"""Retry rules by meaning, against real HTTP consumers: what may succeed later is retried, what blames the
message is final.

Retryable: a SOAP Receiver (1.2) or Server (1.1) fault, HTTP 5xx, 408, 429 and 503 with Retry-After
(honoured up to HIEM_BACKOFF_MAX). Final: a SOAP Sender/Client fault, a MustUnderstand fault (the
consumer does not process WS-Security, which HIEM requires), other 4xx. And every delivery ends at
HIEM_MAX_AGE, retryable or not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from hiem import ns
from tests.conftest import Broker, broker_in_mode
from tests.support import wsn
from tests.support.consumer import RecordingConsumer
from tests.support.faults import wait_until

pytestmark = pytest.mark.slow

Answer = tuple[int, dict[str, str], bytes]


def _fault12(code: str, reason: str) -> bytes:
    return (f'<s:Envelope xmlns:s="{ns.SOAP12}"><s:Body><s:Fault><s:Code><s:Value>s:{code}</s:Value></s:Code>'
            f'<s:Reason><s:Text xml:lang="en">{reason}</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>').encode()


def _fault11(code: str, reason: str) -> bytes:
    return (f'<e:Envelope xmlns:e="{ns.SOAP11}"><e:Body><e:Fault><faultcode>e:{code}</faultcode>'
            f"<faultstring>{reason}</faultstring></e:Fault></e:Body></e:Envelope>").encode()


def answering(status: int, body: bytes = b"", **headers: str) -> Callable[[bytes], Answer]:
    content_type = {"Content-Type": "application/soap+xml"} if body else {}
    return lambda _: (status, {**content_type, **headers}, body)


# name: (the consumer's answer, retried?, what last_error must say)
CASES: dict[str, tuple[Callable[[bytes], Answer], bool, str]] = {
    "SOAP 1.2 Receiver fault": (answering(500, _fault12("Receiver", "database restarting")), True,
                                "SOAP Receiver fault (retried): database restarting"),
    "SOAP 1.1 Server fault": (answering(500, _fault11("Server", "busy")), True, "SOAP Server fault (retried): busy"),
    "SOAP 1.1 Server.Busy fault": (answering(500, _fault11("Server.Busy", "later")), True, "SOAP Server fault"),
    "HTTP 502": (answering(502), True, "HTTP 502"),
    "HTTP 408": (answering(408), True, "HTTP 408"),
    "HTTP 429": (answering(429), True, "HTTP 429"),
    "SOAP 1.2 Sender fault": (answering(400, _fault12("Sender", "unknown subscription")), False,
                              "SOAP Sender fault: unknown subscription"),
    "SOAP 1.1 Client fault": (answering(500, _fault11("Client", "bad request")), False, "SOAP Client fault"),
    "MustUnderstand fault": (answering(500, _fault12("MustUnderstand", "wsse:Security not understood")), False,
                             "the consumer does not process WS-Security"),
    "HTTP 404": (answering(404, b""), False, "HTTP 404"),
}


class Deliveries:
    def __init__(self, broker: Broker) -> None:
        self.engine = sa.create_engine(broker.env["HIEM_DATABASE_URL"], poolclass=NullPool)

    def of(self, subscription_id: str) -> sa.Row | None:
        with self.engine.connect() as connection:
            return connection.execute(sa.text(
                "SELECT state, attempts, last_error, last_status, next_attempt_at, updated_at FROM deliveries"
                " WHERE subscription_id = :s"), {"s": subscription_id}).first()


@pytest.fixture(scope="module", params=["embedded", "distributed"])
def world(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Broker, Deliveries]]:
    # backoff short enough to see a second attempt, long enough ceiling for Retry-After: 30 to count
    windows = {"HIEM_BACKOFF_BASE": "0.3", "HIEM_BACKOFF_MAX": "60", "HIEM_BREAKER_THRESHOLD": "1000"}
    with broker_in_mode(request.param, tmp_path_factory.mktemp(f"retry-classes-{request.param}"),
                        **windows) as broker:
        rows = Deliveries(broker)
        try:
            yield broker, rows
        finally:
            rows.engine.dispose()


def _subscribe(broker: Broker, consumer: RecordingConsumer, topic: str) -> str:
    response = wsn.call(broker.url, "Subscribe", wsn.subscribe_body(consumer.url, topic=topic))
    assert response.status_code == 200, response.text
    return wsn.subscription_id(response)


def _publish(broker: Broker, topic: str) -> None:
    response = wsn.call(broker.url, "Notify", wsn.notify_body(topic=topic))
    assert response.status_code == 202, response.text


def test_each_answer_is_retried_or_final_by_its_meaning(world: tuple[Broker, Deliveries]) -> None:
    broker, rows = world
    topic = "nhin:GIPSE/Biosurveillance/Fever"
    with ExitStack() as stack:
        subscriptions = {}
        for name, (behaviour, _, _) in CASES.items():
            consumer = stack.enter_context(RecordingConsumer(behaviour))
            subscriptions[name] = (_subscribe(broker, consumer, topic), consumer)
        _publish(broker, topic)
        for name, (_, retried, says) in CASES.items():
            subscription, consumer = subscriptions[name]
            if retried:  # a second attempt proves it: the first failure left the delivery to be retried
                consumer.wait_for(2, timeout=30)
                row = rows.of(subscription)
                assert row.state in {"retrying", "in_flight"}, (name, row)
            else:
                row = wait_until(lambda s=subscription: (r := rows.of(s)) is not None and r.state == "dead" and r,
                                 30, f"{name}: dead")
                assert row.attempts == 1, (name, row)
                assert len(consumer.received) == 1, (name, "a final answer is not sent again")
            assert says in (row.last_error or ""), (name, row.last_error)


def test_retry_after_is_honoured_within_the_backoff_ceiling(world: tuple[Broker, Deliveries]) -> None:
    broker, rows = world
    topic = "nhin:GIPSE/Biosurveillance/Pneumonia"
    with RecordingConsumer(answering(503, b"", **{"Retry-After": "30"})) as consumer:
        subscription = _subscribe(broker, consumer, topic)
        _publish(broker, topic)
        row = wait_until(lambda: (r := rows.of(subscription)) is not None and r.attempts == 1
                         and r.state == "retrying" and r, 30, "the first 503")
        next_at, updated = (_aware(row.next_attempt_at), _aware(row.updated_at))
        assert 29 <= (next_at - updated).total_seconds() <= 61, (row.next_attempt_at, row.updated_at)
        assert "HTTP 503" in row.last_error


@pytest.mark.parametrize("mode", ["embedded", "distributed"])
def test_every_delivery_ends_at_max_age(tmp_path: Path, mode: str) -> None:
    settings = {"HIEM_MAX_AGE": "3", "HIEM_BACKOFF_BASE": "0.3", "HIEM_BACKOFF_MAX": "0.5",
                "HIEM_BREAKER_THRESHOLD": "1000", "HIEM_MAX_ATTEMPTS": "1000"}
    with broker_in_mode(mode, tmp_path, **settings) as broker, ExitStack() as stack:
        rows = Deliveries(broker)
        stack.callback(rows.engine.dispose)
        with RecordingConsumer(answering(503)) as consumer:
            subscription = _subscribe(broker, consumer, "nhin:GIPSE/Biosurveillance/InfluenzaLikeIllness")
            _publish(broker, "nhin:GIPSE/Biosurveillance/InfluenzaLikeIllness")
            row = wait_until(lambda: (r := rows.of(subscription)) is not None and r.state == "dead" and r, 30,
                             "dead once HIEM_MAX_AGE passed")
            assert row.attempts >= 2, "retried while young"
            assert "gave up after" in row.last_error and "HTTP 503" in row.last_error
            assert len(consumer.received) == row.attempts


def _aware(value: datetime | str) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
