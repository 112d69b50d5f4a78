"""The broker's ATNA audit trail end to end: a real rsyslog over mutual TLS (RFC 5425) receives the
Import/Export/subscription records of real traffic, validated against both DICOM audit schemas; and a
receiver outage during a burst of 500 notifications loses nothing."""

from __future__ import annotations

import contextlib
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from lxml import etree
from rsyslog_harness import HOST, RsyslogServer, rsyslog_or_skip

from hiem.audit import validate_audit_message
from tests.conftest import Broker, start_broker
from tests.support import wsn
from tests.support.faults import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[RsyslogServer]:
    server = rsyslog_or_skip(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _audit_env(server: RsyslogServer) -> dict[str, str]:
    return {"HIEM_AUDIT_TRANSPORT": "tls", "HIEM_AUDIT_HOST": HOST, "HIEM_AUDIT_PORT": str(server.port),
            "HIEM_AUDIT_CA": str(server.ca_file), "HIEM_AUDIT_CERT": str(server.client_cert),
            "HIEM_AUDIT_KEY": str(server.client_key), "HIEM_AUDIT_SOURCE_ID": "hiem-test-node"}


def _messages(records: list[str]) -> list[etree._Element]:
    """The AuditMessage of each received syslog record (after the RFC 5424 header and BOM)."""
    out = []
    for record in records:
        start = record.find("<?xml")
        if start < 0:
            start = record.find("<AuditMessage")
        xml = record[start:].encode()
        validate_audit_message(xml)
        out.append(etree.fromstring(xml))
    return out


def _kinds(messages: list[etree._Element]) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for message in messages:
        for code in message.iter("EventTypeCode"):
            if code.get("codeSystemName") == "HIEM Audit Events":
                kinds[code.get("csd-code")] += 1
    return kinds


_URN = re.compile(r"urn:uuid:[0-9a-f-]{36}")


def _unshipped(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text("SELECT count(*) FROM audit_records WHERE shipped_at IS NULL")).scalar()


def _stop(running: Broker) -> None:
    running.stop()


def test_traffic_produces_matching_audit_records(tmp_path, rsyslog, consumer):
    running = start_broker("embedded", tmp_path / "b", **_audit_env(rsyslog))
    try:
        response = wsn.call(running.url, "Subscribe", wsn.subscribe_body(consumer.url))
        subscription = wsn.subscription_id(response)
        refused = wsn.call(running.url, "Subscribe", wsn.subscribe_body(consumer.url, topic="nhin:GIPSE/Nope"))
        assert refused.status_code == 400
        assert wsn.call(running.url, "Notify", wsn.notify_body()).status_code == 202
        consumer.wait_for(1)
        assert wsn.call(running.url, "Unsubscribe", "<wsnt:Unsubscribe/>",
                        headers=wsn.subscription_header(subscription)).status_code == 200

        wanted = {"subscribe-accepted", "subscribe-refused", "notify-received", "notify-sent",
                  "subscription-terminated"}
        records = rsyslog.wait_for(lambda found: wanted <= set(_kinds(_messages(found))), timeout=30)
        messages = _messages(records)
        text = "\n".join(records)
        assert subscription in text, "the subscription is a participant object of its records"
        assert "hiem-test-node" in text
        assert "UNAUTHENTICATED (hiem dev mode)" in text, "dev mode marks records as unauthenticated"
        export = next(m for m in messages if m.find("EventIdentification/EventID").get("csd-code") == "110106")
        assert export.find("EventIdentification").get("EventOutcomeIndicator") == "0"
        imported = next(m for m in messages if m.find("EventIdentification/EventID").get("csd-code") == "110107")
        assert imported is not None
    finally:
        _stop(running)


def test_repository_outage_during_a_burst_loses_nothing(tmp_path, rsyslog):
    running = start_broker("embedded", tmp_path / "b", **_audit_env(rsyslog))
    try:
        total = 500
        ids = []
        for index in range(total):
            if index == 100:
                rsyslog.stop()
            data = wsn.envelope(wsn.notify_body(), action=wsn.ACTIONS["Notify"])
            ids.append(re.search(rb"<wsa:MessageID>([^<]+)<", data).group(1).decode())
            assert wsn.post(running.url, "/wsn/NotificationBroker", data).status_code == 202
        time.sleep(2)
        rsyslog.start()
        # the records in flight when rsyslog stopped are sent again (at-least-once): wait for every id, not a count
        with contextlib.suppress(AssertionError):
            rsyslog.wait_for(lambda found: set(ids) <= set(_URN.findall("\n".join(found))), timeout=90)
        records = rsyslog.records()
        text = "\n".join(records)
        missing = [i for i in ids if i not in text]
        assert not missing, f"{len(missing)} Import records never arrived"
        assert _kinds(_messages(records))["notify-received"] >= total
        engine = sa.create_engine(running.env["HIEM_DATABASE_URL"])
        try:  # a record is marked shipped once confirmed, a moment after it arrived (hiem.audit.shipper)
            wait_until(lambda: _unshipped(engine) == 0, timeout=15, what="no audit record left unshipped")
        finally:
            engine.dispose()
    finally:
        _stop(running)
