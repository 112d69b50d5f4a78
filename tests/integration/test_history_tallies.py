"""The tallies as a running broker keeps them: its sweeper folds what was delivered before it purges it, and
/metrics agrees with full counts of the tables before and after the purge. Short retention windows make
the settle margin short (half the shortest window), so the fold happens within seconds."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.pool import NullPool

from tests.conftest import start_broker
from tests.support import wsn
from tests.support.consumer import RecordingConsumer
from tests.support.faults import wait_until
from tests.support.services import fresh_postgres_database, require_redis

pytestmark = pytest.mark.slow
TOPIC = "nhin:GIPSE/Biosurveillance/Fever"
WINDOWS = {"HIEM_RETAIN_DELIVERED": "PT4S", "HIEM_RETAIN_NOTIFICATIONS": "PT4S", "HIEM_PURGE_INTERVAL": "1",
           "HIEM_SWEEP_INTERVAL": "0.5"}


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.parametrize("mode", ["embedded", "distributed"])
def test_the_sweeper_folds_before_it_purges_and_metrics_agree_with_full_counts(tmp_path: Path, mode: str) -> None:
    if mode == "embedded":
        broker, database = start_broker("embedded", tmp_path, **WINDOWS), None
    else:
        database = fresh_postgres_database()
        broker = start_broker("distributed", tmp_path, database.__enter__(), require_redis(), **WINDOWS)
    engine = sa.create_engine(broker.env["HIEM_DATABASE_URL"], poolclass=NullPool)

    def count(sql: str) -> int:
        with engine.connect() as connection:
            return int(connection.execute(sa.text(sql)).scalar() or 0)

    def full() -> dict[str, int]:
        """delivered rows now, and delivered / received ever (rows + purged), counted over the tables"""
        purged = {kind: count(f"SELECT coalesce(sum(rows), 0) FROM purge_totals WHERE kind LIKE '{kind}%'")
                  for kind in ("deliveries:delivered", "notifications:")}
        delivered = count("SELECT count(*) FROM deliveries WHERE state = 'delivered'")
        return {"delivered": delivered, "completed": delivered + purged["deliveries:delivered"],
                "received": count("SELECT count(*) FROM notifications") + purged["notifications:"]}

    def scraped() -> dict[str, int]:
        m = _samples(broker.url)
        return {"delivered": int(m[("hiem_deliveries", (("state", "delivered"),))]),
                "completed": int(m[("hiem_deliveries_completed_total", (("outcome", "delivered"),))]),
                "received": int(sum(v for (name, _), v in m.items() if name == "hiem_notifications_received_total"))}

    try:
        with RecordingConsumer() as consumer:
            wsn.call(broker.url, "Subscribe", wsn.subscribe_body(consumer.url, topic=TOPIC))
            for index in range(4):
                response = wsn.call(broker.url, "Notify", wsn.notify_body(
                    topic=TOPIC, payload=f"<g:N xmlns:g='urn:g'>{index}</g:N>"))
                assert response.status_code == 202, response.text
            consumer.wait_for(4, timeout=30)
            wait_until(lambda: count("SELECT count(*) FROM deliveries WHERE state = 'delivered'") == 4, 30,
                       "four deliveries recorded")
            assert scraped() == full() == {"delivered": 4, "completed": 4, "received": 4}

            # the sweeper folds them (2 s behind the clock), then purges all but the subscription's latest
            wait_until(lambda: count("SELECT rows FROM history_tallies WHERE kind = 'deliveries:delivered'") == 4,
                       30, "the sweeper's fold of the four delivered rows")
            wait_until(lambda: count("SELECT count(*) FROM deliveries") == 1, 30, "the purge of delivered rows")
            wait_until(lambda: count("SELECT count(*) FROM notifications") == 1, 30, "the purge of notifications")
            assert scraped() == full() == {"delivered": 1, "completed": 4, "received": 4}
    finally:
        engine.dispose()
        broker.stop()
        if database is not None:
            database.__exit__(None, None, None)
