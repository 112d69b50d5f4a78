"""Matching cost against the number of stored subscriptions (no broker process: the database alone).

A fresh database (PostgreSQL, and SQLite) gets the schema (hiem's migrations), the GIPSE trees and a
synthetic tree (``syn:r0..r9/s0..s9/l0..l9``: 1,110 topics), then subscriptions in two steps: first
``small`` in total, then up to ``large``. At each size hiem's own ``hiem.store.deliveries.fan_out`` is
timed for fresh notifications on the probe topic ``nhin:GIPSE/Biosurveillance/InfluenzaLikeIllness``,
which exactly 20 subscriptions match at every size: 10 Concrete ones and 10 Full ``nhin:GIPSE//*``.
The filler subscriptions never match the probe: 90 % Concrete/Simple spread evenly over every other
topic of both trees, 10 % Full (``syn:rK/sJ/*``, ``syn:rK//lJ``, ``syn:*/sK/lJ``, ``syn:rK/sJ//.``)
compiled with hiem's own ``TopicExpression.expand`` into their topic sets, as Subscribe compiles them.

Rows are generated in SQL from one template subscription written by ``hiem.store.subscriptions.create``
(every column copied; id, expression, dialect and wildcard flag set per row). Statistics are refreshed
(ANALYZE) after each bulk load, as autovacuum would.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, select, text

from hiem import ns
from hiem.app.bootstrap import BUNDLED_TOPICS, load_topic_files
from hiem.store import deliveries, subscriptions
from hiem.store import topics as topic_store
from hiem.store.db import Database
from hiem.store.migrate import upgrade
from hiem.store.models import Delivery, Subscription
from hiem.wstopics import TopicDialect, TopicPath, parse_expression, parse_topic_namespace

SYN = "urn:hiem:bench:synthetic"
PROBE = TopicPath(ns.NHIN, ("GIPSE", "Biosurveillance", "InfluenzaLikeIllness"))
PROBE_CONCRETE = 10
PROBE_FULL = 10
FULL_SHARE = 0.10


def synthetic_namespace(roots: int = 10, mid: int = 10, leaves: int = 10) -> bytes:
    parts = [f'<wstop:TopicNamespace xmlns:wstop="http://docs.oasis-open.org/wsn/t-1" '
             f'targetNamespace="{SYN}" name="BenchSynthetic">']
    for r in range(roots):
        parts.append(f'<wstop:Topic name="r{r}">')
        for s in range(mid):
            parts.append(f'<wstop:Topic name="s{s}">')
            parts.extend(f'<wstop:Topic name="l{leaf}"/>' for leaf in range(leaves))
            parts.append("</wstop:Topic>")
        parts.append("</wstop:Topic>")
    parts.append("</wstop:TopicNamespace>")
    return "".join(parts).encode()


def full_expressions() -> list[str]:
    """A varied set of Full-dialect expressions over the synthetic tree only (never the probe)."""
    found = []
    for k in range(10):
        for j in range(10):
            found += [f"syn:r{k}/s{j}/*", f"syn:r{k}//l{j}", f"syn:*/s{k}/l{j}", f"syn:r{k}/s{j}//."]
    return found


class Population:
    """The database under test and the bulk loader."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.db = Database(url)
        self.dialect = self.db.dialect
        self.total = 0
        self.probe_id = 0
        self.other_topics: list[int] = []
        self.full_sets: list[tuple[str, list[int]]] = []
        self.template = ""

    def prepare(self) -> None:
        upgrade(self.db)
        load_topic_files(self.db, sorted(BUNDLED_TOPICS.glob("*.xml")))
        with self.db.session() as session:
            topic_store.load_namespace(session, parse_topic_namespace(synthetic_namespace()), source="bench")
        with self.db.session() as session:
            known = topic_store.all_topics(session)
        self.probe_id = known[PROBE]
        self.other_topics = sorted(tid for path, tid in known.items() if path != PROBE)
        for expression in full_expressions():
            parsed = parse_expression(expression, TopicDialect.FULL, {"syn": SYN})
            ids = sorted(known[t] for t in parsed.expand(known))
            assert self.probe_id not in ids
            self.full_sets.append((expression, ids))
        gipse_all = parse_expression("nhin:GIPSE//*", TopicDialect.FULL, {"nhin": ns.NHIN})
        gipse_ids = sorted(known[t] for t in gipse_all.expand(known))
        assert self.probe_id in gipse_ids
        # the template: written by hiem's own store code, as Subscribe writes it
        self.template = self._create_one("nhin:GIPSE/Biosurveillance/InfluenzaLikeIllness", TopicDialect.CONCRETE,
                                         [self.probe_id], wildcard=False)
        for _ in range(PROBE_CONCRETE - 1):
            self._create_one("nhin:GIPSE/Biosurveillance/InfluenzaLikeIllness", TopicDialect.CONCRETE,
                             [self.probe_id], wildcard=False)
        for _ in range(PROBE_FULL):
            self._create_one("nhin:GIPSE//*", TopicDialect.FULL, gipse_ids, wildcard=True)
        self.total = PROBE_CONCRETE + PROBE_FULL

    def _create_one(self, expression: str, dialect: TopicDialect, topic_ids: list[int], *, wildcard: bool) -> str:
        known = dict(id=str(uuid.uuid4()), consumer_address="http://127.0.0.1:9/notify",
                     consumer_reference_parameters=b"",
                     manager_address="http://127.0.0.1:8080/wsn/SubscriptionManager", topic_expression=expression,
                     dialect=dialect.value, topic_namespaces={"nhin": ns.NHIN}, is_wildcard=wildcard,
                     soap_version="1.2", created_at=datetime.now(UTC))
        new = subscriptions.NewSubscription(**{f.name: known[f.name] for f in
                                               dataclasses.fields(subscriptions.NewSubscription) if f.name in known})
        with self.db.session() as session:
            subscriptions.create(session, new, topic_ids)
        return known["id"]  # type: ignore[return-value]

    # -- bulk ------------------------------------------------------------------------------------------------
    def grow_to(self, target: int) -> float:
        """Add filler subscriptions until ``target`` in total; returns the seconds it took (with ANALYZE)."""
        started = time.perf_counter()
        add = target - self.total
        if add <= 0:
            return 0.0
        full = int(add * FULL_SHARE)
        concrete = add - full
        first = self.total
        self._insert_concrete(first, concrete)
        self._insert_full(first + concrete, full)
        self.total = target
        with self.db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
        return time.perf_counter() - started

    def _series(self, start: int, count: int) -> str:
        if self.dialect == "postgresql":
            return f"(SELECT generate_series({start + 1}, {start + count}) AS g) AS series"
        return (f"(WITH RECURSIVE s(g) AS (SELECT {start + 1} UNION ALL SELECT g + 1 FROM s WHERE g < {start + count})"
                f" SELECT g FROM s) AS series")

    def _id(self) -> str:
        # uuid-shaped and unique per g, but ascending (loads in seconds instead of minutes: random uuid4
        # keys would scatter the B-tree inserts); lookups of 20 keys cost the same either way
        if self.dialect == "postgresql":
            return "'00000000-0000-4000-8000-' || lpad(series.g::text, 12, '0')"
        return "printf('00000000-0000-4000-8000-%012d', series.g)"

    def _insert_subscriptions(self, start: int, count: int, expression_sql: str, dialect: TopicDialect,
                              wildcard: bool) -> None:
        columns = [c.name for c in Subscription.__table__.columns]
        values = []
        for name in columns:
            if name == "id":
                values.append(self._id())
            elif name == "topic_expression":
                values.append(expression_sql)
            elif name == "dialect":
                values.append(f"'{dialect.value}'")
            elif name == "is_wildcard":
                values.append("true" if wildcard else "false") if self.dialect == "postgresql" else \
                    values.append("1" if wildcard else "0")
            else:
                values.append(f"t.{name}")
        sql = (f"INSERT INTO subscriptions ({', '.join(columns)}) SELECT {', '.join(values)} "
               f"FROM subscriptions t, {self._series(start, count)} WHERE t.id = :template")
        with self.db.engine.begin() as conn:
            conn.execute(text(sql), {"template": self.template})

    def _array_pick(self, ids: list[int], index_sql: str) -> str:
        """SQL for ids[index] (index 0-based)."""
        if self.dialect == "postgresql":
            return f"(ARRAY[{','.join(map(str, ids))}])[1 + ({index_sql})]"
        # SQLite has no arrays: a json array and json_extract
        return f"json_extract('[{','.join(map(str, ids))}]', '$[' || ({index_sql}) || ']')"

    def _insert_concrete(self, start: int, count: int) -> None:
        topics = self.other_topics
        pick = self._array_pick(topics, f"series.g % {len(topics)}")
        self._insert_subscriptions(start, count, "'(filler)'", TopicDialect.CONCRETE, False)
        with self.db.engine.begin() as conn:
            conn.execute(text(f"INSERT INTO subscription_topics (subscription_id, topic_id) "
                              f"SELECT {self._id()}, {pick} FROM {self._series(start, count)}"))

    def _insert_full(self, start: int, count: int) -> None:
        """Full-dialect filler: subscription g uses expression g % len(sets); its topic rows come from a
        helper table (set index, topic id) holding each expression's compiled topic set."""
        if count <= 0:
            return
        sets = self.full_sets
        with self.db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS bench_full_sets (set_index INTEGER, topic_id INTEGER)"))
            conn.execute(text("DELETE FROM bench_full_sets"))
            conn.execute(text("INSERT INTO bench_full_sets (set_index, topic_id) VALUES (:i, :t)"),
                         [{"i": i, "t": t} for i, (_, ids) in enumerate(sets) for t in ids])
        expressions = [expression for expression, _ in sets]
        if self.dialect == "postgresql":
            pick = "(ARRAY[" + ",".join(f"'{e}'" for e in expressions) + f"])[1 + (series.g % {len(sets)})]"
        else:
            pick = ("json_extract('[" + ",".join(f'"{e}"' for e in expressions) + "]', '$[' || (series.g % "
                    f"{len(sets)}) || ']')")
        self._insert_subscriptions(start, count, pick, TopicDialect.FULL, True)
        with self.db.engine.begin() as conn:
            conn.execute(text(f"INSERT INTO subscription_topics (subscription_id, topic_id) "
                              f"SELECT {self._id()}, f.topic_id FROM {self._series(start, count)} "
                              f"JOIN bench_full_sets f ON f.set_index = series.g % {len(sets)}"))

    def counts(self) -> dict[str, int]:
        with self.db.engine.connect() as conn:
            return {"subscriptions": conn.scalar(text("SELECT count(*) FROM subscriptions")),
                    "subscription_topics": conn.scalar(text("SELECT count(*) FROM subscription_topics")),
                    "full_dialect": conn.scalar(text(f"SELECT count(*) FROM subscriptions "
                                                     f"WHERE dialect = '{TopicDialect.FULL.value}'"))}

    # -- measuring -----------------------------------------------------------------------------------------
    def time_fan_out(self, repeats: int) -> dict[str, Any]:
        """hiem's fan_out (INSERT..SELECT from the topic index) for ``repeats`` fresh probe notifications."""
        timings, matched = [], set()
        statements: dict[str, list[float]] = {}
        starts: list[float] = []

        def before(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            starts.append(time.perf_counter())

        def after(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
            if timing_now and starts:
                key = " ".join(statement.split())[:90]
                statements.setdefault(key, []).append(time.perf_counter() - starts.pop())

        event.listen(self.db.engine, "before_cursor_execute", before)
        event.listen(self.db.engine, "after_cursor_execute", after)
        timing_now = False
        for _ in range(repeats):
            known = dict(message_id=f"urn:uuid:{uuid.uuid4()}", topic_id=self.probe_id, topic_namespace=ns.NHIN,
                         topic_path="/".join(PROBE.path), message_xml=b"<x/>", producer_reference=b"",
                         publisher="127.0.0.1")
            new = deliveries.NewNotification(**{f.name: known.get(f.name) for f in
                                                dataclasses.fields(deliveries.NewNotification)})
            with self.db.session() as session:
                nid = deliveries.record_notification(session, new).id
            starts.clear()
            timing_now = True
            started = time.perf_counter()
            with self.db.session() as session:
                deliveries.fan_out(session, nid)
            timings.append(time.perf_counter() - started)
            timing_now = False
            with self.db.session() as session:
                matched.add(session.scalar(select(Delivery.id).where(Delivery.notification_id == nid)
                                           .with_only_columns(text("count(*)"))))
        event.remove(self.db.engine, "before_cursor_execute", before)
        event.remove(self.db.engine, "after_cursor_execute", after)
        timings.sort()
        by_statement = sorted(((round(1000 * statistics.median(v), 3), k) for k, v in statements.items()), reverse=True)
        return {"median_ms": round(1000 * statistics.median(timings), 3),
                "statements_median_ms": [{"ms": ms, "sql": sql} for ms, sql in by_statement[:6]],
                "min_ms": round(1000 * timings[0], 3), "max_ms": round(1000 * timings[-1], 3),
                "repeats": repeats, "matched": sorted(matched)}

    def explain(self) -> str:
        """The plan of the matching SELECT (what fan_out's INSERT..SELECT reads)."""
        select_sql = ("SELECT st.subscription_id FROM subscription_topics st JOIN subscriptions s "
                      "ON s.id = st.subscription_id WHERE st.topic_id = :topic AND s.status IN ('active', 'paused') "
                      "AND s.message_filter IS NULL "
                      "AND (s.termination_time IS NULL OR s.termination_time > CURRENT_TIMESTAMP)")
        prefix = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) " if self.dialect == "postgresql" \
            else "EXPLAIN QUERY PLAN "
        with self.db.engine.connect() as conn:
            rows = conn.execute(text(prefix + select_sql), {"topic": self.probe_id}).all()
        return "\n".join(" ".join(str(c) for c in row) if self.dialect != "postgresql" else row[0] for row in rows)

    def parallel_query(self, enabled: bool) -> None:
        """PostgreSQL only: new connections get PostgreSQL's default max_parallel_workers_per_gather (2)
        instead of hiem's 0 (hiem.store.db turns parallel query off for its own sessions)."""
        self.db.engine.dispose()
        if enabled:
            event.listen(self.db.engine, "connect", _parallel)
        elif event.contains(self.db.engine, "connect", _parallel):
            event.remove(self.db.engine, "connect", _parallel)

    def close(self) -> None:
        self.db.dispose()


def _parallel(dbapi_connection: Any, _record: Any) -> None:
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    dbapi_connection.execute("SET max_parallel_workers_per_gather = 2")
    dbapi_connection.autocommit = autocommit


def run(url: str, sizes: tuple[int, ...], repeats: int, log: Callable[[str], None] = print) -> dict[str, Any]:
    population = Population(url)
    try:
        population.prepare()
        result: dict[str, Any] = {"probe": str(PROBE), "probe_matches": PROBE_CONCRETE + PROBE_FULL,
                                  "full_share_of_filler": FULL_SHARE, "sizes": {}}
        for size in sizes:
            load_s = population.grow_to(size)
            population.time_fan_out(3)  # warm the caches the way a running broker has them warm
            timing = population.time_fan_out(repeats)
            entry = {"load_seconds": round(load_s, 1), **population.counts(), **timing,
                     "plan": population.explain()}
            if population.dialect == "postgresql":
                # the same with PostgreSQL's default parallel query (hiem turns it off): why it is off
                population.parallel_query(True)
                population.time_fan_out(3)
                entry["parallel_query_on"] = population.time_fan_out(repeats)
                entry["parallel_query_on"]["plan"] = population.explain()
                population.parallel_query(False)
            result["sizes"][str(size)] = entry
            log(f"  matching {population.dialect} {size:>9,} subscriptions: fan_out {timing['median_ms']} ms "
                f"(matched {timing['matched']}, load {load_s:.1f}s)")
        small, large = (result["sizes"][str(s)] for s in (sizes[0], sizes[-1]))
        result["ratio"] = round(large["median_ms"] / small["median_ms"], 2)
        if "parallel_query_on" in large:
            result["ratio_parallel_query_on"] = round(
                large["parallel_query_on"]["median_ms"] / small["parallel_query_on"]["median_ms"], 2)
        return result
    finally:
        population.close()
