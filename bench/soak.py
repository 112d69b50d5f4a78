"""``python -m bench --soak MINUTES``: a steady mix against one broker for MINUTES; is its steady state flat?

The broker runs with short retention windows (``RETENTION_ENV``) so it reaches its steady state within a
few minutes: finished deliveries and notifications go after 60 s, dead deliveries after 120 s, a delivery
that keeps failing is dead after 30 s, a pull point keeps a message 60 s, the purge runs every 5 s.
The mix (``Mix``), at a rate a shared 2-core machine sustains:

* Notifies to a small topic (10 push subscribers and a pull point) and to a large one (500 subscribers);
* Subscribe/Unsubscribe churn on a third topic, which gets a Notify now and then;
* consumers that fail now and then: one answers 503 to ~10 % of the POSTs (retried), one answers 500 with
  a SOAP Sender fault to ~5 % (final: those deliveries go dead); each has subscribers on both topics;
* a pull point: CreatePullPoint once, a subscription delivering into it, GetMessages every few seconds.

Every ``sample_seconds`` it records the database size (SQLite file + WAL, bytes per table and free pages;
or ``pg_database_size``), rows per table, rows purged so far (``purge_totals``), the RSS of every broker
process, the Notify answer p50/p99 and the delivery lag (``notifications.received_at`` to
``deliveries.delivered_at``, push deliveries finished in the interval). At the end it writes
``<date>-<minutes>min.json`` and ``.png`` (into ``bench/results/soak/``, or ``--out``) and prints the middle
third against the last third. Steady state is FLAT when the database size and every process's RSS in the
last third are within 10 % of the middle third. The verdict is reported, never asserted.

    python -m bench --soak 30                        # embedded (SQLite, one process)
    python -m bench --soak 30 --modes distributed    # PostgreSQL + Redis + 2 workers

``python -m bench.soak --port-ok P --port-flaky P --port-fault P`` runs the soak's consumer (started by
the soak itself).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

#: the short retention windows (hiem.config: HIEM_RETAIN_*, HIEM_AUDIT_RETENTION_DAYS, HIEM_PURGE_INTERVAL,
#: HIEM_MAX_AGE, HIEM_PULL_MAX_AGE)
RETENTION_ENV = {
    "HIEM_RETAIN_DELIVERED": "PT60S",
    "HIEM_RETAIN_DEAD": "PT120S",
    "HIEM_RETAIN_NOTIFICATIONS": "PT60S",
    "HIEM_RETAIN_ENDED": "PT120S",
    "HIEM_AUDIT_RETENTION_DAYS": f"{120 / 86400:.7f}",  # 120 s
    "HIEM_PURGE_INTERVAL": "5",
    "HIEM_MAX_AGE": "30",
    "HIEM_PULL_MAX_AGE": "PT60S",
}
TABLES = ("notifications", "deliveries", "audit_records", "subscriptions", "subscription_topics",
          "security_nonces", "purge_totals", "pull_points")
#: the tables whose row counts go into the middle/last table (the others are in the JSON and the plot)
MAIN_TABLES = ("notifications", "deliveries", "audit_records", "subscriptions", "security_nonces", "purge_totals")
FLAT_TOLERANCE = 0.10
BW = "http://docs.oasis-open.org/wsn/bw-2/"


@dataclass
class Mix:
    """What the soak sends, and how often (per second or every so many seconds)."""

    sample_seconds: float = 10.0
    small_subscribers: int = 10       # push subscribers of the small topic: 1 flaky, 1 faulty, the rest fine
    large_subscribers: int = 500      # of the large topic: large_failing flaky + large_failing faulty, rest fine
    large_failing: int = 10
    small_notifies_per_second: float = 2.0
    large_notify_every_s: float = 10.0
    churn_per_second: float = 2.0     # Subscribes per second on the churn topic (each unsubscribed later)
    churn_lifetime_s: float = 15.0
    churn_notify_every_s: float = 10.0
    get_messages_every_s: float = 5.0
    flaky_503_share: float = 0.10
    fault_500_share: float = 0.05


def _topics() -> dict[str, str]:
    from bench import suite

    return {"small": suite.FEVER, "large": suite.INFLUENZA, "churn": suite.RASH}


# -- the consumer: three origins (the circuit breaker is per origin), one process --------------------------
def consumer_main(argv: list[str] | None = None) -> None:
    """Answers 202, except: the flaky port 503 to a share of the POSTs, the faulty port a SOAP 1.2 Sender
    fault with HTTP 500 to a share. ``GET /stats`` on any port: counts per port and answer."""
    from aiohttp import web

    parser = argparse.ArgumentParser(prog="python -m bench.soak")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port-ok", type=int, required=True)
    parser.add_argument("--port-flaky", type=int, required=True)
    parser.add_argument("--port-fault", type=int, required=True)
    parser.add_argument("--flaky-503", type=float, default=0.10)
    parser.add_argument("--fault-500", type=float, default=0.05)
    args = parser.parse_args(argv)
    counts: dict[str, dict[str, int]] = {name: {} for name in ("ok", "flaky", "fault")}
    fault = ('<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Body><s:Fault><s:Code>'
             "<s:Value>s:Sender</s:Value></s:Code><s:Reason><s:Text xml:lang=\"en\">soak: this consumer rejects "
             "the message</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>")

    def app(name: str, share: float, answer: Callable[[], web.Response]) -> web.Application:
        async def notify(request: web.Request) -> web.Response:
            await request.read()
            response = answer() if share and random.random() < share else web.Response(status=202)
            counts[name][str(response.status)] = counts[name].get(str(response.status), 0) + 1
            return response

        async def stats(_: web.Request) -> web.Response:
            return web.Response(text=json.dumps(counts), content_type="application/json")

        application = web.Application(client_max_size=4 * 1024 * 1024)
        application.router.add_get("/stats", stats)
        application.router.add_post("/{tail:.*}", notify)
        return application

    async def serve() -> None:
        runners = []
        for name, port, share, answer in (
                ("ok", args.port_ok, 0.0, lambda: web.Response(status=202)),
                ("flaky", args.port_flaky, args.flaky_503, lambda: web.Response(status=503, text="busy")),
                ("fault", args.port_fault, args.fault_500,
                 lambda: web.Response(status=500, text=fault, content_type="application/soap+xml"))):
            runner = web.AppRunner(app(name, share, answer), access_log=None, handle_signals=False)
            await runner.setup()
            await web.TCPSite(runner, args.host, port, backlog=1024).start()
            runners.append(runner)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"soak consumer listening on {args.port_ok},{args.port_flaky},{args.port_fault}", flush=True)
        await stop.wait()
        for runner in runners:
            await runner.cleanup()

    asyncio.run(serve())


@contextlib.contextmanager
def soak_consumer(tmp: Path, mix: Mix):  # type: ignore[no-untyped-def]
    """The soak consumer in its own process; yields (urls by name, pid)."""
    from bench import harness
    from tests.support.processes import free_port

    ports = {name: free_port() for name in ("ok", "flaky", "fault")}
    proc = harness.Proc(["-m", "bench.soak", "--port-ok", str(ports["ok"]), "--port-flaky", str(ports["flaky"]),
                         "--port-fault", str(ports["fault"]), "--flaky-503", str(mix.flaky_503_share),
                         "--fault-500", str(mix.fault_500_share)], tmp / "consumer.log").start("listening")
    try:
        yield {name: f"http://127.0.0.1:{port}/notify" for name, port in ports.items()}, proc.pid
    finally:
        proc.stop()


# -- the load: one thread per stream, each at a fixed rate -----------------------------------------------------
class Recorder:
    """What the load threads observed: Notify answer times, counts, errors (thread-safe enough: appends)."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.notify: list[tuple[float, float, str]] = []  # (s since start, answer s, stream)
        self.counts: dict[str, int] = {}
        self.errors: list[dict[str, Any]] = []
        self.error_count = 0
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() - self.started

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def error(self, stream: str, message: str) -> None:
        with self._lock:
            self.error_count += 1
            if len(self.errors) < 200:
                self.errors.append({"t_s": round(self.now(), 1), "stream": stream, "error": message[:1000]})


