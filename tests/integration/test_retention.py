"""Retention end to end: a broker with short windows purges what it delivered, says so (`hiem db stats`,
`hiem status`, /metrics), keeps numbering where it was, and answers a replay from before the window
with SequenceOutOfRangeFault naming the oldest number it still has."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from hiem import ns
from hiem.wsn.faults import OLDEST_RETAINED_DIALECT
from tests.conftest import Broker, broker_in_mode, start_broker
from tests.support import wsn
from tests.support.consumer import RecordingConsumer
from tests.support.faults import wait_until
from tests.support.processes import ROOT

pytestmark = pytest.mark.slow
TOPIC = "nhin:GIPSE/Biosurveillance/Fever"
REPLAY = "urn:hiem:broker:1/SubscriptionManager/ReplayRequest"


def _replay(url: str, subscription: str, after: int) -> httpx.Response:
    body = f"<hiem:Replay xmlns:hiem='{ns.HIEM}'><hiem:After>{after}</hiem:After></hiem:Replay>"
    data = wsn.envelope(body, action=REPLAY, headers=wsn.subscription_header(subscription))
    return wsn.post(url, "/wsn/SubscriptionManager", data, action=REPLAY)


def _publish(url: str, index: int) -> None:
    response = wsn.call(url, "Notify", wsn.notify_body(topic=TOPIC, payload=f"<g:N xmlns:g='urn:g'>{index}</g:N>"))
    assert response.status_code == 202, response.text


def test_short_windows_purge_delivered_rows_and_replay_says_what_is_gone(tmp_path: Path) -> None:
    broker = start_broker("embedded", tmp_path, HIEM_RETAIN_DELIVERED="PT1S", HIEM_RETAIN_NOTIFICATIONS="PT1S",
                          HIEM_PURGE_INTERVAL="1", HIEM_SWEEP_INTERVAL="0.5")
    engine = sa.create_engine(broker.env["HIEM_DATABASE_URL"], poolclass=NullPool)
    count = _counter(engine)
    try:
        with RecordingConsumer() as consumer:
            subscription = wsn.subscription_id(wsn.call(broker.url, "Subscribe",
                                                        wsn.subscribe_body(consumer.url, topic=TOPIC)))
            for index in range(5):
                _publish(broker.url, index)
            consumer.wait_for(5, timeout=30)
            # all but the subscription's latest delivery go, and their notifications with them
            wait_until(lambda: count("SELECT count(*) FROM deliveries") == 1, 30, "the purge of delivered rows")
            wait_until(lambda: count("SELECT count(*) FROM notifications") == 1, 30, "the purge of notifications")

            gone = _replay(broker.url, subscription, 0)
            assert gone.status_code == 400, gone.text
            detail = wsn.body_element(gone).find(f".//{{{ns.HIEM}}}SequenceOutOfRangeFault")
            assert detail is not None, gone.text
            code = detail.find(f"{{{ns.WSRF_BF}}}ErrorCode")
            assert (code.get("dialect"), code.text) == (OLDEST_RETAINED_DIALECT, "5")
            kept = _replay(broker.url, subscription, 4)
            assert kept.status_code == 200, kept.text

            _publish(broker.url, 5)  # numbering continues where it was, not from 1
            received = consumer.wait_for(6, timeout=30)
            assert received[-1].envelope().findtext(f".//{{{ns.HIEM}}}Sequence") == "6"
            wait_until(lambda: count("SELECT count(*) FROM purge_totals WHERE kind = 'deliveries:delivered'"
                                     " AND rows = 5") == 1, 30, "the fifth delivery purged behind the sixth")

        stats = _cli(broker.env, "db", "stats")
        assert "deliveries" in stats and "purged so far: deliveries 5 (delivered 5)" in stats, stats
        status = _cli(broker.env, "status")
        assert "purged" in status and "deliveries 5" in status, status
        metrics = httpx.get(f"{broker.url}/metrics", timeout=10).text
        assert 'hiem_purged_rows_total{kind="deliveries"} 5.0' in metrics
        # counters stay monotonic: rows still here plus rows purged
        assert 'hiem_deliveries_completed_total{outcome="delivered"} 6.0' in metrics
        assert "hiem_notifications_received_total" in metrics and " 6.0" in metrics
    finally:
        engine.dispose()
        broker.stop()


def _counter(engine: sa.Engine) -> Callable[[str], int]:
    """``count(sql)``: the one number a SELECT answers, read on a connection of its own."""
    def count(sql: str) -> int:
        with engine.connect() as connection:
            return int(connection.execute(sa.text(sql)).scalar() or 0)
    return count


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "hiem.cli", *args], env=env, cwd=ROOT, text=True,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("mode", ["embedded", "distributed"])
def test_ended_subscriptions_and_old_audit_records_are_purged_and_counted(tmp_path: Path, mode: str) -> None:
    """What an agency left behind and what the audit trail no longer has to keep go too: neither table grows
    with churn (the soak's finding). No repository is configured here, so no record waits for shipping."""
    windows = {"HIEM_RETAIN_ENDED": "PT1S", "HIEM_AUDIT_RETENTION_DAYS": "0.00003",  # about 2.6 s
               "HIEM_PURGE_INTERVAL": "1", "HIEM_SWEEP_INTERVAL": "0.5"}
    with broker_in_mode(mode, tmp_path, **windows) as broker:
        engine = sa.create_engine(broker.env["HIEM_DATABASE_URL"], poolclass=NullPool)
        try:
            _purges_what_was_left(broker, _counter(engine))
        finally:
            engine.dispose()


def _purges_what_was_left(broker: Broker, count: Callable[[str], int]) -> None:
    with RecordingConsumer() as consumer:
        subscription = wsn.subscription_id(wsn.call(broker.url, "Subscribe",
                                                    wsn.subscribe_body(consumer.url, topic=TOPIC)))
        _publish(broker.url, 0)
        consumer.wait_for(1, timeout=30)
        gone = wsn.call(broker.url, "Unsubscribe", "<wsnt:Unsubscribe/>",
                        headers=wsn.subscription_header(subscription))
        assert gone.status_code == 200, gone.text
    wait_until(lambda: count("SELECT count(*) FROM subscriptions") == 0, 30, "the ended subscription purged")
    assert count("SELECT count(*) FROM deliveries") == 0  # its last delivery went with it
    assert count("SELECT count(*) FROM subscription_topics") == 0
    wait_until(lambda: count("SELECT count(*) FROM audit_records") == 0, 30, "old audit records purged")
    metrics = httpx.get(f"{broker.url}/metrics", timeout=10).text
    assert 'hiem_purged_rows_total{kind="subscriptions"} 1.0' in metrics, metrics
    audited = count("SELECT rows FROM purge_totals WHERE kind = 'audit_records'")
    assert audited >= 3  # Subscribe, Notify, delivery and Unsubscribe were each audited
    assert f'hiem_purged_rows_total{{kind="audit_records"}} {float(audited)}' in \
        httpx.get(f"{broker.url}/metrics", timeout=10).text
    stats = _cli(broker.env, "db", "stats")
    assert "subscriptions 1" in stats, stats
