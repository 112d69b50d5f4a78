"""Failure paths of the distributed broker, with real processes: the database crashing, a worker killed.

1. ``test_postgres_crash_during_fan_out_loses_nothing``: a PostgreSQL server the test owns (initdb'ed in a
   temporary directory) is stopped with ``pg_ctl stop -m immediate`` (every backend SIGQUIT, no checkpoint:
   a crash, with crash recovery at the next start) while one notification is being delivered to 1,000
   subscribers, and started again 3 s later. Every subscriber must get the notification (copies of one
   delivery carry its wsa:MessageID) and every delivery row must end ``delivered``.

2. ``test_worker_killed_while_publishing_keeps_sequences_gap_free``: two workers on the shared PostgreSQL and
   Redis, five subscribers, 100 notifications published one after the other; one worker's process group is
   SIGKILLed part way through. Each subscriber must receive hiem:Sequence 1..100 with no gap (copies of one
   sequence share its wsa:MessageID, and sequence N carries the N-th notification published), the delivery
   rows must hold exactly 1..100 per subscription, and hiem:Replay ``After`` k must answer k+1..100 in order
   with the payloads published in that order.

The measurements are printed (``pytest -s``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from lxml import etree

from hiem import ns
from tests.integration.test_durability import (
    ORDER_NS,
    accept_after,
    check_fan_out_complete,
    event_index,
    message_id,
    publish,
    rows_of,
    running_broker,
    subscribe,
    subscribe_many,
)
from tests.support import wsn
from tests.support.consumer import Received, RecordingConsumer
from tests.support.faults import wait_until
from tests.support.processes import free_port
from tests.support.services import fresh_postgres_database, require_redis, unavailable

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

REPLAY_ACTION = "urn:hiem:broker:1/SubscriptionManager/ReplayRequest"


# -- helpers -----------------------------------------------------------------------------------------------
def _postgres_bin() -> Path | None:
    """The directory holding initdb and pg_ctl: Debian's PostgreSQL 15 first, then any other, then PATH."""
    candidates = [Path("/usr/lib/postgresql/15/bin"),
                  *sorted((Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")), reverse=True)]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    return next((c for c in candidates if (c / "initdb").exists() and (c / "pg_ctl").exists()), None)


class PrivatePostgres:
    """A PostgreSQL server of the test's own on a free loopback port: started, crashed, started again.

    ``crash()`` is ``pg_ctl stop -m immediate``: the postmaster SIGQUITs every backend, nothing is
    checkpointed, every client connection is reset, and the next start runs crash recovery from the WAL.
    initdb refuses to run as root, so as root every command runs as the ``postgres`` user (``runuser``) in
    a directory that user owns.
    """

    def __init__(self) -> None:
        binaries = _postgres_bin()
        if binaries is None:
            unavailable("the PostgreSQL server binaries (initdb, pg_ctl)",
                        FileNotFoundError("apt-get install postgresql-15"))
        self.bin = binaries or Path("/nonexistent")
        self.as_user: list[str] = []
        owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError as exc:
                unavailable("the postgres user (initdb refuses to run as root)", exc)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.dir = Path(tempfile.mkdtemp(prefix="hiem-pg-"))  # not under pytest's tmp_path: root-only (0700)
        if owner is not None:
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        self.port = free_port()

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def log(self) -> Path:
        return self.dir / "log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def __enter__(self) -> PrivatePostgres:
        try:
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "60", "start")

    def crash(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")

    def cleanup(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run([*self.as_user, str(self.bin / program), *args], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=120, cwd=self.dir)
        if done.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} exited with {done.returncode}:\n{done.stdout}"
                               f"{done.stderr}\n{self.output()[-3000:]}")


def sequence_of(received: Received) -> int:
    header = received.envelope().find(f"{{{ns.SOAP12}}}Header")
    return int(header.findtext(f"{{{ns.HIEM}}}Sequence"))


def replay(base_url: str, subscription: str, after: int) -> httpx.Response:
    body = f"<hiem:Replay xmlns:hiem='{ns.HIEM}'><hiem:After>{after}</hiem:After></hiem:Replay>"
    data = wsn.envelope(body, action=REPLAY_ACTION, headers=wsn.subscription_header(subscription))
    return wsn.post(base_url, "/wsn/SubscriptionManager", data, action=REPLAY_ACTION)


# -- 1. PostgreSQL crashes (stop -m immediate) in the middle of a 1,000-subscriber fan-out ------------------
def test_postgres_crash_during_fan_out_loses_nothing(tmp_path):
    redis_url = require_redis()
    total, endpoints, down = 1000, 4, 3.0
    with (PrivatePostgres() as postgres, ExitStack() as consumers):
        try:
            received_by = [consumers.enter_context(RecordingConsumer(accept_after(0.01, 0.03)))
                           for _ in range(endpoints)]
            paths = [[f"/p/{e}/{i}" for i in range(e, total, endpoints)] for e in range(endpoints)]
            urls = [f"http://127.0.0.1:{received_by[e].port}{p}" for e in range(endpoints) for p in paths[e]]

            def arrived() -> int:
                return sum(len(c.received) for c in received_by)

            def reached() -> int:
                return sum(len({r.path for r in c.received}) for c in received_by)

            began = time.monotonic()
            with (running_broker("distributed", tmp_path, postgres.url, redis_url, workers=2) as broker,
                  rows_of(broker) as rows):
                started = time.monotonic() - began
                subscribe_many(broker.url, urls)
                subscribed = time.monotonic() - began - started
                assert publish(broker.url).status_code == 202
                wait_until(lambda: arrived() >= 100, 60, "the first 100 deliveries", interval=0.005)
                states_before = rows.states()  # just before the crash (the fan-out goes on meanwhile)
                postgres.crash()
                crashed = time.monotonic()
                at_crash = arrived()
                assert at_crash < total, "the fan-out was over before PostgreSQL crashed; the test proves nothing"
                time.sleep(down)
                postgres.start()
                restarted = time.monotonic()
                during_outage = arrived() - at_crash

                wait_until(lambda: reached() == total, 120, "every subscriber to receive the notification")
                all_received = time.monotonic() - restarted
                wait_until(lambda: rows.all_finished(total), 120, "all 1,000 deliveries to be recorded as delivered")
                all_recorded = time.monotonic() - restarted

                duplicates = duplicated = 0
                for consumer, its_paths in zip(received_by, paths, strict=True):
                    report = check_fan_out_complete(consumer, its_paths)
                    duplicates += report["duplicates"]
                    duplicated += report["duplicated_subscribers"]
                assert len({message_id(r) for c in received_by for r in c.received}) == total, \
                    "one MessageID per subscription, whatever the copies"
                notification = rows.query("SELECT fanout_state, matched FROM notifications")
                assert [(n.fanout_state, n.matched) for n in notification] == [("done", total)]
                assert "not properly shut down; automatic recovery in progress" in postgres.output(), \
                    "the restart ran crash recovery"
                assert all(proc.proc.poll() is None for proc in [broker.web, *broker.workers]), \
                    "every hiem process outlived the database crash"
                assert httpx.get(f"{broker.url}/healthz", timeout=30).status_code == 200
                gave_up = sum(int(n) for proc in broker.workers
                              for n in re.findall(r"gave up recording (\d+) delivery outcomes", proc.output()))
                print(f"\n[postgres crash] broker (web + 2 workers) up in {started:.1f}s, {total} subscribed in "
                      f"{subscribed:.1f}s; {at_crash}/{total} received when PostgreSQL was stopped -m immediate "
                      f"(rows just before: {dict(states_before)}); {during_outage} more arrived during the "
                      f"{down:.0f} s outage; all {total} received {all_received:.1f}s and all rows delivered "
                      f"{all_recorded:.1f}s after the restart ({time.monotonic() - crashed:.1f}s after the "
                      f"crash); {duplicates} duplicate sends ({duplicated} subscribers), each with its first "
                      f"copy's MessageID; the workers' recorders gave up on {gave_up} outcomes (sent, not recorded, so "
                      f"sent again once their lease expired); PostgreSQL ran crash recovery at the restart")
        except BaseException:
            print(f"----- postgres log -----\n{postgres.output()[-6000:]}")
            raise


# -- 2. two workers, one SIGKILLed while 100 notifications are published: sequences stay gap-free ------------
def test_worker_killed_while_publishing_keeps_sequences_gap_free(tmp_path):
    redis_url = require_redis()
    count, subscribers, kill_after = 100, 5, 40
    with (fresh_postgres_database() as database_url, ExitStack() as stack,
          running_broker("distributed", tmp_path, database_url, redis_url, workers=2) as broker,
          rows_of(broker) as rows):
        consumers = [stack.enter_context(RecordingConsumer(accept_after(0.005, 0.02))) for _ in range(subscribers)]
        subscriptions = [subscribe(broker.url, consumer.url) for consumer in consumers]
        started = time.monotonic()
        killed_at, received_at_kill = 0.0, 0
        states_at_kill = None
        for index in range(count):
            assert publish(broker.url, index).status_code == 202
            if index + 1 == kill_after:
                wait_until(lambda: sum(len(c.received) for c in consumers) >= 20, 30, "the first deliveries",
                           interval=0.005)
                states_at_kill = rows.states()
                broker.workers[0].kill()  # SIGKILL to the worker's process group: parent and pool children
                killed_at = time.monotonic()
                received_at_kill = sum(len(c.received) for c in consumers)
        published = time.monotonic() - started
        wait_until(lambda: rows.all_finished(count * subscribers), 90,
                   f"all {count * subscribers} deliveries to be recorded as delivered")
        settled = time.monotonic() - killed_at

        expected = list(range(1, count + 1))
        duplicates = 0
        for consumer, subscription in zip(consumers, subscriptions, strict=True):
            ids_of: dict[int, set[str]] = defaultdict(set)
            events_of: dict[int, set[int]] = defaultdict(set)
            for received in list(consumer.received):
                sequence = sequence_of(received)
                ids_of[sequence].add(message_id(received))
                events_of[sequence].add(event_index(received.body))
            assert sorted(ids_of) == expected, \
                f"{subscription}: sequences received {sorted(set(expected) ^ set(ids_of))} missing or unexpected"
            assert all(len(ids) == 1 for ids in ids_of.values()), f"{subscription}: copies with other MessageIDs"
            assert len({next(iter(ids)) for ids in ids_of.values()}) == count, "one MessageID per sequence"
            assert dict(events_of) == {s: {s - 1} for s in expected}, \
                f"{subscription}: sequence N must carry the N-th notification published"
            duplicates += len(consumer.received) - count
            sequences = [row.sequence for row in rows.query(
                "SELECT sequence FROM deliveries WHERE subscription_id = :s ORDER BY sequence", s=subscription)]
            assert sequences == expected, f"{subscription}: delivery rows' sequences {sequences}"

        # the first subscriber pretends it missed everything after k: hiem:Replay After=k gives it back
        k = 57
        response = replay(broker.url, subscriptions[0], k)
        assert response.status_code == 200, response.text
        answer = wsn.body_element(response)
        wsn.assert_valid(answer)
        replayed = answer.findall(f"{{{ns.HIEM}}}Replayed")
        assert [int(r.get("sequence")) for r in replayed] == list(range(k + 1, count + 1))
        assert [int(r.findtext(f".//{{{ORDER_NS}}}Event")) for r in replayed] == list(range(k, count)), \
            "the payloads published after the k-th, in publish order"
        for item in replayed:
            message = item.find(f"{{{ns.WSNT}}}NotificationMessage")
            assert message is not None, etree.tostring(item)
            reference = message.find(f"{{{ns.WSNT}}}SubscriptionReference")
            assert reference is not None and subscriptions[0] in etree.tostring(reference).decode()

        killed = broker.workers[0].proc.returncode
        assert killed == -9 and broker.workers[1].proc.poll() is None, "worker 0 was killed, worker 1 carried on"
        print(f"\n[worker kill, sequences] {count} notifications to {subscribers} subscribers published in "
              f"{published:.1f}s; worker 0 SIGKILLed after the {kill_after}th publish (exit {killed}) with "
              f"{received_at_kill}/{count * subscribers} received, rows then {dict(states_at_kill or {})}; "
              f"all rows delivered {settled:.1f}s after the kill by the surviving worker; sequences 1..{count} "
              f"gap-free for every subscriber, {duplicates} duplicate sends (same MessageID); "
              f"hiem:Replay After={k} returned {len(replayed)} notifications, {k + 1}..{count}, in order")