class Stream(threading.Thread):
    """Calls ``step`` every ``period`` s until stopped; a step that overruns skips the ticks it missed."""

    def __init__(self, name: str, period: float, step: Callable[[], None], recorder: Recorder,
                 stop: threading.Event, offset: float = 0.0) -> None:
        super().__init__(daemon=True, name=f"soak-{name}")
        self.stream, self.period, self.step, self.recorder, self.stop_event = name, period, step, recorder, stop
        self.offset = offset

    def run(self) -> None:
        due = time.monotonic() + self.offset
        while not self.stop_event.wait(max(0.0, due - time.monotonic())):
            try:
                self.step()
            except Exception as exc:  # one failed request is recorded, the soak goes on
                self.recorder.error(self.stream, f"{type(exc).__name__}: {exc}")
            due += self.period
            now = time.monotonic()
            if due < now:
                missed = int((now - due) / self.period) + 1
                self.recorder.count(f"{self.stream}_ticks_missed", missed)
                due += missed * self.period


class Load:
    """The soak's clients against one broker: publishers, churn, pull point (see the module docstring)."""

    def __init__(self, broker_url: str, consumers: dict[str, str], mix: Mix, recorder: Recorder) -> None:
        import httpx

        self.url, self.consumers, self.mix, self.recorder = broker_url, consumers, mix, recorder
        self.topics = _topics()
        self.stop = threading.Event()
        self._clients: list[httpx.Client] = []
        self._churn: list[tuple[float, str]] = []  # (s since start, subscription id), oldest first
        self.pull_point: str | None = None
        self.threads: list[Stream] = []

    def client(self):  # type: ignore[no-untyped-def]
        import httpx

        client = httpx.Client(timeout=60)
        self._clients.append(client)
        return client

    # setup ------------------------------------------------------------------------------------------------
    def subscribe_all(self, log: Callable[[str], None]) -> dict[str, Any]:
        """The standing subscribers (real Subscribes) and the pull point with its subscription."""
        from bench import load

        mix, found = self.mix, {}
        plan = {
            "small": {"ok": mix.small_subscribers - 2, "flaky": 1, "fault": 1},
            "large": {"ok": mix.large_subscribers - 2 * mix.large_failing, "flaky": mix.large_failing,
                      "fault": mix.large_failing},
        }
        started = time.perf_counter()
        for stream, by_consumer in plan.items():
            for consumer, count in by_consumer.items():
                if count <= 0:
                    continue
                result = load.subscribe_load(self.url, self.consumers[consumer], concurrency=min(16, count),
                                             count=count, topic=self.topics[stream])
                if result["errors"]:
                    raise RuntimeError(f"{result['errors']} Subscribes to {stream}/{consumer} failed: {result}")
        found["subscribers"] = plan
        found["subscribe_seconds"] = round(time.perf_counter() - started, 2)
        with self.client() as client:
            self.pull_point = self._create_pull_point(client)
            self._subscribe_pull_point(client, self.topics["small"])
        found["pull_point"] = self.pull_point
        log(f"  subscribed {sum(sum(v.values()) for v in plan.values())} standing subscribers in "
            f"{found['subscribe_seconds']} s, pull point {self.pull_point}")
        return found

    def _create_pull_point(self, client) -> str:  # type: ignore[no-untyped-def]
        from hiem import ns
        from tests.support import wsn

        action = BW + "CreatePullPoint/CreatePullPointRequest"
        response = self._post(client, "/wsn/PullPoint", wsn.envelope("<wsnt:CreatePullPoint/>", action=action),
                              action, 200)
        epr = wsn.body_element(response).find(f"{{{ns.WSNT}}}PullPoint")
        self._pull_epr = epr
        return epr.find(f"{{{ns.WSA}}}ReferenceParameters")[0].text.strip()  # type: ignore[union-attr]

    def _subscribe_pull_point(self, client, topic: str) -> None:  # type: ignore[no-untyped-def]
        from lxml import etree

        from hiem import ns
        from tests.support import wsn

        params = etree.tostring(self._pull_epr.find(f"{{{ns.WSA}}}ReferenceParameters")[0]).decode()
        address = self._pull_epr.findtext(f"{{{ns.WSA}}}Address")
        body = wsn.envelope(wsn.subscribe_body(address, topic=topic, refparams=params),
                            action=wsn.ACTIONS["Subscribe"], to=self.url + "/wsn/NotificationProducer")
        self._post(client, "/wsn/NotificationProducer", body, wsn.ACTIONS["Subscribe"], 200)

    def _post(self, client, path: str, data: bytes, action: str, expect: int):  # type: ignore[no-untyped-def]
        headers = {"Content-Type": f'application/soap+xml; charset=utf-8; action="{action}"'}
        response = client.post(self.url + path, content=data, headers=headers)
        if response.status_code != expect:
            raise RuntimeError(f"{path} {action.rsplit('/', 1)[-1]} answered {response.status_code}: "
                               f"{response.text[:300]}")
        return response

    # the streams ------------------------------------------------------------------------------------------
    def start(self) -> None:
        mix = self.mix
        specs = [
            ("notify_small", 1.0 / mix.small_notifies_per_second, self._notifier("small"), 0.0),
            ("notify_large", mix.large_notify_every_s, self._notifier("large"), 0.3),
            ("notify_churn", mix.churn_notify_every_s, self._notifier("churn"), 5.1),
            ("churn", 1.0 / mix.churn_per_second, self._churn_step(), 0.1),
            ("get_messages", mix.get_messages_every_s, self._pull_step(), 2.7),
        ]
        for name, period, step, offset in specs:
            thread = Stream(name, period, step, self.recorder, self.stop, offset)
            self.threads.append(thread)
            thread.start()

    def _notifier(self, stream: str) -> Callable[[], None]:
        from bench import load

        client, topic = self.client(), self.topics[stream]
        headers = load.soap12_headers("Notify")
        url = self.url + "/wsn/NotificationBroker"

        def step() -> None:
            body = load.notify_envelope(self.url, topic)
            started = time.perf_counter()
            response = client.post(url, content=body, headers=headers)
            elapsed = time.perf_counter() - started
            if response.status_code != 202:
                raise RuntimeError(f"Notify answered {response.status_code}: {response.text[:300]}")
            self.recorder.notify.append((self.recorder.now(), elapsed, stream))
            self.recorder.count(f"notify_{stream}")

        return step

    def _churn_step(self) -> Callable[[], None]:
        from bench import load
        from tests.support import wsn

        client = self.client()
        subscribe_headers = load.soap12_headers("Subscribe")
        unsubscribe_action = wsn.ACTIONS["Unsubscribe"]

        def step() -> None:
            body = load.subscribe_envelope(self.url, self.consumers["ok"], self.topics["churn"])
            response = client.post(self.url + "/wsn/NotificationProducer", content=body, headers=subscribe_headers)
            if response.status_code != 200:
                raise RuntimeError(f"Subscribe answered {response.status_code}: {response.text[:300]}")
            self._churn.append((self.recorder.now(), wsn.subscription_id(response)))
            self.recorder.count("churn_subscribed")
            while self._churn and self.recorder.now() - self._churn[0][0] >= self.mix.churn_lifetime_s:
                _, subscription = self._churn.pop(0)
                data = wsn.envelope("<wsnt:Unsubscribe/>", action=unsubscribe_action,
                                    to=self.url + "/wsn/SubscriptionManager",
                                    headers=wsn.subscription_header(subscription))
                self._post(client, "/wsn/SubscriptionManager", data, unsubscribe_action, 200)
                self.recorder.count("churn_unsubscribed")

        return step

    def _pull_step(self) -> Callable[[], None]:
        from hiem import ns
        from tests.support import wsn

        client = self.client()
        action = BW + "PullPoint/GetMessagesRequest"

        def step() -> None:
            header = f"<hiem:PullPointId xmlns:hiem='{ns.HIEM}'>{self.pull_point}</hiem:PullPointId>"
            data = wsn.envelope("<wsnt:GetMessages><wsnt:MaximumNumber>1000</wsnt:MaximumNumber></wsnt:GetMessages>",
                                action=action, headers=header)
            response = self._post(client, "/wsn/PullPoint", data, action, 200)
            messages = wsn.body_element(response).findall(f"{{{ns.WSNT}}}NotificationMessage")
            self.recorder.count("get_messages")
            self.recorder.count("pulled_messages", len(messages))

        return step

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(70)
        for client in self._clients:
            with contextlib.suppress(Exception):
                client.close()


