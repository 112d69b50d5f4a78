"""The scenario the console tests share: an embedded broker in dev mode, a good and a failing consumer,
two published notifications (so two dead deliveries: the failing consumer answers 400, final at once), the
printed ``dev`` admin password, and a viewer created with ``hiem operators add``."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import select

from hiem.store.db import Database
from hiem.store.models import Delivery, OperatorAction
from tests.conftest import Broker, start_broker
from tests.support import wsn
from tests.support.consumer import RecordingConsumer
from tests.support.faults import wait_until
from tests.support.processes import ROOT

VIEWER, VIEWER_PASSWORD = "vera", "viewer-password-1"


def refuse(_: bytes) -> tuple[int, dict[str, str], bytes]:
    return 400, {}, b"bad request"


@dataclass
class Console:
    """A broker with a good and a failing consumer, two published notifications, and therefore two dead
    deliveries (the failing consumer answers 400: final at once); plus the dev admin and a viewer."""

    broker: Broker
    db: Database
    failing: RecordingConsumer
    failing_subscription: str
    dead: list[int]
    password: str

    @property
    def url(self) -> str:
        return self.broker.url

    def delivery(self, delivery_id: int) -> Delivery:
        with self.db.session() as session:
            row = session.get(Delivery, delivery_id)
            assert row is not None
            return row

    def actions(self) -> list[OperatorAction]:
        with self.db.session() as session:
            return list(session.scalars(select(OperatorAction).order_by(OperatorAction.id)))


@contextmanager
def running_console(tmp: Path) -> Iterator[Console]:
    """Start the scenario; the consumers and the broker stop when the block ends."""
    broker = start_broker("embedded", tmp, HIEM_OPS_POLL_SECONDS="1")
    db = Database(broker.env["HIEM_DATABASE_URL"])
    try:
        with RecordingConsumer() as good, RecordingConsumer(refuse) as failing:
            wsn.call(broker.url, "Subscribe", wsn.subscribe_body(good.url))
            failing_subscription = wsn.subscription_id(wsn.call(broker.url, "Subscribe",
                                                                wsn.subscribe_body(failing.url)))
            for _ in range(2):
                assert wsn.call(broker.url, "Notify", wsn.notify_body()).status_code == 202
            good.wait_for(2)
            wait_until(lambda: len(dead_ids(db)) == 2, 20, "two dead deliveries")
            match = re.search(r"user: dev\s+password: (\S+)", broker.web.output())
            assert match, broker.web.output()[-3000:]
            add = subprocess.run([sys.executable, "-m", "hiem.cli", "operators", "add", VIEWER, "--role", "viewer",
                                  "--password-stdin"], input=VIEWER_PASSWORD + "\n", env=broker.env, cwd=ROOT,
                                 capture_output=True, text=True, timeout=60)
            assert add.returncode == 0, add.stderr
            yield Console(broker, db, failing, failing_subscription, dead_ids(db), match.group(1))
    finally:
        db.dispose()
        broker.stop()


def dead_ids(db: Database) -> list[int]:
    with db.session() as session:
        return sorted(session.scalars(select(Delivery.id).where(Delivery.state == "dead")))


@contextmanager
def logged_in_client(console: Console, username: str = "dev", password: str | None = None) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=console.url, timeout=10) as client:
        page = client.get("/ops/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        done = client.post("/ops/login", data={"csrf": csrf, "username": username,
                                               "password": password or console.password, "next": "/ops"})
        assert done.status_code == 303 and done.headers["location"] == "/ops", done.text
        yield client


def page_csrf(client: httpx.Client) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get("/ops").text).group(1)  # type: ignore[union-attr]
