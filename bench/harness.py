"""Processes and services for the benchmarks: consumer, hello server, broker (embedded or distributed),
fresh PostgreSQL databases, RSS sampling and polling the deliveries table.

The hiem processes are started exactly as the integration tests start them (tests/support/processes.py:
``python -m hiem.cli.main serve --dev`` / ``worker --dev``, own process group, output to a log file).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import httpx
import psutil

from tests.support.processes import HiemProcess, free_port, hiem_env, wait_for_log, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = os.environ.get("HIEM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("HIEM_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

#: what every benchmark broker runs with, on top of hiem's defaults: dev mode (loopback consumers),
#: no other change unless a benchmark says so (and the results record it)
BENCH_ENV: dict[str, str] = {}


class Proc:
    """A Python helper process of the benchmark (consumer, hello server), in its own process group."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.args, self.log_path = args, log_path
        self.env = env or {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_start = 0

    def start(self, ready: str | None = None, timeout: float = 30.0) -> Proc:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        # logs are appended to, and an earlier process may have written the ready line to this one
        self._log_start = self._log.tell()
        self.proc = subprocess.Popen([sys.executable, *self.args], cwd=ROOT, env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        if ready:
            deadline = time.monotonic() + timeout
            while ready not in self.output():
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.args} did not start:\n{self.output()[-3000:]}")
                time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        """What this process has written (not what earlier processes appended to the same log)."""
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as log:
            log.seek(self._log_start)
            return log.read().decode(errors="replace")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self._log:
            self._log.close()
            self._log = None


#: consumer URL -> its process id, while it runs
CONSUMER_PIDS: dict[str, int] = {}


@contextlib.contextmanager
def consumer(tmp: Path) -> Iterator[str]:
    """The fast aiohttp consumer in its own process; yields its Notify URL."""
    port = free_port()
    proc = Proc(["-m", "bench.consumer", "--port", str(port)], tmp / "consumer.log").start("listening")
    url = f"http://127.0.0.1:{port}/notify"
    CONSUMER_PIDS[url] = proc.pid
    try:
        yield url
    finally:
        CONSUMER_PIDS.pop(url, None)
        proc.stop()


def consumer_received(url: str) -> int:
    base = url.rsplit("/", 1)[0]
    return int(httpx.get(f"{base}/stats", timeout=5).json()["received"])


@contextlib.contextmanager
def hello_server(tmp: Path, threads: int) -> Iterator[str]:
    port = free_port()
    proc = Proc(["-m", "bench.hello", "--port", str(port), "--threads", str(threads)],
                tmp / "hello.log").start("listening")
    try:
        yield f"http://127.0.0.1:{port}/hello"
    finally:
        proc.stop()


# -- services ------------------------------------------------------------------------------------------------
def postgres_available() -> str | None:
    """None when the PostgreSQL server answers, else why not."""
    import psycopg

    try:
        psycopg.connect(POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3).close()
    except psycopg.Error as exc:
        return f"PostgreSQL at {POSTGRES_URL}: {exc}"
    return None


def redis_available() -> str | None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3).ping()
    except redis.RedisError as exc:
        return f"Redis at {REDIS_URL}: {exc}"
    return None


@contextlib.contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new PostgreSQL database for one benchmark (SQLAlchemy URL); dropped afterwards."""
    import psycopg

    base = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"hiem_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def flush_queue(queue: str) -> None:
    """Delete a benchmark's Celery queue from Redis (a stopped run may leave a backlog)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=f"{queue}*"):
        client.delete(key)
    client.delete(queue)


# -- the broker ----------------------------------------------------------------------------------------------
@dataclass
class Broker:
    mode: str
    url: str
    database_url: str
    env: dict[str, str]
    tmp: Path
    web: HiemProcess
    workers: list[HiemProcess] = field(default_factory=list)

    def pids(self) -> dict[str, int]:
        found = {"web": self.web.proc.pid}  # type: ignore[union-attr]
        for index, worker in enumerate(self.workers):
            found[f"worker{index + 1}"] = worker.proc.pid  # type: ignore[union-attr]
        return found

    def stop(self) -> None:
        for proc in [*self.workers, self.web]:
            proc.stop()
        if self.mode == "distributed":
            with contextlib.suppress(Exception):
                flush_queue(self.env["HIEM_QUEUE"])


