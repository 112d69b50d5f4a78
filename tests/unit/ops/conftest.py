"""Fixtures for the console's unit tests: a migrated SQLite database with the GIPSE tree, rows made by the
store's own functions, and the console WSGI app driven in-process through httpx's WSGI transport."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from hiem import ns
from hiem.app.bootstrap import BUNDLED_TOPICS, load_topic_files, open_database
from hiem.clock import utcnow
from hiem.config import Settings
from hiem.ops import operators
from hiem.ops.app import OpsApp
from hiem.ops.queue import QueueMonitor, QueueStatus
from hiem.ops.settings import OpsSettings
from hiem.store import deliveries, subscriptions, topics
from hiem.store.db import Database, as_utc
from hiem.store.models import Delivery, Notification
from hiem.wstopics import TopicPath

ILI = TopicPath(ns.NHIN, ("GIPSE", "Biosurveillance", "InfluenzaLikeIllness"))
CONCRETE = "http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete"
ADMIN, VIEWER, PASSWORD = "alice", "victor", "correct horse battery"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url=f"sqlite:///{tmp_path / 'ops.db'}")


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Migrated once, with the GIPSE tree and two operators; each test gets a copy (migrations are slow)."""
    path = tmp_path_factory.mktemp("template") / "ops.db"
    database = open_database(Settings(database_url=f"sqlite:///{path}"))
    load_topic_files(database, sorted(BUNDLED_TOPICS.glob("*.xml")))
    with database.session() as session:
        operators.add_operator(session, ADMIN, PASSWORD, "admin")
        operators.add_operator(session, VIEWER, PASSWORD, "viewer")
    database.dispose()  # the last connection closing checkpoints the WAL into the file
    assert not path.with_name("ops.db-wal").exists()
    return path


@pytest.fixture
def db(settings: Settings, template_db: Path, tmp_path: Path) -> Iterator[Database]:
    shutil.copyfile(template_db, tmp_path / "ops.db")
    database = open_database(settings, migrate=False)
    yield database
    database.dispose()


def add_subscription(db: Database, sid: str, consumer: str, organization: str | None = None) -> str:
    with db.session() as session:
        topic_id = topics.topic_id(session, ILI)
        subscriptions.create(session, subscriptions.NewSubscription(
            id=sid, consumer_address=consumer, consumer_reference_parameters=b"", manager_address="http://b/wsn/SM",
            topic_expression="nhin:GIPSE/Biosurveillance/InfluenzaLikeIllness", dialect=CONCRETE,
            topic_namespaces={"nhin": ns.NHIN}, is_wildcard=False, soap_version="1.2", created_at=utcnow(),
            organization=organization), [topic_id])
    return sid


def publish(db: Database, received_at: datetime | None = None) -> int:
    """Record a notification on ILI and fan it out (one pending delivery per subscription)."""
    with db.session() as session:
        topic_id = topics.topic_id(session, ILI)
        row = deliveries.record_notification(session, deliveries.NewNotification(
            None, topic_id, ns.NHIN, "GIPSE/Biosurveillance/InfluenzaLikeIllness", b"<m/>", b"", "pub"))
        if received_at is not None:
            row.received_at = received_at
        session.flush()
        deliveries.fan_out(session, row.id)
        return row.id


def finish(db: Database, notification_id: int, subscription_id: str, state: str, *, after: float = 1.0,
           attempts: int = 1, error: str | None = None) -> int:
    """Move one delivery to a final state as a worker would have, ``after`` seconds past receipt."""
    with db.session() as session:
        row = session.query(Delivery).filter_by(notification_id=notification_id,
                                                subscription_id=subscription_id).one()
        received = as_utc(session.get(Notification, notification_id).received_at)  # type: ignore[union-attr]
        row.state, row.attempts, row.last_error = state, attempts, error
        row.updated_at = received + timedelta(seconds=after)
        if state == "delivered":
            row.delivered_at, row.last_status = received + timedelta(seconds=after), 202
        return row.id


@dataclass
class Seeded:
    good: str
    bad: str
    notification: int
    delivered: int
    dead: int


@pytest.fixture
def seeded(db: Database) -> Seeded:
    """One notification to a good and a failing consumer: one delivered (2 s), one dead (HTTP 400)."""
    good = add_subscription(db, "sub-good", "http://good.example/notify", organization="County Health")
    bad = add_subscription(db, "sub-bad", "http://bad.example/notify", organization="State Lab")
    nid = publish(db)
    delivered = finish(db, nid, good, "delivered", after=2.0)
    dead = finish(db, nid, bad, "dead", error="HTTP 400: bad request")
    return Seeded(good, bad, nid, delivered, dead)


class FixedQueue(QueueMonitor):
    """The broker's half of the overview, fixed (unit tests have no broker)."""

    def __init__(self, settings: Settings, status: QueueStatus | None = None) -> None:
        super().__init__(settings)
        self.fixed = status or QueueStatus("embedded", settings.queue, None, None, "embedded mode")

    def status(self) -> QueueStatus:
        return self.fixed


@pytest.fixture
def app(settings: Settings, db: Database) -> OpsApp:
    return OpsApp(settings, db, OpsSettings(secret=b"s" * 32, poll_seconds=5), FixedQueue(settings))


def client_for(app: OpsApp) -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://console.test")


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def login(client: httpx.Client, username: str = ADMIN, password: str = PASSWORD) -> httpx.Response:
    csrf = csrf_of(client.get("/ops/login").text)
    return client.post("/ops/login", data={"csrf": csrf, "username": username, "password": password,
                                           "next": "/ops/deliveries"})


@pytest.fixture
def admin(app: OpsApp) -> Iterator[httpx.Client]:
    with client_for(app) as client:
        assert login(client).status_code == 303
        yield client


@pytest.fixture
def viewer(app: OpsApp) -> Iterator[httpx.Client]:
    with client_for(app) as client:
        assert login(client, VIEWER).status_code == 303
        yield client
