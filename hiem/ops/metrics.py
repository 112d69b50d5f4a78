"""``/metrics``: Prometheus exposition computed from the database at scrape time.

Why a custom collector and not in-process counters: hiem runs as several web and worker processes, and
a counter incremented in one of them is invisible to a scrape of another. The database is shared by all,
so any process answers for the whole deployment; scrape one web process (or the load balancer), not each.
A scrape costs the same whatever the history holds: finished deliveries and received notifications come
from the sweeper's tallies plus the last minutes (:mod:`hiem.store.tallies`), the rest is what is in play.

Families (``hiem_`` prefix):

====================================== ================ =====================================================
name                                   type             meaning
====================================== ================ =====================================================
notifications_received_total{topic}    counter          notifications accepted, by topic (rows kept + purged)
deliveries{state}                      gauge            delivery rows in each state now
deliveries_completed_total{outcome}    counter          deliveries that ended delivered / cancelled (final;
                                                        rows kept + purged)
purged_rows_total{kind}                counter          rows the retention purge deleted (deliveries,
                                                        notifications, security nonces)
dead_letters                           gauge            dead deliveries awaiting redelivery
delivery_latency_seconds               gauge histogram  received → delivered, deliveries finished in the
                                                        last hour (a window, so buckets can go down)
delivery_attempts                      gauge histogram  attempts used by deliveries finished in the last hour
queue_depth{queue}                     gauge            messages waiting in the Redis queue (distributed)
workers_seen                           gauge            Celery workers consuming the queue (distributed)
parked_consumers                       gauge            consumer origins parked by the circuit breaker
audit_backlog                          gauge            audit records not yet shipped to the repository
subscriptions{status}                  gauge            subscriptions by status
database_up                            gauge            1 when the queries above succeeded
====================================== ================ =====================================================
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from hiem.audit import records as audit_records
from hiem.clock import utcnow
from hiem.ops import stats
from hiem.ops.queue import QueueMonitor
from hiem.store import retention, tallies
from hiem.store.db import Database
from hiem.store.models import DeliveryState, TopicNamespaceRow, TopicRow

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
ATTEMPT_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 20)
FINAL_OUTCOMES = (DeliveryState.DELIVERED.value, DeliveryState.CANCELLED.value)


def _buckets(values: Sequence[float], bounds: Sequence[float]) -> list[tuple[str, float]]:
    """Cumulative ``le`` buckets, ending with +Inf."""
    return [*((_le(b), float(sum(1 for v in values if v <= b))) for b in bounds), ("+Inf", float(len(values)))]


def _le(bound: float) -> str:
    return str(float(bound))


def _topic_label(namespace: str | None, path: str) -> str:
    return f"{{{namespace}}}{path}" if namespace else path


class HiemCollector(Collector):
    """Reads the deployment's state from the database (and the queue depth from the broker) per scrape."""

    def __init__(self, database: Database, queue: QueueMonitor) -> None:
        self.db, self.queue = database, queue

    def collect(self) -> Iterator[Metric]:
        try:
            families = list(self._from_database())
        except SQLAlchemyError as exc:
            log.warning("metrics: database query failed: %s", exc)
            families = []
        up = GaugeMetricFamily("hiem_database_up", "1 when the database answered this scrape's queries")
        up.add_metric([], 1.0 if families else 0.0)
        yield from families
        yield up
        yield from self._queue()

    def _from_database(self) -> Iterator[Metric]:
        now = utcnow()
        with self.db.session() as session:
            by_topic = tallies.received(session)
            names = {row.id: (row.uri, row.path) for row in session.execute(
                select(TopicRow.id, TopicNamespaceRow.uri, TopicRow.path)
                .join(TopicNamespaceRow, TopicNamespaceRow.id == TopicRow.namespace_id)
                .where(TopicRow.id.in_(set(by_topic))))}
            received = [(*names[topic], by_topic[topic]) for topic in sorted(names)]
            deliveries = tallies.deliveries(session)
            by_state = deliveries.by_state
            purged_tables = retention.purged_by_table(session)
            recent = stats.recent_deliveries(session, now)
            subscriptions = stats.subscriptions_by_status(session)
            parked = stats.parked_consumers(session, now)
            backlog = audit_records.backlog(session)
            filter_failures = stats.filter_failures(session)
        counter = CounterMetricFamily("hiem_notifications_received", "Notifications accepted, by topic",
                                      labels=["topic"])
        for namespace, path, count in received:
            counter.add_metric([_topic_label(namespace, path)], float(count))
        yield counter
        yield self._labelled(GaugeMetricFamily("hiem_deliveries", "Delivery rows in each state", labels=["state"]),
                             by_state.items())
        completed = CounterMetricFamily("hiem_deliveries_completed",
                                        "Deliveries that reached a final state (delivered or cancelled)",
                                        labels=["outcome"])
        yield self._labelled(completed, ((o, deliveries.completed[o]) for o in FINAL_OUTCOMES))
        purged = CounterMetricFamily("hiem_purged_rows", "Rows deleted by the retention purge", labels=["kind"])
        yield self._labelled(purged, purged_tables.items())
        yield GaugeMetricFamily("hiem_dead_letters", "Dead deliveries awaiting redelivery",
                                value=by_state[DeliveryState.DEAD.value])
        yield GaugeHistogramMetricFamily(
            "hiem_delivery_latency_seconds",
            f"Received to delivered, deliveries finished in the last {int(stats.LATENCY_WINDOW_SECONDS)} s",
            buckets=_buckets(recent.latencies, LATENCY_BUCKETS), gsum_value=float(sum(recent.latencies)))
        yield GaugeHistogramMetricFamily(
            "hiem_delivery_attempts",
            f"Attempts used by deliveries finished in the last {int(stats.LATENCY_WINDOW_SECONDS)} s",
            buckets=_buckets(recent.attempts, ATTEMPT_BUCKETS), gsum_value=float(sum(recent.attempts)))
        yield GaugeMetricFamily("hiem_parked_consumers", "Consumer origins parked by the circuit breaker",
                                value=parked)
        yield GaugeMetricFamily("hiem_audit_backlog", "Audit records not yet shipped", value=backlog)
        yield CounterMetricFamily("hiem_filter_failures", "MessageContent filter evaluations that failed "
                                  "(timeout, error): the notification was not sent to that subscription",
                                  value=float(filter_failures))
        yield self._labelled(GaugeMetricFamily("hiem_subscriptions", "Subscriptions by status", labels=["status"]),
                             subscriptions.items())

    def _queue(self) -> Iterator[Metric]:
        status = self.queue.status()
        if status.depth is not None:
            depth = GaugeMetricFamily("hiem_queue_depth", "Messages waiting in the broker queue", labels=["queue"])
            depth.add_metric([status.queue], float(status.depth))
            yield depth
        if status.workers is not None:
            yield GaugeMetricFamily("hiem_workers_seen", "Celery workers consuming the queue that answered a broadcast",
                                    value=len(status.workers))

    @staticmethod
    def _labelled(family: Any, items: Iterable[tuple[str, int]]) -> Any:
        for label, value in items:
            family.add_metric([label], float(value))
        return family


class MetricsApp:
    """``GET /metrics`` from a registry holding only :class:`HiemCollector` (no per-process noise)."""

    def __init__(self, database: Database, queue: QueueMonitor, token: str = "") -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(HiemCollector(database, queue))
        self._app = make_wsgi_app(self.registry)
        self._token = token

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if self._token:
            given = environ.get("HTTP_AUTHORIZATION", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self._token}".encode()):
                start_response("401 Unauthorized", [("Content-Type", "text/plain"),
                                                    ("WWW-Authenticate", 'Bearer realm="hiem metrics"')])
                return [b"a bearer token is required\n"]
        return self._app(environ, start_response)
