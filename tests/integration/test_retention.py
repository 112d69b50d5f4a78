"""Retention end to end: a broker with short windows purges what it delivered, says so (`hiem db stats`,
`hiem status`, /metrics), keeps numbering where it was, and answers a replay from before the window
with SequenceOutOfRangeFault naming the oldest number it still has."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from hiem import ns
from hiem.wsn.faults import OLDEST_RETAINED_DIALECT
from tests.conftest import start_broker
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

    def count(sql: str) -> int:
        with engine.connect() as connection:
            return int(connection.execute(sa.text(sql)).scalar() or 0)

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


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "hiem.cli", *args], env=env, cwd=ROOT, text=True,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout
