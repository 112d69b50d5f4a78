"""/metrics against a real broker: after one publish to a good and a failing consumer, the counters match.

Runs in both deployments (``broker`` fixture): the numbers come from the database, so the web process
answers for the worker processes that did the deliveries.
"""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from hiem.audit import records as audit_records
from hiem.store.db import Database
from tests.support import wsn
from tests.support.consumer import RecordingConsumer
from tests.support.faults import wait_until

ILI_LABEL = "{http://www.hhs.gov/healthit/nhin}GIPSE/Biosurveillance/InfluenzaLikeIllness"


def refuse(_: bytes) -> tuple[int, dict[str, str], bytes]:
    return 400, {}, b"no thanks"


def scrape(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``{sample name: {sorted labels: value}}`` from a real Prometheus text parser."""
    response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def test_counters_after_one_good_and_one_failing_delivery(broker) -> None:
    with RecordingConsumer() as good, RecordingConsumer(refuse) as bad:
        for consumer in (good, bad):
            assert wsn.call(broker.url, "Subscribe", wsn.subscribe_body(consumer.url)).status_code == 200
        before = scrape(broker.url)
        assert before["hiem_database_up"][()] == 1
        assert before.get("hiem_notifications_received_total", {}) == {}

        assert wsn.call(broker.url, "Notify", wsn.notify_body()).status_code == 202
        good.wait_for(1)
        bad.wait_for(1)
        # the failing consumer's 400 makes its delivery dead at once; wait until both outcomes are recorded
        wait_until(lambda: scrape(broker.url)["hiem_deliveries"].get((("state", "dead"),)) == 1
                   and scrape(broker.url)["hiem_deliveries"].get((("state", "delivered"),)) == 1, 20,
                   "one delivered and one dead delivery")

        database = Database(broker.env["HIEM_DATABASE_URL"])
        try:
            with database.session() as session:
                backlog_before = audit_records.backlog(session)
            m = scrape(broker.url)
            with database.session() as session:
                backlog_after = audit_records.backlog(session)
        finally:
            database.dispose()

    assert m["hiem_notifications_received_total"] == {(("topic", ILI_LABEL),): 1}
    states = {labels[0][1]: value for labels, value in m["hiem_deliveries"].items()}
    assert states["delivered"] == 1 and states["dead"] == 1
    assert sum(states.values()) == 2, states
    assert m["hiem_deliveries_completed_total"] == {(("outcome", "delivered"),): 1, (("outcome", "cancelled"),): 0}
    assert m["hiem_dead_letters"][()] == 1

    latency = m["hiem_delivery_latency_seconds_bucket"]
    assert latency[(("le", "+Inf"),)] == 1, "one delivered in the window"
    assert m["hiem_delivery_latency_seconds_gcount"][()] == 1
    assert 0 < m["hiem_delivery_latency_seconds_gsum"][()] < 30
    attempts = m["hiem_delivery_attempts_bucket"]
    assert attempts[(("le", "1.0"),)] == 2 and attempts[(("le", "+Inf"),)] == 2, "both finished on attempt 1"
    assert m["hiem_delivery_attempts_gsum"][()] == 2

    assert m["hiem_subscriptions"][(("status", "active"),)] == 2
    assert m["hiem_parked_consumers"][()] == 0
    assert backlog_before >= m["hiem_audit_backlog"][()] >= backlog_after or \
        backlog_before <= m["hiem_audit_backlog"][()] <= backlog_after
    assert m["hiem_database_up"][()] == 1

    if broker.mode == "distributed":
        queue = broker.env["HIEM_QUEUE"]
        assert m["hiem_queue_depth"] == {(("queue", queue),): 0}, "everything was consumed"
        assert m["hiem_workers_seen"][()] == len(broker.workers)
    else:
        assert "hiem_queue_depth" not in m, "embedded mode has no broker queue to measure"


def test_metrics_need_the_token_when_one_is_set(tmp_path) -> None:
    from tests.conftest import start_broker

    running = start_broker("embedded", tmp_path, HIEM_METRICS_TOKEN="scrape-me-please")
    try:
        assert httpx.get(f"{running.url}/metrics", timeout=10).status_code == 401
        wrong = httpx.get(f"{running.url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 401
        right = httpx.get(f"{running.url}/metrics", headers={"Authorization": "Bearer scrape-me-please"},
                          timeout=10)
        assert right.status_code == 200 and "hiem_database_up 1.0" in right.text
    finally:
        running.stop()