# -- sampling -------------------------------------------------------------------------------------------------
class Sampler:
    """One sample of the broker's database and processes (its own read-only database connection)."""

    def __init__(self, broker: Any, recorder: Recorder) -> None:
        from bench import harness

        self.broker, self.recorder = broker, recorder
        self.table = harness.DeliveryTable(broker.database_url)
        self.sqlite_path = broker.database_url.split("///", 1)[1] if self.table.sqlite else None
        self.last_t = 0.0
        self.last_wall = datetime.now(UTC)
        self._procs: dict[int, Any] = {}
        self._meter: Any = None

    def start(self) -> None:
        from bench.meter import CpuMeter
        from bench.suite import database_name

        self.last_t, self.last_wall = self.recorder.now(), datetime.now(UTC)
        self._meter = CpuMeter(self.broker.pids(), database_name(self.broker)).start()

    def sample(self) -> dict[str, Any]:
        from bench.meter import CpuMeter
        from bench.suite import database_name

        t, wall = self.recorder.now(), datetime.now(UTC)
        cpu = self._meter.stop()
        self._meter = CpuMeter(self.broker.pids(), database_name(self.broker)).start()
        entry: dict[str, Any] = {"t_s": round(t, 1), "at": wall.isoformat(timespec="seconds")}
        started = time.perf_counter()
        entry["db"] = self.database_size()
        tables = entry["db"]["table_bytes"]
        entry["db"]["tables_bytes_without_audit"] = sum(tables.values()) - tables.get("audit_records", 0)
        entry["rows"] = {name: int(self.table.scalar(f"SELECT count(*) FROM {name}") or 0) for name in TABLES}
        entry["deliveries_by_state"] = dict(self.table.query("SELECT state, count(*) FROM deliveries GROUP BY state"))
        entry["subscriptions_by_status"] = dict(self.table.query("SELECT status, count(*) FROM subscriptions "
                                                                 "GROUP BY status"))
        entry["purged"] = {kind: int(rows) for kind, rows in self.table.query("SELECT kind, rows FROM purge_totals")}
        entry["purged_total"] = sum(entry["purged"].values())
        entry["rss_mb"] = self.rss()
        entry["notify"] = self.notify_percentiles(self.last_t, t)
        entry["lag"] = self.lag(self.last_wall, wall)
        entry["cpu"] = {"machine_busy_cores": cpu["machine_busy_cores"], "cores_by_role": cpu["cores_by_role"],
                        "other_cores": cpu["other_cores"], "load_average_1m": cpu["load_average"][0]}
        entry["sample_ms"] = round(1000 * (time.perf_counter() - started), 1)
        self.last_t, self.last_wall = t, wall
        return entry

    def database_size(self) -> dict[str, Any]:
        if self.sqlite_path:
            sizes = {suffix or "main": os.path.getsize(self.sqlite_path + suffix)
                     if os.path.exists(self.sqlite_path + suffix) else 0 for suffix in ("", "-wal")}
            page = int(self.table.scalar("PRAGMA page_size"))
            by_table = dict(self.table.query(
                "SELECT coalesce(m.tbl_name, s.name), sum(s.pgsize) FROM dbstat s LEFT JOIN sqlite_master m "
                "ON m.name = s.name GROUP BY 1"))
            return {"bytes": sizes["main"] + sizes["-wal"], "file_bytes": sizes["main"], "wal_bytes": sizes["-wal"],
                    "free_bytes": page * int(self.table.scalar("PRAGMA freelist_count")),
                    "table_bytes": {k: int(v) for k, v in by_table.items()}}
        by_table = dict(self.table.query(
            "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = "
            "c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'"))
        return {"bytes": int(self.table.scalar("SELECT pg_database_size(current_database())")),
                "table_bytes": {k: int(v) for k, v in by_table.items()}}

    def rss(self) -> dict[str, float]:
        """RSS (MB) of every broker process: each role's process and its children (Celery's pool)."""
        import psutil

        found: dict[str, float] = {}
        for role, pid in self.broker.pids().items():
            try:
                root = self._procs.setdefault(pid, psutil.Process(pid))
                found[role] = round(root.memory_info().rss / 2**20, 1)
                children = sorted(root.children(recursive=True), key=lambda p: p.create_time())
                for index, child in enumerate(children, 1):
                    with contextlib.suppress(psutil.Error):
                        found[f"{role}.child{index}"] = round(child.memory_info().rss / 2**20, 1)
            except psutil.Error as exc:
                self.recorder.error("sampler", f"{role} (pid {pid}) is gone: {exc!r}")
        return found

    def notify_percentiles(self, since: float, until: float) -> dict[str, Any]:
        from bench.suite import percentiles

        window = [(latency, stream) for t, latency, stream in list(self.recorder.notify) if since < t <= until]
        found: dict[str, Any] = {"count": len(window)}
        if window:
            found.update({k: v for k, v in percentiles([x for x, _ in window]).items() if k != "samples"})
        for stream in ("small", "large"):
            mine = [x for x, s in window if s == stream]
            if mine:
                found[stream] = {k: v for k, v in percentiles(mine).items() if k in ("p50_ms", "p99_ms")}
        return found

    def lag(self, since: datetime, until: datetime) -> dict[str, Any]:
        """Received -> delivered of the push deliveries delivered in (since, until], and the finished count."""
        from bench.harness import epoch
        from bench.suite import percentiles

        rows = self.table.query(
            "SELECT d.delivered_at, n.received_at, s.pull_point_id FROM deliveries d JOIN notifications n "
            "ON n.id = d.notification_id JOIN subscriptions s ON s.id = d.subscription_id "
            "WHERE d.state = 'delivered' AND d.delivered_at > ? AND d.delivered_at <= ?",
            self._stamp(since - timedelta(seconds=1)), self._stamp(until + timedelta(seconds=1)))
        low, high = since.timestamp(), until.timestamp()
        push, pull = [], []
        for delivered, received, pull_point in rows:
            done, start = epoch(delivered), epoch(received)
            if done is None or start is None or not low < done <= high:
                continue
            (pull if pull_point else push).append(max(0.0, done - start))
        dead = self.table.scalar("SELECT count(*) FROM deliveries WHERE state = 'dead' AND updated_at > ? AND "
                                 "updated_at <= ?", self._stamp(since), self._stamp(until))
        found: dict[str, Any] = {"delivered": len(push), "pulled": len(pull), "dead": int(dead or 0)}
        if push:
            p = percentiles(push)
            found.update({"p50_ms": p["p50_ms"], "p99_ms": p["p99_ms"], "max_ms": p["max_ms"]})
        if pull:
            found["pull_p50_ms"] = percentiles(pull)["p50_ms"]
        return found

    def _stamp(self, value: datetime) -> Any:
        # SQLite keeps hiem's timestamps as naive UTC text ("YYYY-MM-DD HH:MM:SS.ffffff"): compare as text
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ") if self.table.sqlite else value

    def close(self) -> None:
        self.table.close()


