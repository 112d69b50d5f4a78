"""The distributed audit shipper through a syslog outage: a private rsyslog (RFC 5425, mutual TLS) is killed
while it receives the audit records of a 500-notification burst, stays down a few seconds and comes back.

Set-up: a fresh database on the shared PostgreSQL, Redis, one ``hiem serve`` and two ``hiem worker``
processes. The shipper runs in each worker's parent process (``hiem.app.server.run_worker``; the web process
of the distributed mode runs none), so two shippers compete for the PostgreSQL advisory lock that lets one
of them ship at a time; the frames' PROCID says which one sent each record. rsyslog stores at most one
message every ``PACE_US`` microseconds (a repository parses and stores each record; none is as quick as
rsyslog appending to a local file), so a crash finds records it has read off the socket but not stored.

The outage is a SIGKILL, sent the moment rsyslog's output file grows (so while a batch is being received):
a crash, an OOM kill or a power cut of the repository's host is what an unplanned outage looks like, and
it is the harsher case. A SIGTERM is a planned restart: rsyslog stops reading, drains its queue and closes
its connections in order; a SIGKILL gives it no chance to, so whatever it had taken off the socket but not
yet stored is gone with it, and the shipper must send it again. After ``DOWN_SECONDS`` it is started again
on the same port, writing to a new file (a record the crash cut in half stays at the end of the first
file, where it cannot be glued to the next record).

What hiem guarantees, and what is asserted (``hiem.audit.shipper``, ``hiem.audit.syslog``):

* Nothing is lost: every audit record in the database arrives at the repository, whole. Before the
  shipper confirmed records (marked them shipped as soon as ``send()`` returned) this test lost the
  records rsyslog had read but not stored at the crash (17 of 1001 in one run); now a record is marked
  only once its connection is still up and acknowledged ``CONFIRM_SECONDS`` after it was sent.
* Order: records are sent in ascending id order; taking each record's first arrival, the arrivals are in
  ascending id order, across the outage and whichever shipper sent them.
* Duplicates: delivery is at-least-once. RFC 5425 has no acknowledgement, so the records not yet confirmed
  when a connection broke are sent again, from the oldest unshipped one. A duplicate is therefore only a
  record in flight at a failure: the arrival sequence is made of runs that each go up one record at a time
  (no gap), a new run starts again fewer than ``UNCONFIRMED_MAX`` records back, and there are no more new
  runs than failed sends the workers logged. Everything else arrives exactly once.
* A duplicate is recognisable: it is the same AuditMessage, byte for byte (EventDateTime, EventID, the
  notification's wsa:MessageID or the delivery's id as participant objects); only the RFC 5424 PROCID may
  differ, when the other shipper re-sent it. The syslog MSGID cannot serve as the key: ITI-20 fixes it to
  ``IHE+RFC-3881`` for every record.
* All 500 notifications reach the consumer.

The measurements are printed (``pytest -s``).
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from rsyslog_harness import HOST, RsyslogServer, rsyslog_or_skip
from sqlalchemy.orm import Session

from hiem.audit import build_audit_message, event_from_json
from hiem.audit import records as audit_records
from hiem.audit.shipper import UNCONFIRMED_MAX
from hiem.store.models import AuditRecord
from tests.conftest import Broker, start_broker
from tests.integration.test_durability import ORDER_NS, event_index
from tests.support import wsn
from tests.support.consumer import RecordingConsumer
from tests.support.faults import wait_until
from tests.support.services import fresh_postgres_database, require_redis

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

TOTAL = 500
PUBLISHERS = 4
DOWN_SECONDS = 3.0
PACE_US = 2000
MSGID = "IHE+RFC-3881"
SHIP_FAILED = "audit repository unavailable"  # hiem.audit.shipper's warning for each failed send


class CrashableRsyslog(RsyslogServer):
    """The harness's rsyslog, which can also crash (SIGKILL) and come back writing to another file.

    Its ruleset has a queue of its own that hands the file writer one message every ``PACE_US``
    microseconds: a real repository parses and stores each message, so it is never as quick as rsyslog
    appending to a local file, and a crash finds records it has taken off the socket but not yet stored.
    """

    def _config(self) -> str:
        config = super()._config()
        plain = 'ruleset(name="hiemAudit")'
        assert plain in config, "the harness's configuration changed: update CrashableRsyslog"
        return config.replace(plain, f'ruleset(name="hiemAudit" queue.type="FixedArray" '
                                     f'queue.dequeueBatchSize="1" queue.dequeueSlowdown="{PACE_US}")')

    def crash(self) -> None:
        proc, self._proc = self._proc, None
        assert proc is not None and proc.poll() is None, "rsyslogd is not running"
        proc.send_signal(signal.SIGKILL)
        proc.wait(15)

    def restart_into(self, file_name: str) -> None:
        self.records_file = self.dir / file_name
        self.conf_file.write_text(self._config())
        self.start()


def _audit_env(server: RsyslogServer) -> dict[str, str]:
    return {"HIEM_AUDIT_TRANSPORT": "tls", "HIEM_AUDIT_HOST": HOST, "HIEM_AUDIT_PORT": str(server.port),
            "HIEM_AUDIT_CA": str(server.ca_file), "HIEM_AUDIT_CERT": str(server.client_cert),
            "HIEM_AUDIT_KEY": str(server.client_key), "HIEM_AUDIT_SOURCE_ID": "hiem-outage-test"}


@dataclass(frozen=True)
class Arrival:
    """One message rsyslog wrote: the audit record it carries, and the header fields that vary."""

    record_id: int
    procid: str
    msgid: str


def _expected_messages(engine: sa.Engine) -> dict[str, int]:
    """Each audit record's AuditMessage (the MSG its frame carries) -> its id; asserts they are distinct."""
    with Session(engine) as session:
        rows = session.execute(sa.select(AuditRecord.id, AuditRecord.event).order_by(AuditRecord.id)).all()
    by_message = {build_audit_message(event_from_json(event)).decode(): record_id for record_id, event in rows}
    assert len(by_message) == len(rows), "two audit records would make the same message: not recognisable"
    return by_message


def _arrivals(lines: list[str], expected: dict[str, int]) -> tuple[list[Arrival], list[str]]:
    """Match received messages to audit records by their whole AuditMessage; the rest is returned apart."""
    arrivals, unknown = [], []
    for line in lines:
        header, bom, message = line.partition("\ufeff")
        fields = header.split(" ")  # "<85>1 TIMESTAMP HOST APP PROCID MSGID - ": the frame's count is not part of it
        if not bom or len(fields) != 8 or fields[0] != "<85>1" or message not in expected:
            unknown.append(line)
            continue
        arrivals.append(Arrival(expected[message], procid=fields[4], msgid=fields[5]))
    return arrivals, unknown


def _check_runs(order: list[int], arrived: list[int]) -> tuple[int, int]:
    """Check the arrival sequence against the shipper's guarantee; return (re-sent runs, duplicates).

    ``order`` is every record id ascending. Each arrival must be either the record after the previous one
    (a run going on) or a re-send that starts at most one batch back from the furthest record seen so far.
    """
    position = {record_id: index for index, record_id in enumerate(order)}
    furthest, previous, restarts = -1, -1, 0
    for step, record_id in enumerate(arrived):
        index = position[record_id]
        if index == previous + 1 and index > furthest:
            furthest = index
        elif index == previous + 1:
            pass  # a re-sent run going on, still behind the furthest record
        else:
            assert index <= furthest, (
                f"arrival {step}: record {record_id} came after record {order[previous]}, skipping "
                f"{index - previous - 1} record(s) that had not arrived yet (out of order or lost): "
                f"{order[previous + 1:index][:10]}")
            assert furthest - index < UNCONFIRMED_MAX, (
                f"arrival {step}: a re-send went back {furthest - index + 1} records, more than the shipper "
                f"leaves unconfirmed ({UNCONFIRMED_MAX})")
            restarts += 1
        previous = index
    return restarts, len(arrived) - len(set(arrived))


def _ship_failures(broker: Broker) -> int:
    return sum(worker.output().count(SHIP_FAILED) for worker in broker.workers)


@contextlib.contextmanager
def _logs_on_failure(broker: Broker, rsyslog: RsyslogServer) -> Iterator[None]:
    try:
        yield
    except BaseException:
        for proc in [broker.web, *broker.workers]:
            print(f"----- {proc.log_path.name} -----\n{proc.output()[-8000:]}")
        print(rsyslog.diagnostics())
        raise


def _publish(base_url: str, index: int) -> int:
    payload = f"<t:Event xmlns:t='{ORDER_NS}'>{index}</t:Event>"
    return wsn.call(base_url, "Notify", wsn.notify_body(payload=payload)).status_code


def _crash_while_receiving(rsyslog: CrashableRsyslog, timeout: float = 10.0) -> None:
    """SIGKILL rsyslog the moment its output grows: a batch is being received and written then."""
    size = rsyslog.records_file.stat().st_size if rsyslog.records_file.exists() else 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = rsyslog.records_file.stat().st_size if rsyslog.records_file.exists() else 0
        if now > size:
            break
        time.sleep(0.002)
    rsyslog.crash()


