"""Engines and sessions for SQLite (embedded default) and PostgreSQL (production).

SQLite specifics, and why: WAL so readers never block the writer; ``BEGIN IMMEDIATE`` for every
transaction so two writers queue on the busy timeout instead of failing with "database is locked" when a
read transaction tries to upgrade; a 30 s busy timeout.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from hiem.errors import ConfigError
from hiem.store.turns import WriterTurns


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything in hiem is UTC-aware."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


#: SQLite page cache per connection, in KiB (a negative cache_size is KiB)
SQLITE_CACHE_KIB = -1024


#: SQLite's synchronous settings hiem accepts. FULL (the default) makes every commit durable in WAL mode:
#: the publisher's 202 means "recorded", and a power cut must not take it back. NORMAL can lose the last
#: commits to an OS crash or power loss (never to a process crash).
SQLITE_SYNCHRONOUS = ("FULL", "EXTRA", "NORMAL")


def make_engine(url: str, pool_size: int = 5, sqlite_synchronous: str = "FULL") -> Engine:
    if url.startswith("sqlite"):
        if sqlite3.sqlite_version_info < (3, 35):
            raise ConfigError(f"SQLite {sqlite3.sqlite_version} is too old: hiem needs 3.35 or later "
                              "(UPDATE .. RETURNING); use a newer Python build or PostgreSQL")
        # Few idle connections and a small page cache each: every SQLite connection keeps its own cache
        # (2 MB by default), so 20-odd pooled connections on a large database added tens of MB to the
        # process; the OS page cache serves re-reads anyway (docs/performance.md, "Memory").
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               pool_size=8, max_overflow=32)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # let us emit BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA cache_size={SQLITE_CACHE_KIB}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # Small pools: every web process, worker process (and Celery pool child) has its own, and PostgreSQL's
    # default max_connections is 100. No parallel query on hiem's own sessions: every statement is a short
    # index lookup, and with a million subscriptions the planner started a parallel worker to read the 20
    # rows of a fan-out match, ten times slower than the plain index scan (docs/performance.md, "Matching").
    # No JIT either: the planner costs an index range by the table's statistics, and on a large history it
    # compiled the operators' one-hour latency read (2 ms of work) for 10 to 50 ms ("Operator reads").
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=pool_size, pool_recycle=1800,
                         connect_args={"options": "-c max_parallel_workers_per_gather=0 -c jit=off"})


class Database:
    """An engine plus a session factory; ``session()`` is a transaction that commits or rolls back."""

    def __init__(self, url: str, pool_size: int = 5, sqlite_synchronous: str = "FULL") -> None:
        if sqlite_synchronous not in SQLITE_SYNCHRONOUS:
            raise ConfigError(f"SQLite synchronous={sqlite_synchronous!r}: use one of {', '.join(SQLITE_SYNCHRONOUS)}")
        self.url = url
        self.engine = make_engine(url, pool_size, sqlite_synchronous)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time, and a writer that finds the database locked sleeps in its busy
        # handler (up to 100 ms per try) with no queue: writers take turns on this process's queue instead,
        # clients first (hiem.store.turns). One Database per process (hiem.app.context) makes it the only one.
        self._writer = WriterTurns() if self.engine.dialect.name == "sqlite" else None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        # every SQLite transaction writes (BEGIN IMMEDIATE), so each takes its turn at the writer first
        turn = self._writer.turn() if self._writer is not None else nullcontext()
        with turn, self._factory() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