def start_broker(mode: str, tmp: Path, *, database_url: str | None = None, workers: int = 2,
                 worker_concurrency: int | None = None, **overrides: str) -> Broker:
    """``hiem serve --dev`` (embedded: SQLite + in-process worker), or with PostgreSQL + Redis and
    ``workers`` ``hiem worker --dev`` processes (distributed)."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = hiem_env(**BENCH_ENV, **overrides)
    if mode == "embedded":
        env["HIEM_DATABASE_URL"] = database_url or f"sqlite:///{tmp / 'hiem.db'}"
    else:
        assert database_url, "distributed mode needs a PostgreSQL URL"
        env["HIEM_DATABASE_URL"] = database_url
        env["HIEM_BROKER_URL"] = REDIS_URL
        env["HIEM_QUEUE"] = f"hiem-bench-{uuid.uuid4().hex[:8]}"
    web = HiemProcess(["serve", "--dev", "--port", str(port)], env, tmp / "web.log").start()
    broker = Broker(mode, f"http://127.0.0.1:{port}", env["HIEM_DATABASE_URL"], env, tmp, web)
    try:
        wait_healthy(broker.url, web)
        if mode == "distributed":
            for index in range(workers):
                args = ["worker", "--dev", "--loglevel", "WARNING"]
                if worker_concurrency:
                    args += ["-c", str(worker_concurrency)]
                proc = HiemProcess(args, env, tmp / f"worker{index + 1}.log").start()
                broker.workers.append(proc)
            for proc in broker.workers:
                wait_for_worker(proc)
    except Exception:
        broker.stop()
        raise
    return broker


def wait_for_worker(proc: HiemProcess, timeout: float = 60.0) -> None:
    """A Celery worker is consuming once its pool children exist and it logged no error; with
    --loglevel WARNING there is no "ready." line, so wait for the children and a quiet second."""
    deadline = time.monotonic() + timeout
    parent = psutil.Process(proc.proc.pid)  # type: ignore[union-attr]
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:  # type: ignore[union-attr]
            raise RuntimeError(f"worker exited:\n{proc.output()[-3000:]}")
        if "ready." in proc.output() or len(parent.children()) >= 1:
            time.sleep(1.0)
            return
        time.sleep(0.1)
    wait_for_log(proc, "ready.", 1)


# -- measuring -----------------------------------------------------------------------------------------------
class RssSampler(threading.Thread):
    """Samples the RSS of named process trees every ``interval`` s; peaks per process and per tree."""

    def __init__(self, roots: dict[str, int], interval: float = 0.1) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.roots = roots
        self.interval = interval
        self.peak_tree: dict[str, int] = dict.fromkeys(roots, 0)
        self.peak_process: dict[str, int] = dict.fromkeys(roots, 0)
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        procs = {name: psutil.Process(pid) for name, pid in self.roots.items()}
        while not self._stop_event.is_set():
            for name, proc in procs.items():
                try:
                    members = [proc, *proc.children(recursive=True)]
                    rss = [m.memory_info().rss for m in members]
                except psutil.Error:
                    continue
                self.peak_tree[name] = max(self.peak_tree[name], sum(rss))
                self.peak_process[name] = max(self.peak_process[name], max(rss))
            self.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> dict[str, Any]:
        self._stop_event.set()
        self.join(5)
        mb = 1024 * 1024
        return {
            "peak_rss_mb": {k: round(v / mb, 1) for k, v in self.peak_process.items()},
            "peak_tree_rss_mb": {k: round(v / mb, 1) for k, v in self.peak_tree.items()},
            "samples": self.samples,
        }


class DeliveryTable:
    """Read-only polling of hiem's tables (its own connection: never the broker's pool)."""

    def __init__(self, database_url: str) -> None:
        self.sqlite = database_url.startswith("sqlite")
        if self.sqlite:
            path = database_url.split("///", 1)[1]
            self.conn: Any = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30,
                                             isolation_level=None, check_same_thread=False)
            self.mark = "?"
        else:
            import psycopg

            self.conn = psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"),
                                        autocommit=True)
            self.mark = "%s"

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        sql = sql.replace("?", self.mark)
        return list(self.conn.execute(sql, params).fetchall())

    def scalar(self, sql: str, *params: Any) -> Any:
        rows = self.query(sql, *params)
        return rows[0][0] if rows else None

    def last_notification(self) -> int:
        return int(self.scalar("SELECT coalesce(max(id), 0) FROM notifications"))

    def states(self, notification_id: int) -> dict[str, int]:
        return dict(self.query("SELECT state, count(*) FROM deliveries WHERE notification_id = ? GROUP BY state",
                               notification_id))

    def wait_all(self, notification_id: int, expected: int, timeout: float, poll: float = 0.05,
                 states: tuple[str, ...] = ("delivered",)) -> dict[str, Any]:
        """Poll until ``expected`` deliveries of the notification reached one of ``states``.

        Above 10,000 deliveries the poll is once a second: each poll counts the notification's rows, and at
        100,000 a poll every 50 ms cost PostgreSQL about 1 ms of CPU per delivery, charged to the broker's
        database in the CPU figures. The figures come from the rows' own timestamps, not from the poll.
        """
        if expected > 10_000:
            poll = max(poll, 1.0)
        deadline = time.monotonic() + timeout
        last: dict[str, int] = {}
        while time.monotonic() < deadline:
            last = self.states(notification_id)
            if sum(last.get(s, 0) for s in states) >= expected:
                return {"done": True, "states": last}
            time.sleep(poll)
        return {"done": False, "states": last}

    def times(self, notification_id: int) -> dict[str, float | None]:
        """Wall-clock (epoch) times of the notification's milestones, as the broker recorded them."""
        row = self.query("SELECT received_at, fanout_done_at FROM notifications WHERE id = ?", notification_id)[0]
        first, last = self.query("SELECT min(delivered_at), max(delivered_at) FROM deliveries "
                                 "WHERE notification_id = ?", notification_id)[0]
        return {"received": epoch(row[0]), "fanout_done": epoch(row[1]), "first_delivered": epoch(first),
                "last_delivered": epoch(last)}

    def close(self) -> None:
        self.conn.close()