def test_distributed_shipper_through_a_syslog_crash(tmp_path: Path) -> None:
    started = time.monotonic()
    rsyslog = rsyslog_or_skip(tmp_path, CrashableRsyslog)
    with ExitStack() as stack:
        stack.callback(rsyslog.stop)
        redis_url = require_redis()
        database_url = stack.enter_context(fresh_postgres_database())
        consumer = stack.enter_context(RecordingConsumer())
        broker = start_broker("distributed", tmp_path / "broker", database_url, redis_url, workers=0,
                              **_audit_env(rsyslog))
        stack.callback(broker.stop)
        engine = sa.create_engine(database_url)
        stack.callback(engine.dispose)
        with _logs_on_failure(broker, rsyslog):
            shippers = {str(broker.start_worker("-c", "2").proc.pid) for _ in range(2)}
            response = wsn.call(broker.url, "Subscribe", wsn.subscribe_body(consumer.url))
            assert response.status_code == 200, response.text

            # -- the burst, and the crash part-way through it -------------------------------------------------
            burst_started = time.monotonic()
            with ThreadPoolExecutor(PUBLISHERS) as pool:
                futures = [pool.submit(_publish, broker.url, index) for index in range(TOTAL)]
                wait_until(lambda: sum(f.done() for f in futures) >= TOTAL // 4 and len(rsyslog.records()) >= 20,
                           timeout=60, what="a quarter of the burst published and audit records arriving")
                _crash_while_receiving(rsyslog)
                crashed = time.monotonic()
                published_at_crash = sum(f.done() for f in futures)
                before_crash = rsyslog.records()
                with Session(engine) as session:
                    marked_at_crash = session.scalar(sa.select(sa.func.count()).select_from(AuditRecord)
                                                     .where(AuditRecord.shipped_at.is_not(None)))
                time.sleep(DOWN_SECONDS)
                rsyslog.restart_into("records-after-restart.log")
                outage = time.monotonic() - crashed
                statuses = Counter(f.result() for f in futures)
            burst = time.monotonic() - burst_started
            assert statuses == {202: TOTAL}, statuses
            assert published_at_crash < TOTAL, "the crash came after the burst"

            # -- the consumer got everything; then the audit backlog drains -----------------------------------
            received = consumer.wait_for(TOTAL, timeout=90)
            assert sorted({event_index(r.body) for r in received}) == list(range(TOTAL))

            def drained() -> bool:
                with Session(engine) as session:
                    kinds = Counter(session.scalars(sa.select(AuditRecord.kind)))
                    backlog = audit_records.backlog(session)
                return kinds["notify-received"] >= TOTAL and kinds["notify-sent"] >= TOTAL and backlog == 0

            wait_until(drained, timeout=90, what="every Import and Export recorded and the audit backlog at 0")
            drained_at = time.monotonic()
            expected = _expected_messages(engine)
            every = set(expected.values())

            def all_arrived() -> bool:
                arrived, _ = _arrivals([*before_crash, *rsyslog.records()], expected)
                return {a.record_id for a in arrived} >= every

            with contextlib.suppress(AssertionError):  # what is missing is said below
                wait_until(all_arrived, timeout=20, what="every audit record at rsyslog")
            lines = [*before_crash, *rsyslog.records()]
            arrivals, unknown = _arrivals(lines, expected)

            # -- what arrived -------------------------------------------------------------------------------
            arrived = [a.record_id for a in arrivals]
            missing = sorted(every - set(arrived))
            failures = _ship_failures(broker)
            by_shipper = Counter(a.procid for a in arrivals)
            print(f"\naudit outage: {len(expected)} records; burst {burst:.1f}s; rsyslog SIGKILLed after "
                  f"{published_at_crash}/{TOTAL} Notifies with {len(before_crash)} records stored and "
                  f"{marked_at_crash} marked shipped, down {outage:.1f}s; backlog 0 {drained_at - crashed:.1f}s "
                  f"after the crash; {failures} failed sends logged; {len(lines)} messages received, per "
                  f"shipper PROCID {dict(by_shipper)}; {len(arrived) - len(set(arrived))} duplicates, "
                  f"{len(missing)} missing, {len(unknown)} unrecognised")

            assert not missing, f"{len(missing)} audit records never arrived (lost): ids {missing[:20]}"
            assert not unknown, f"messages that are no record's AuditMessage (cut or altered): {unknown[:3]}"
            assert {a.msgid for a in arrivals} == {MSGID}
            assert set(by_shipper) <= shippers, f"PROCIDs {set(by_shipper)} are not the workers {shippers}"
            assert len(by_shipper) == 2, f"only one shipper ever won the advisory lock: {dict(by_shipper)}"
            try:
                restarts, duplicates = _check_runs(sorted(every), arrived)
            except AssertionError:
                print("arrival order:", arrived)
                print("records (id, kind, created_at, shipped_at):")
                with Session(engine) as session:
                    for row in session.execute(sa.select(AuditRecord.id, AuditRecord.kind, AuditRecord.created_at,
                                                         AuditRecord.shipped_at).order_by(AuditRecord.id)):
                        print(" ", *row)
                raise
            assert restarts <= failures, f"{restarts} re-sent runs but only {failures} failed sends"
            if restarts == 0:
                assert duplicates == 0
            print(f"audit outage: {restarts} re-sent run(s), {duplicates} duplicate(s), "
                  f"test {time.monotonic() - started:.1f}s")
