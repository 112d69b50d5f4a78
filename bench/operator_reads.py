"""Operator reads against history size: ``/metrics``, the ``/ops`` overview and ``hiem status`` with
10,000 and with 5,000,000 delivery rows on PostgreSQL (the database alone, no broker process).

Each size gets a fresh database: hiem's migrations, the bundled topic trees, ``SUBSCRIBERS`` subscriptions
written by hiem's store, then rows generated in SQL (as ``bench/matching.py`` does). Both sizes hold the
same *present*: the last hour's traffic (``RECENT`` notifications to every subscriber, mostly delivered,
some still in play: pending, in flight, retrying, held, stored in a pull point, dead). Only the *history*
behind it differs: finished deliveries (delivered, cancelled, dropped) over the 7 days before that hour,
``HIEM_RETAIN_DELIVERED``'s default, so the table is what a week of such traffic leaves. After loading:
``VACUUM ANALYZE`` (what autovacuum does to a table that size), then what the sweeper does before anyone
reads (:func:`settle`, timed).

Measured per size, after warm-ups, the sizes in turns (see :func:`run`):

* ``/metrics``: hiem's WSGI app in process (httpx's WSGI transport), ``SCRAPES`` scrapes: p50, min, max,
  and the median time of each SQL statement of one scrape;
* ``/ops``: the overview page, logged in as an operator, the same way;
* ``hiem status --json``: ``python -m hiem.cli status --json`` as an operator runs it (interpreter start
  and the migration check included), ``STATUS_RUNS`` runs; and ``hiem.ops.stats.snapshot`` in process.

Each figure is reported at both sizes and as the ratio 5M / 10k.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event, text

from hiem import ns
from hiem.app.bootstrap import BUNDLED_TOPICS, load_topic_files
from hiem.config import Settings
from hiem.ops import operators, stats
from hiem.ops.app import OpsApp
from hiem.ops.metrics import MetricsApp
from hiem.ops.queue import QueueMonitor
from hiem.ops.settings import OpsSettings
from hiem.store import subscriptions
from hiem.store import topics as topic_store
from hiem.store.db import Database
from hiem.store.migrate import upgrade

SIZES = (10_000, 5_000_000)
SUBSCRIBERS = 10
RECENT = 200             # notifications in the last hour, each to every subscriber (2,000 delivery rows)
HISTORY_DAYS = 7
TOPICS = 8               # GIPSE topics the notifications are spread over
CHUNK = 50_000           # notifications per INSERT of their deliveries (500,000 rows a transaction)
SCRAPES = 20
WARMUPS = 3
STATUS_RUNS = 5
ROOT = Path(__file__).resolve().parents[1]
OPERATOR, PASSWORD = "bench", "bench operator password"


def run(urls: Callable[[], Any], sizes: tuple[int, ...] = SIZES, log: Callable[[str], None] = print
        ) -> dict[str, Any]:
    """``urls()`` is a context manager giving a fresh database URL (dropped afterwards), one per size.

    Every size is loaded first, then each read is timed in turns (one at each size, again and again), so
    every size sees the same background load: on a shared machine that moves more than the sizes do."""
    found: dict[str, Any] = {"subscribers": SUBSCRIBERS, "recent_notifications": RECENT,
                             "history_days": HISTORY_DAYS, "scrapes": SCRAPES, "status_runs": STATUS_RUNS,
                             "interleaved": True, "sizes": {}}
    with ExitStack() as stack:
        targets = [stack.enter_context(_target(stack.enter_context(urls()), size, log)) for size in sizes]
        for target in targets:
            found["sizes"][str(target.size)] = target.found
        for key, repeats, warmups in (("metrics", SCRAPES, WARMUPS), ("ops_overview", SCRAPES, WARMUPS),
                                      ("snapshot", SCRAPES, WARMUPS), ("status_cli", STATUS_RUNS, 1)):
            for target, timing in zip(targets, _interleaved([t.reads[key] for t in targets], repeats, warmups),
                                      strict=True):
                target.found[key] = timing
        for target in targets:
            target.found["metrics"]["statements_median_ms"] = _statements(target.db, target.reads["metrics"])
            log(f"  {target.size:,} delivery rows: /metrics p50 {target.found['metrics']['p50_ms']} ms, /ops "
                f"{target.found['ops_overview']['p50_ms']} ms, snapshot {target.found['snapshot']['p50_ms']} ms, "
                f"hiem status --json {target.found['status_cli']['p50_ms']} ms")
    small, large = (found["sizes"][str(s)] for s in (sizes[0], sizes[-1]))
    found["ratio"] = {key: round(large[key]["p50_ms"] / small[key]["p50_ms"], 2)
                      for key in ("metrics", "ops_overview", "snapshot", "status_cli")}
    log(f"  operator reads {sizes[-1]:,} / {sizes[0]:,} delivery rows, p50 ratio: {found['ratio']}")
    return found


@dataclass
class Target:
    """One loaded database and the reads to time on it."""

    size: int
    db: Database
    reads: dict[str, Callable[[], object]]
    found: dict[str, Any] = field(default_factory=dict)


@contextmanager
def _target(url: str, size: int, log: Callable[[str], None]) -> Iterator[Target]:
    db = Database(url)
    try:
        started = time.perf_counter()
        rows = populate(db, size)
        load_s = time.perf_counter() - started
        settled = settle(db)
        log(f"  {size:,} delivery rows: loaded in {load_s:.0f} s ({rows}); settled {settled}")
        settings = Settings(database_url=url)
        queue = QueueMonitor(settings)  # embedded settings: the broker half costs nothing
        console = OpsApp(settings, db, OpsSettings(secret=b"b" * 32, poll_seconds=5), queue)
        with db.session() as session:
            operators.add_operator(session, OPERATOR, PASSWORD, "viewer")
        with httpx.Client(transport=httpx.WSGITransport(app=MetricsApp(db, queue)), base_url="http://m.test") as m, \
                httpx.Client(transport=httpx.WSGITransport(app=console), base_url="http://console.test") as ops:
            _login(ops)
            reads: dict[str, Callable[[], object]] = {
                "metrics": lambda: _ok(m.get("/metrics")), "ops_overview": lambda: _ok(ops.get("/ops")),
                "snapshot": lambda: _snapshot(db), "status_cli": lambda: _status_cli(url)}
            yield Target(size, db, reads, {"rows": rows, "load_seconds": round(load_s, 1), "settle": settled})
    finally:
        db.dispose()


def settle(db: Database) -> dict[str, Any]:
    """What the sweeper does before anyone reads: fold the finished history into the tallies. The first
    fold counts the whole history once; the next ones only what finished since (here: seconds' worth)."""
    from hiem.clock import utcnow
    from hiem.store import tallies

    timings = []
    for _ in range(2):
        started = time.perf_counter()
        tallies.fold(db, utcnow())
        timings.append(round(1000 * (time.perf_counter() - started), 1))
    return {"first_fold_ms": timings[0], "next_fold_ms": timings[1]}


# -- the population ----------------------------------------------------------------------------------------
def populate(db: Database, size: int) -> dict[str, int]:
    """Migrations, topics, subscribers, then ``size`` delivery rows (``RECENT`` x ``SUBSCRIBERS`` of them in
    the last hour, the rest history) and their notifications; returns the row counts."""
    upgrade(db)
    load_topic_files(db, sorted(BUNDLED_TOPICS.glob("*.xml")))
    with db.session() as session:
        known = topic_store.all_topics(session)
    gipse = sorted((tid, path) for path, tid in known.items() if path.namespace == ns.NHIN)[:TOPICS]
    subscribers = [_subscribe(db, [tid for tid, _ in gipse]) for _ in range(SUBSCRIBERS)]
    history = max(0, size // SUBSCRIBERS - RECENT)
    now = datetime.now(UTC)
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE bench_topics (idx int, id int, path text)"))
        conn.execute(text("INSERT INTO bench_topics VALUES (:i, :id, :path)"),
                     [{"i": i, "id": tid, "path": "/".join(path.path)} for i, (tid, path) in enumerate(gipse)])
        conn.execute(text("CREATE TABLE bench_subscribers (idx int, id text)"))
        conn.execute(text("INSERT INTO bench_subscribers VALUES (:i, :id)"),
                     [{"i": i, "id": sid} for i, sid in enumerate(subscribers)])
        # history evenly over the week before the last hour, then RECENT over the last hour (ids in time order)
        hour_start = now - timedelta(hours=1)
        conn.execute(text(f"""
            INSERT INTO notifications (message_id, topic_id, topic_namespace, topic_path, message_xml,
                producer_reference, publisher, received_at, fanout_state, fanout_enqueued_at, fanout_done_at,
                matched)
            SELECT 'urn:uuid:bench-' || g, t.id, :ns, t.path, convert_to('<m/>', 'UTF8'), ''::bytea, 'bench',
                   w.at, 'done', w.at, w.at + interval '5 milliseconds', {SUBSCRIBERS}
            FROM generate_series(1, :total) g
            JOIN bench_topics t ON t.idx = g % {len(gipse)}
            CROSS JOIN LATERAL (SELECT CASE WHEN g <= :history
                THEN :history_start + (g - 1) * (:history_span / greatest(:history, 1))
                ELSE :hour_start + (g - :history - 1) * (interval '58 minutes' / {RECENT}) END AS at) w
            ORDER BY g"""), {"ns": ns.NHIN, "total": history + RECENT, "history": history,
                             "history_start": hour_start - timedelta(days=HISTORY_DAYS),
                             "history_span": timedelta(days=HISTORY_DAYS), "hour_start": hour_start})
        first, last = conn.execute(text("SELECT min(id), max(id) FROM notifications")).one()
    for low in range(first, last + 1, CHUNK):
        with db.engine.begin() as conn:
            conn.execute(text(_DELIVERIES), {"low": low, "high": min(last, low + CHUNK - 1), "recent_from":
                                             last - RECENT + 1, "now": now})
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("DROP TABLE bench_topics"))
        conn.execute(text("DROP TABLE bench_subscribers"))
        conn.execute(text("VACUUM ANALYZE"))
        counts = dict(conn.execute(text("SELECT state, count(*) FROM deliveries GROUP BY state")).all())
        notifications = conn.scalar(text("SELECT count(*) FROM notifications"))
    return {"deliveries": sum(counts.values()), "notifications": int(notifications or 0),
            **{f"deliveries_{state}": int(n) for state, n in sorted(counts.items())}}


#: one delivery per (notification, subscriber), sequence = the notification's id (gap-free enough: unique
#: per subscriber and ascending); the state is drawn from h, a fixed hash of the pair. History is finished:
#: 97 % delivered, 2 % cancelled, 1 % dropped. The last hour is 92 % delivered and 8 % in play.
_DELIVERIES = """
INSERT INTO deliveries (notification_id, subscription_id, sequence, state, attempts, last_error, last_status,
                        created_at, updated_at, enqueued_at, next_attempt_at, lease_until, delivered_at)
SELECT n.id, s.id, n.id, x.state,
       CASE WHEN x.state IN ('pending', 'held', 'stored') THEN 0 WHEN x.state IN ('retrying', 'dead') THEN 3
            ELSE 1 + x.h % 2 END,
       CASE WHEN x.state IN ('retrying', 'dead') THEN 'HTTP 503' END,
       CASE WHEN x.state = 'delivered' THEN 202 END,
       n.received_at, n.received_at + x.took, n.received_at,
       CASE WHEN x.state = 'retrying' THEN :now + interval '1 minute' END,
       CASE WHEN x.state = 'in_flight' THEN :now + interval '30 seconds' END,
       CASE WHEN x.state = 'delivered' THEN n.received_at + x.took END
FROM notifications n CROSS JOIN bench_subscribers s
CROSS JOIN LATERAL (SELECT (n.id * 31 + s.idx * 7) % 1000 AS h) hash
CROSS JOIN LATERAL (SELECT hash.h AS h,
    (interval '1 millisecond' * (50 + (hash.h * 37) % 3000)) AS took,
    CASE WHEN n.id < :recent_from THEN
        CASE WHEN hash.h < 970 THEN 'delivered' WHEN hash.h < 990 THEN 'cancelled' ELSE 'dropped' END
    ELSE
        CASE WHEN hash.h < 920 THEN 'delivered' WHEN hash.h < 940 THEN 'pending' WHEN hash.h < 950 THEN 'in_flight'
             WHEN hash.h < 965 THEN 'retrying' WHEN hash.h < 975 THEN 'held' WHEN hash.h < 985 THEN 'stored'
             ELSE 'dead' END
    END AS state) x
WHERE n.id BETWEEN :low AND :high
ORDER BY n.id, s.idx
"""


def _subscribe(db: Database, topic_ids: list[int]) -> str:
    sid = str(uuid.uuid4())
    new = subscriptions.NewSubscription(
        id=sid, consumer_address="http://127.0.0.1:9/notify", consumer_reference_parameters=b"",
        manager_address="http://127.0.0.1:8080/wsn/SubscriptionManager", topic_expression="nhin:GIPSE//*",
        dialect="http://docs.oasis-open.org/wsn/t-1/TopicExpression/Full", topic_namespaces={"nhin": ns.NHIN},
        is_wildcard=True, soap_version="1.2", created_at=datetime.now(UTC))
    with db.session() as session:
        subscriptions.create(session, new, topic_ids)
    return sid


# -- measuring ---------------------------------------------------------------------------------------------
def _interleaved(calls: list[Callable[[], object]], repeats: int, warmups: int) -> list[dict[str, Any]]:
    """Each call ``warmups`` times, then all of them in turn ``repeats`` times; their timings, in order."""
    for call in calls:
        for _ in range(warmups):
            call()
    timings: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, found in zip(calls, timings, strict=True):
            started = time.perf_counter()
            call()
            found.append(1000 * (time.perf_counter() - started))
    return [{"p50_ms": round(statistics.median(t), 2), "min_ms": round(min(t), 2), "max_ms": round(max(t), 2),
             "repeats": repeats} for t in timings]


def _statements(db: Database, call: Callable[[], object], repeats: int = 5) -> list[dict[str, Any]]:
    """The median time of each SQL statement one call runs, slowest first."""
    found: dict[str, list[float]] = {}
    with _statement_timer(db, found):
        for _ in range(repeats):
            call()
    ranked = sorted(((statistics.median(v), k) for k, v in found.items()), reverse=True)
    return [{"ms": round(1000 * seconds, 3), "sql": sql} for seconds, sql in ranked[:8]]


@contextmanager
def _statement_timer(db: Database, found: dict[str, list[float]]) -> Iterator[None]:
    starts: list[float] = []

    def before(*_args: Any) -> None:
        starts.append(time.perf_counter())

    def after(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if starts:
            found.setdefault(" ".join(statement.split())[:140], []).append(time.perf_counter() - starts.pop())

    event.listen(db.engine, "before_cursor_execute", before)
    event.listen(db.engine, "after_cursor_execute", after)
    try:
        yield
    finally:
        event.remove(db.engine, "before_cursor_execute", before)
        event.remove(db.engine, "after_cursor_execute", after)


def _ok(response: httpx.Response) -> httpx.Response:
    if response.status_code != 200:
        raise RuntimeError(f"{response.request.url}: {response.status_code} {response.text[:300]}")
    return response


def _login(client: httpx.Client) -> None:
    import re

    page = client.get("/ops/login").text
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, page
    answer = client.post("/ops/login", data={"csrf": match.group(1), "username": OPERATOR, "password": PASSWORD,
                                             "next": "/ops"})
    if answer.status_code != 303:
        raise RuntimeError(f"login failed: {answer.status_code}")


def _snapshot(db: Database) -> None:
    with db.session() as session:
        stats.snapshot(session)


def _status_cli(url: str) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HIEM_")}
    env["HIEM_DATABASE_URL"] = url
    subprocess.run([sys.executable, "-m", "hiem.cli", "status", "--json"], env=env, cwd=ROOT, check=True,
                   capture_output=True, timeout=300)


__all__ = ["SIZES", "run"]
