"""The /metrics collector over seeded rows, parsed back with prometheus_client's own text parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from hiem.config import Settings
from hiem.ops.metrics import MetricsApp
from hiem.ops.queue import QueueStatus
from hiem.store.db import Database
from tests.unit.ops.conftest import FixedQueue, Seeded

ILI = "{http://www.hhs.gov/healthit/nhin}GIPSE/Biosurveillance/InfluenzaLikeIllness"


def scrape(app: MetricsApp, **headers: str) -> httpx.Response:
    with httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://m.test") as client:
        return client.get("/metrics", headers=headers)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_counts_from_the_database(settings: Settings, db: Database, seeded: Seeded) -> None:
    m = samples(scrape(MetricsApp(db, FixedQueue(settings))).text)
    assert m[("hiem_notifications_received_total", (("topic", ILI),))] == 1
    assert m[("hiem_deliveries", (("state", "delivered"),))] == 1
    assert m[("hiem_deliveries", (("state", "dead"),))] == 1
    assert m[("hiem_deliveries_completed_total", (("outcome", "delivered"),))] == 1
    assert m[("hiem_dead_letters", ())] == 1
    assert m[("hiem_delivery_latency_seconds_bucket", (("le", "1.0"),))] == 0
    assert m[("hiem_delivery_latency_seconds_bucket", (("le", "2.5"),))] == 1
    assert m[("hiem_delivery_latency_seconds_gsum", ())] == 2.0
    assert m[("hiem_delivery_attempts_bucket", (("le", "1.0"),))] == 2
    assert m[("hiem_subscriptions", (("status", "active"),))] == 2
    assert m[("hiem_parked_consumers", ())] == 0
    assert m[("hiem_database_up", ())] == 1
    assert not any(name == "hiem_queue_depth" for name, _ in m), "embedded: nothing to measure"


def test_queue_depth_and_workers_when_distributed(settings: Settings, db: Database) -> None:
    queue = FixedQueue(settings, QueueStatus("distributed", "hiem", 7, ["celery@a", "celery@b"]))
    m = samples(scrape(MetricsApp(db, queue)).text)
    assert m[("hiem_queue_depth", (("queue", "hiem"),))] == 7
    assert m[("hiem_workers_seen", ())] == 2


def test_database_down_is_a_metric_not_an_error(settings: Settings, tmp_path) -> None:  # type: ignore[no-untyped-def]
    broken = Database(f"sqlite:///{tmp_path / 'missing-dir' / 'x.db'}")
    try:
        response = scrape(MetricsApp(broken, FixedQueue(settings)))
    finally:
        broken.dispose()
    assert response.status_code == 200
    assert samples(response.text)[("hiem_database_up", ())] == 0


def test_bearer_token(settings: Settings, db: Database) -> None:
    app = MetricsApp(db, FixedQueue(settings), token="sesame-sesame")
    assert scrape(app).status_code == 401
    assert scrape(app, Authorization="Bearer nope").status_code == 401
    assert scrape(app, Authorization="Bearer sesame-sesame").status_code == 200
