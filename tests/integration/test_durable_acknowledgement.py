"""A 202 means "recorded": the embedded default commits with SQLite synchronous=FULL, and a broker killed
right after answering 202 delivers the notification once it is started again, in both modes (distributed:
web and worker processes SIGKILLed, PostgreSQL's commit and the fan-out job in Redis are what is left)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from hiem.config import load_settings
from hiem.store.db import Database
from tests.conftest import Broker, broker_in_mode
from tests.support import wsn
from tests.support.consumer import RecordingConsumer
from tests.support.processes import free_port, wait_healthy

pytestmark = pytest.mark.slow


def test_embedded_commits_are_durable_by_default(tmp_path: Path) -> None:
    settings = load_settings({"HIEM_DATABASE_URL": f"sqlite:///{tmp_path / 'hiem.db'}"})
    database = Database(settings.database_url, settings.db_pool, settings.sqlite_synchronous)
    try:
        with database.engine.connect() as connection:
            # 2 = FULL: the WAL is synced at every commit (https://sqlite.org/pragma.html#pragma_synchronous)
            assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        database.dispose()


@pytest.mark.parametrize("mode", ["embedded", "distributed"])
def test_a_broker_killed_right_after_202_delivers_after_restart(tmp_path: Path, mode: str) -> None:
    with broker_in_mode(mode, tmp_path) as broker:
        _kill_after_202_and_restart(broker)


def _kill_after_202_and_restart(broker: Broker) -> None:
    consumer_port = free_port()
    try:
        # Nobody listens at the consumer's address yet: the notification cannot have been delivered
        # before the kill, so what arrives later came from the database, not from memory.
        response = wsn.call(broker.url, "Subscribe", wsn.subscribe_body(f"http://127.0.0.1:{consumer_port}/notify"))
        assert response.status_code == 200, response.text
        published = wsn.call(broker.url, "Notify", wsn.notify_body(payload="<k:Kept xmlns:k='urn:test:kept'/>"))
        assert published.status_code == 202, published.text
        for proc in [broker.web, *broker.workers]:  # SIGKILL, right after the 202: no shutdown hook runs
            proc.kill()
            proc.proc.wait(10)
    finally:
        broker.stop()
    engine = sa.create_engine(broker.env["HIEM_DATABASE_URL"], poolclass=NullPool)
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM notifications").scalar() == 1
    engine.dispose()
    with RecordingConsumer(port=consumer_port) as consumer:
        for proc in [broker.web, *broker.workers]:
            proc.start()
        try:
            wait_healthy(broker.url, broker.web)
            received = consumer.wait_for(1, timeout=30)
            assert b"urn:test:kept" in received[0].body
        finally:
            broker.stop()