# -- the run --------------------------------------------------------------------------------------------------
def run_mode(mode: str, minutes: float, mix: Mix, tmp: Path, log: Callable[[str], None]) -> dict[str, Any]:
    from bench import harness

    duration = 60.0 * minutes
    tmp.mkdir(parents=True, exist_ok=True)
    found: dict[str, Any] = {"mode": mode, "minutes": minutes, "env": dict(RETENTION_ENV), "mix": asdict(mix),
                             "topics": _topics(), "samples": []}
    with contextlib.ExitStack() as stack:
        consumers, _pid = stack.enter_context(soak_consumer(tmp, mix))
        database_url = stack.enter_context(harness.fresh_postgres()) if mode == "distributed" else None
        broker = harness.start_broker(mode, tmp / "broker", database_url=database_url, **RETENTION_ENV)
        stack.callback(broker.stop)
        found["broker_processes"] = broker.pids()
        recorder = Recorder(time.monotonic())
        load = Load(broker.url, consumers, mix, recorder)
        stack.callback(load.finish)
        found["setup"] = load.subscribe_all(log)
        sampler = Sampler(broker, recorder)
        stack.callback(sampler.close)
        recorder.started = time.monotonic()
        sampler.start()
        load.start()
        log(f"  {mode}: soak running for {minutes:g} min, a sample every {mix.sample_seconds:g} s")
        next_sample = mix.sample_seconds
        while next_sample <= duration + 1e-6:
            time.sleep(max(0.0, next_sample - recorder.now()))
            for proc in [broker.web, *broker.workers]:
                if proc.proc.poll() is not None:  # type: ignore[union-attr]
                    raise RuntimeError(f"a broker process exited with {proc.proc.returncode}:\n"  # type: ignore[union-attr]
                                       f"{proc.output()[-3000:]}")
            try:
                entry = sampler.sample()
            except Exception as exc:
                recorder.error("sampler", "".join(traceback.format_exception(exc))[-1500:])
            else:
                found["samples"].append(entry)
                if len(found["samples"]) % 6 == 0 or len(found["samples"]) == 1:
                    log("  " + progress(entry))
            next_sample += mix.sample_seconds
        load.finish()
        found["load"] = dict(sorted(recorder.counts.items()))
        found["consumer_answers"] = _consumer_stats(consumers["ok"])
        found["errors"] = recorder.errors
        found["error_count"] = recorder.error_count
        found["broker_log_problems"] = _log_problems(broker)
    found["verdict"] = verdict(found["samples"])
    return found