class PgConnections(threading.Thread):
    """Peak PostgreSQL connections (ours and the server's total) and sessions opened, while it runs."""

    def __init__(self, database_url: str, interval: float = 0.1) -> None:
        super().__init__(daemon=True, name="pg-connections")
        import psycopg

        self.name_ = database_url.rsplit("/", 1)[1]
        self.conn = psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)
        self.interval = interval
        self.peak_ours = self.peak_total = 0
        self.max_connections = int(self.conn.execute("SHOW max_connections").fetchone()[0])  # type: ignore[index]
        self.sessions_before = self._sessions()
        self._stop_event = threading.Event()

    def _sessions(self) -> int:
        row = self.conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = %s", (self.name_,)).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def run(self) -> None:
        while not self._stop_event.is_set():
            ours, total = self.conn.execute(
                "SELECT count(*) FILTER (WHERE datname = %s), count(*) FROM pg_stat_activity "
                "WHERE backend_type = 'client backend'", (self.name_,)).fetchone()  # type: ignore[misc]
            self.peak_ours, self.peak_total = max(self.peak_ours, ours), max(self.peak_total, total)
            self._stop_event.wait(self.interval)

    def stop(self) -> dict[str, int]:
        self._stop_event.set()
        self.join(5)
        self.conn.execute("SELECT pg_stat_clear_snapshot()")
        opened = self._sessions() - self.sessions_before
        self.conn.close()
        return {"peak_connections_ours": self.peak_ours, "peak_connections_server": self.peak_total,
                "max_connections": self.max_connections, "sessions_opened": opened}


def epoch(value: Any) -> float | None:
    """A timestamp column as epoch seconds (SQLite gives naive UTC strings, PostgreSQL aware datetimes)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
