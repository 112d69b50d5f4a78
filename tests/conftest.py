"""Fixtures shared by the whole suite: a running broker (embedded or distributed) and a consumer."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.consumer import RecordingConsumer
from tests.support.processes import HiemProcess, free_port, hiem_env, wait_for_log, wait_healthy
from tests.support.services import fresh_postgres_database, require_redis

FAST = {"HIEM_DB_POOL": "2", "HIEM_SWEEP_INTERVAL": "0.5", "HIEM_VISIBILITY_TIMEOUT": "10", "HIEM_BACKOFF_BASE": "0.5",
        "HIEM_BACKOFF_MAX": "2", "HIEM_CONNECT_TIMEOUT": "2", "HIEM_READ_TIMEOUT": "5"}


@pytest.fixture(autouse=True)
def _clean_hiem_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the HIEM_* variables of the shell that started pytest."""
    for key in list(os.environ):
        if key.startswith("HIEM_") and not key.startswith("HIEM_TEST_"):
            monkeypatch.delenv(key)


@dataclass
class Broker:
    """A running broker: its base URL, its processes and the environment they share."""

    mode: str
    url: str
    env: dict[str, str]
    tmp: Path
    web: HiemProcess
    workers: list[HiemProcess] = field(default_factory=list)

    def start_worker(self, *extra: str) -> HiemProcess:
        log = self.tmp / f"worker{len(self.workers)}.log"
        worker = HiemProcess(["worker", "--dev", "-c", "4", *extra], self.env, log).start()
        self.workers.append(worker)
        wait_for_log(worker, "ready.")
        return worker

    def stop(self) -> None:
        for proc in [*self.workers, self.web]:
            proc.stop()


def start_broker(mode: str, tmp: Path, database_url: str | None = None, broker_url: str | None = None,
                 workers: int = 1, dev: bool = True, **env_overrides: str) -> Broker:
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = hiem_env(**{**FAST, **env_overrides})
    if mode == "embedded":
        env["HIEM_DATABASE_URL"] = database_url or f"sqlite:///{tmp / 'hiem.db'}"
    else:
        env["HIEM_DATABASE_URL"] = database_url or ""
        env["HIEM_BROKER_URL"] = broker_url or ""
        env["HIEM_QUEUE"] = f"hiem-test-{uuid.uuid4().hex[:8]}"
    env.setdefault("HIEM_DEV_DIR", str(tmp / "dev-identity"))
    web = HiemProcess(["serve", *(["--dev"] if dev else []), "--port", str(port)], env, tmp / "web.log").start()
    broker = Broker(mode, f"http://127.0.0.1:{port}", env, tmp, web)
    try:
        wait_healthy(broker.url, web)
        if mode == "distributed":
            for _ in range(workers):
                broker.start_worker()
    except Exception:
        broker.stop()
        raise
    return broker


@contextmanager
def broker_in_mode(mode: str, tmp: Path, **env_overrides: str) -> Iterator[Broker]:
    """A started broker in ``mode`` (distributed: on a fresh PostgreSQL database and the machine's Redis),
    stopped and its database dropped on exit."""
    with ExitStack() as stack:
        if mode == "embedded":
            running = start_broker("embedded", tmp, **env_overrides)
        else:
            database = stack.enter_context(fresh_postgres_database())
            running = start_broker("distributed", tmp, database, require_redis(), **env_overrides)
        stack.callback(running.stop)
        yield running


@pytest.fixture(params=["embedded", "distributed"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    """The broker in both deployments: SQLite + in-process worker, and PostgreSQL + Redis + `hiem worker`."""
    if request.param == "embedded":
        running = start_broker("embedded", tmp_path)
        yield _checked(request, running)
        return
    redis_url = require_redis()
    with fresh_postgres_database() as database_url:
        running = start_broker("distributed", tmp_path, database_url, redis_url)
        yield _checked(request, running)


@pytest.fixture
def embedded_broker(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Broker]:
    yield _checked(request, start_broker("embedded", tmp_path))


def _checked(request: pytest.FixtureRequest, running: Broker) -> Broker:
    request.addfinalizer(running.stop)
    request.addfinalizer(lambda: _dump_logs(request, running))
    return running


def _dump_logs(request: pytest.FixtureRequest, running: Broker) -> None:
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for proc in [running.web, *running.workers]:
            print(f"----- {proc.log_path.name} -----\n{proc.output()[-6000:]}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def consumer() -> Iterator[RecordingConsumer]:
    with RecordingConsumer() as running:
        yield running


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One embedded broker shared by a module's tests (for tests that do not depend on a clean state)."""
    running = start_broker("embedded", tmp_path_factory.mktemp("broker"))
    try:
        yield running
    finally:
        running.stop()