def _consumer_stats(url: str) -> dict[str, Any]:
    import httpx

    try:
        return httpx.get(url.rsplit("/", 1)[0] + "/stats", timeout=10).json()
    except Exception as exc:  # only informative
        return {"error": repr(exc)}


def _log_problems(broker: Any) -> dict[str, Any]:
    """ERROR lines and tracebacks the broker processes logged (reported, not counted as the soak's errors:
    a consumer that faults makes hiem log by design)."""
    found: dict[str, Any] = {}
    for name, proc in [("web", broker.web), *((f"worker{i}", w) for i, w in enumerate(broker.workers, 1))]:
        lines = proc.output().splitlines()
        bad = [line for line in lines if "Traceback" in line or " ERROR " in line or "CRITICAL" in line]
        found[name] = {"lines": len(lines), "problems": len(bad), "first": bad[:10]}
    return found


def progress(entry: dict[str, Any]) -> str:
    rows = entry["rows"]
    rss = ", ".join(f"{k} {v:.0f}" for k, v in entry["rss_mb"].items())
    lag = entry["lag"]
    return (f"t={entry['t_s']:.0f}s db {entry['db']['bytes'] / 2**20:.1f} MB; rows: notifications "
            f"{rows['notifications']:,}, deliveries {rows['deliveries']:,}, audit {rows['audit_records']:,}, "
            f"subscriptions {rows['subscriptions']:,}; purged {entry['purged_total']:,}; RSS MB {rss}; Notify "
            f"p50/p99 {entry['notify'].get('p50_ms')}/{entry['notify'].get('p99_ms')} ms; lag p50/p99 "
            f"{lag.get('p50_ms')}/{lag.get('p99_ms')} ms ({lag['delivered']} delivered, {lag['dead']} dead); "
            f"load {entry['cpu']['load_average_1m']}")


# -- verdict, table, plot -------------------------------------------------------------------------------------
def series(samples: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Every measured series, by name, one value per sample (None where a sample has none)."""
    paths: dict[str, tuple[str, ...]] = {
        "db_bytes": ("db", "bytes"), "notify_p50_ms": ("notify", "p50_ms"), "notify_p99_ms": ("notify", "p99_ms"),
        "lag_p50_ms": ("lag", "p50_ms"), "lag_p99_ms": ("lag", "p99_ms"), "push_delivered": ("lag", "delivered"),
        "purged_total": ("purged_total",), "wal_bytes": ("db", "wal_bytes"), "free_bytes": ("db", "free_bytes"),
        "tables_bytes_without_audit": ("db", "tables_bytes_without_audit"),
    }
    paths.update({f"rows.{table}": ("rows", table) for table in TABLES})
    paths.update({f"rss_mb.{role}": ("rss_mb", role) for role in sorted({r for s in samples for r in s["rss_mb"]})})
    paths.update({f"table_bytes.{table}": ("db", "table_bytes", table)
                  for table in sorted({t for s in samples for t in s["db"].get("table_bytes", {})})})

    def get(sample: dict[str, Any], path: tuple[str, ...]) -> Any:
        value: Any = sample
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    return {name: [get(s, path) for s in samples] for name, path in paths.items()}


def _mean(values: list[Any]) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def thirds(samples: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """Indexes of the samples in the middle and in the last third of the run (by time)."""
    if not samples:
        return [], []
    end = samples[-1]["t_s"]
    middle = [i for i, s in enumerate(samples) if end / 3 < s["t_s"] <= 2 * end / 3]
    last = [i for i, s in enumerate(samples) if s["t_s"] > 2 * end / 3]
    return middle, last


def verdict(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """FLAT when the database size and every process's RSS average in the last third are within 10 % of the
    middle third; also the growth of every other series, for the reader."""
    middle, last = thirds(samples)
    found: dict[str, Any] = {"tolerance": FLAT_TOLERANCE, "middle_samples": len(middle), "last_samples": len(last),
                             "middle_vs_last": {}}
    if len(middle) < 1 or len(last) < 1:
        found.update(flat=None, summary="too few samples for a verdict")
        return found
    checked, grew = [], []
    duration_min = (samples[last[-1]]["t_s"] - samples[middle[0]]["t_s"]) / 60 or 1.0
    for name, values in series(samples).items():
        mid, end = _mean([values[i] for i in middle]), _mean([values[i] for i in last])
        change = (end - mid) / mid if mid and end is not None else None
        first, final = values[middle[0]], values[last[-1]]
        slope = (final - first) / duration_min if first is not None and final is not None else None
        row = {"middle": _round(mid), "last": _round(end), "change": _round(change, 4),
               "per_minute": _round(slope)}
        found["middle_vs_last"][name] = row
        if name == "db_bytes" or name.startswith("rss_mb."):
            ok = change is not None and abs(change) <= FLAT_TOLERANCE
            row["flat"] = ok
            checked.append(name)
            if not ok:
                grew.append(name)
    found["checked"] = checked
    found["not_flat"] = grew
    found["flat"] = not grew
    sizes = ("db_bytes", "tables_bytes_without_audit")
    growing = [f"{name} {row['change']:+.1%}" for name, row in found["middle_vs_last"].items()
               if (name.startswith(("rows.", "table_bytes.")) or name in sizes) and row["change"] is not None
               and row["change"] > FLAT_TOLERANCE and (row["middle"] or 0) >= 10]
    found["growing"] = growing
    found["summary"] = ("FLAT: database size and every process's RSS in the last third are within "
                        f"{FLAT_TOLERANCE:.0%} of the middle third" if not grew else
                        "NOT FLAT: " + ", ".join(f"{n} {found['middle_vs_last'][n]['change']:+.1%}" for n in grew))
    return found


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def markdown(result: dict[str, Any]) -> str:
    v = result["verdict"]
    rows = v.get("middle_vs_last", {})
    lines = [f"### Soak {result['mode']}, {result['minutes']:g} min: **{'FLAT' if v.get('flat') else 'NOT FLAT'}**",
             "", v.get("summary", ""), ""]
    if v.get("growing"):
        lines += ["Grew by more than 10 % from the middle to the last third: " + ", ".join(v["growing"]) + ".", ""]
    lines += [f"Averages of the middle third ({v.get('middle_samples')} samples) and the last third "
              f"({v.get('last_samples')}); change = last / middle - 1; per minute = from the first sample of the "
              "middle third to the last sample.", "",
              "| series | middle third | last third | change | per minute | flat |", "|---|---:|---:|---:|---:|:---:|"]

    def add(label: str, name: str, scale: float = 1.0, unit: str = "", whole: bool = False) -> None:
        row = rows.get(name)
        if not row:
            return
        mid, end, slope = (None if row[k] is None else row[k] / scale for k in ("middle", "last", "per_minute"))
        flat = {True: "yes", False: "**no**"}.get(row.get("flat"), "")  # type: ignore[arg-type]
        change = "-" if row["change"] is None else f"{row['change']:+.1%}"
        per = "-" if slope is None else ("+" if slope > 0 else "") + _fmt(slope, unit, whole)
        lines.append(f"| {label} | {_fmt(mid, unit, whole)} | {_fmt(end, unit, whole)} | {change} | {per} | {flat} |")

    add("database size", "db_bytes", 2**20, " MB")
    add("&nbsp;&nbsp;of which the -wal file", "wal_bytes", 2**20, " MB")
    add("&nbsp;&nbsp;free pages in the file", "free_bytes", 2**20, " MB")
    add("&nbsp;&nbsp;all tables but audit_records (bytes in use)", "tables_bytes_without_audit", 2**20, " MB")
    for table in sorted(k[len("table_bytes."):] for k in rows if k.startswith("table_bytes.")):
        if (rows[f"table_bytes.{table}"]["last"] or 0) >= 2**20:
            add(f"&nbsp;&nbsp;table {table}", f"table_bytes.{table}", 2**20, " MB")
    for table in MAIN_TABLES:
        add(f"rows: {table}", f"rows.{table}", whole=True)
    add("rows purged so far (purge_totals)", "purged_total", whole=True)
    for name in sorted(k for k in rows if k.startswith("rss_mb.")):
        add(f"RSS {name[len('rss_mb.'):]}", name, unit=" MB")
    add("Notify answer p50", "notify_p50_ms", unit=" ms")
    add("Notify answer p99", "notify_p99_ms", unit=" ms")
    add("delivery lag p50 (received -> delivered)", "lag_p50_ms", unit=" ms")
    add("delivery lag p99", "lag_p99_ms", unit=" ms")
    add("push deliveries delivered per sample interval", "push_delivered", whole=True)
    return "\n".join(lines) + "\n"


def _fmt(value: float | None, unit: str, whole: bool = False) -> str:
    if value is None:
        return "-"
    return (f"{value:,.0f}" if whole or abs(value) >= 100 else f"{value:,.1f}") + unit


def plot(run: dict[str, Any], meta: dict[str, Any], path: Path) -> Path | None:
    """One figure for one run: database size, rows per table, RSS per process, Notify answer, delivery lag,
    deliveries finished and the machine's load, all over time; the middle and last thirds shaded."""
    samples = run.get("samples") or []
    if not samples:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 2, figsize=(15, 12), sharex=True)
    (db, rows), (rss, work), (notify, lag) = axes
    minutes = [s["t_s"] / 60 for s in samples]
    values = series(samples)
    db.plot(minutes, [v / 2**20 for v in values["db_bytes"]], color="black", linewidth=2,
            label="database (file + WAL)" if samples[0]["db"].get("wal_bytes") is not None else "database")
    for name in sorted((k for k in values if k.startswith("table_bytes.")), key=lambda k: -(values[k][-1] or 0))[:6]:
        db.plot(minutes, [(v or 0) / 2**20 for v in values[name]], label=name[len("table_bytes."):])
    if samples[0]["db"].get("wal_bytes") is not None:
        db.plot(minutes, [s["db"]["wal_bytes"] / 2**20 for s in samples], linestyle=":", color="grey",
                label="-wal file")
        db.plot(minutes, [s["db"]["free_bytes"] / 2**20 for s in samples], linestyle="--", color="grey",
                label="free pages in the file")
    db.set(ylabel="MB", title="database size, and bytes per table (tables with their indexes)")
    db.set_ylim(bottom=0)
    for table in TABLES:
        rows.plot(minutes, [max(1, v or 0) for v in values[f"rows.{table}"]], label=table)
    rows.plot(minutes, [max(1, v or 0) for v in values["purged_total"]], linestyle="--", color="black",
              label="rows purged so far (purge_totals)")
    rows.set(yscale="log", ylabel="rows", title="rows per table")
    for name in (k for k in values if k.startswith("rss_mb.")):
        rss.plot(minutes, values[name], label=name[len("rss_mb."):])
    rss.set(ylabel="MB", title="RSS per broker process")
    rss.set_ylim(bottom=0)
    work.plot(minutes, [s["lag"]["delivered"] for s in samples], label="push deliveries delivered")
    work.plot(minutes, [s["lag"].get("pulled", 0) for s in samples], label="pulled (GetMessages)")
    work.plot(minutes, [s["lag"]["dead"] for s in samples], label="gone dead")
    work.set(ylabel="per sample interval", title="deliveries finished, and the machine's load")
    work.set_ylim(bottom=0)
    load = work.twinx()
    load.plot(minutes, [s["cpu"]["load_average_1m"] for s in samples], color="grey", linestyle=":",
              label="load average 1 min (right)")
    load.plot(minutes, [s["cpu"]["cores_by_role"].get("web", 0) + sum(v for k, v in s["cpu"]["cores_by_role"].items()
                                                                      if k.startswith("worker"))
                        for s in samples], color="black", linestyle=":", label="broker cores (right)")
    load.set_ylim(bottom=0)
    load.legend(fontsize=7, loc="upper right")
    notify.plot(minutes, values["notify_p50_ms"], label="p50")
    notify.plot(minutes, values["notify_p99_ms"], label="p99")
    notify.set(yscale="log", ylabel="ms", xlabel="minutes", title="Notify answer time (per sample interval)")
    lag.plot(minutes, values["lag_p50_ms"], label="p50")
    lag.plot(minutes, values["lag_p99_ms"], label="p99")
    lag.set(yscale="log", ylabel="ms", xlabel="minutes", title="delivery lag, received -> delivered (push)")
    end = minutes[-1]
    for ax in axes.flat:
        ax.axvspan(end / 3, 2 * end / 3, color="tab:blue", alpha=0.06)
        ax.axvspan(2 * end / 3, end, color="tab:orange", alpha=0.08)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    verdict_text = {True: "FLAT", False: "NOT FLAT"}.get(run.get("verdict", {}).get("flat"), "no verdict")
    fig.suptitle(f"hiem soak, {run['mode']}, {run['minutes']:g} min, {meta['date']}: {verdict_text} "
                 "(shaded: middle third, last third)", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


# -- entry point (python -m bench --soak MINUTES) ------------------------------------------------------------
def main(args: argparse.Namespace, default_out: bool) -> int:
    from bench import harness
    from bench.__main__ import meta

    minutes = float(args.soak)
    out = args.out / "soak" if default_out else args.out
    out.mkdir(parents=True, exist_ok=True)
    modes = tuple(m for m in (args.modes or "embedded").split(",") if m)
    started = time.monotonic()

    def log(message: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {message}", flush=True)

    mix = Mix()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    json_path = out / f"{stamp}-{minutes:g}min{'' if modes == ('embedded',) else '-' + '-'.join(modes)}.json"
    from bench import suite

    results: dict[str, Any] = {"meta": meta(suite.PLANS["default"], args), "runs": {}, "errors": {}}
    results["meta"].update(kind="soak", minutes=minutes, modes=list(modes), settings={"retention_env": RETENTION_ENV,
                                                                                    "mix": asdict(mix)})
    missing = {"postgresql": harness.postgres_available(), "redis": harness.redis_available()}
    with tempfile.TemporaryDirectory(prefix="hiem-soak-") as tmp:
        for mode in modes:
            if mode not in ("embedded", "distributed"):
                results["errors"][mode] = f"unknown mode {mode!r}"
                continue
            if mode == "distributed" and (missing["postgresql"] or missing["redis"]):
                reason = "; ".join(v for v in missing.values() if v)
                results["runs"][mode] = {"skipped": reason}
                log(f"{mode}: skipped ({reason})")
                continue
            log(f"{mode}: soak, {minutes:g} min ...")
            try:
                run = run_mode(mode, minutes, mix, Path(tmp) / mode, log)
            except Exception as exc:
                log(f"{mode} FAILED: {exc!r}")
                results["errors"][mode] = "".join(traceback.format_exception(exc))[-4000:]
                continue
            results["runs"][mode] = run
            if run["error_count"]:
                results["errors"][f"{mode}.load"] = f"{run['error_count']} failed requests (see runs.{mode}.errors)"
            print()
            print(markdown(run))
        if os.environ.get("HIEM_SOAK_KEEP_LOGS"):
            shutil.copytree(tmp, out / f"{json_path.stem}-logs", dirs_exist_ok=True)
    results["meta"]["duration_s"] = round(time.monotonic() - started, 1)
    results["meta"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if not results["errors"]:
        del results["errors"]
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    tables = [markdown(run) for run in results["runs"].values() if "samples" in run]
    if tables:
        json_path.with_suffix(".md").write_text("\n".join(tables))
    pictures = [plot(run, results["meta"], json_path.with_suffix(".png") if len(modes) == 1 else
                     json_path.with_name(f"{json_path.stem}-{mode}.png"))
                for mode, run in results["runs"].items() if "samples" in run]
    log(f"wrote {json_path}" + "".join(f", {p}" for p in pictures if p))
    return 1 if results.get("errors") else 0


if __name__ == "__main__":
    consumer_main(sys.argv[1:])
