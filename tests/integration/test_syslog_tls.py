"""hiem.audit.syslog against a real rsyslog (RFC 5425, mutual TLS) and a real UDP socket (RFC 5426)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rsyslog_harness import HOST, RsyslogServer, rsyslog_or_skip

from hiem.audit import (
    AuditEvent,
    AuditKind,
    Participant,
    TlsSyslogSender,
    UdpSyslogSender,
    build_audit_message,
    format_rfc5424,
    validate_audit_message,
)
from hiem.audit.codes import EventOutcomeIndicator, RoleIDCode
from hiem.errors import AuditShipError

BOM_TEXT = "\ufeff"


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[RsyslogServer]:
    server = rsyslog_or_skip(tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _sender(server: RsyslogServer, *, with_cert: bool = True, ca: Path | None = None) -> TlsSyslogSender:
    return TlsSyslogSender(
        HOST,
        server.port,
        str(ca or server.ca_file),
        str(server.client_cert) if with_cert else None,
        str(server.client_key) if with_cert else None,
        timeout=5.0,
    )


def _frame(message_id: str, kind: AuditKind = AuditKind.EXPORT) -> bytes:
    event = AuditEvent(
        kind=kind,
        outcome=EventOutcomeIndicator.SUCCESS,
        occurred_at=datetime.now(UTC),
        source=Participant("https://hiem.test/broker", "127.0.0.1", True, RoleIDCode.SOURCE),
        destination=Participant("https://consumer.test/notify", "consumer.test", False, RoleIDCode.DESTINATION),
        audit_source_id="hiem-it",
        subscription_id="urn:uuid:11111111-2222-3333-4444-555555555555",
        topic="nhin:PatientCentricDocumentNotification",
        message_id=message_id,
    )
    return format_rfc5424(
        build_audit_message(event), hostname="hiem-it", procid=os.getpid(), timestamp=event.occurred_at
    )


def _with(message_id: str) -> object:
    return lambda records: any(message_id in record for record in records)


def test_records_arrive_intact(rsyslog: RsyslogServer) -> None:
    ids = [f"urn:uuid:arrive-{n}" for n in range(3)]
    kinds = [AuditKind.EXPORT, AuditKind.IMPORT, AuditKind.SUBSCRIBE_ACCEPTED]
    with _sender(rsyslog) as sender:
        sender.send([_frame(i, k) for i, k in zip(ids, kinds, strict=True)])
        sender.send([_frame("urn:uuid:arrive-again")])  # the kept-open connection is reused
        records = rsyslog.wait_for(lambda r: len(r) >= 4)
    assert len(records) == 4
    for record, message_id in zip(records, [*ids, "urn:uuid:arrive-again"], strict=True):
        header, _, xml = record.partition(BOM_TEXT)
        assert header.startswith("<85>1 ")
        assert header.split(" ")[2:7] == ["hiem-it", "hiem", str(os.getpid()), "IHE+RFC-3881", "-"]
        validate_audit_message(xml.encode("utf-8"))
        assert message_id in xml


def test_client_without_certificate_is_refused(rsyslog: RsyslogServer) -> None:
    with _sender(rsyslog, with_cert=False) as anonymous, pytest.raises(AuditShipError, match="certificate"):
        anonymous.send([_frame("urn:uuid:anonymous")])
    with _sender(rsyslog) as sender:
        sender.send([_frame("urn:uuid:after-anonymous")])
        records = rsyslog.wait_for(_with("urn:uuid:after-anonymous"))
    assert not any("urn:uuid:anonymous" in record for record in records)


def test_server_certificate_must_chain_to_our_ca(rsyslog: RsyslogServer) -> None:
    with (
        _sender(rsyslog, ca=rsyslog.untrusted_ca_file) as sender,
        pytest.raises(AuditShipError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        sender.send([_frame("urn:uuid:untrusted")])


def test_receiver_down_then_back(rsyslog: RsyslogServer) -> None:
    with _sender(rsyslog) as sender:
        sender.send([_frame("urn:uuid:before")])
        rsyslog.wait_for(_with("urn:uuid:before"))

        rsyslog.stop()
        with pytest.raises(AuditShipError) as info:
            sender.send([_frame("urn:uuid:while-down")])
        assert isinstance(info.value.__cause__, OSError)  # translated, with the cause kept

        rsyslog.start()
        sender.send([_frame("urn:uuid:after")])
        records = rsyslog.wait_for(_with("urn:uuid:after"))
    assert not any("urn:uuid:while-down" in record for record in records)
    assert any("urn:uuid:before" in record for record in records)


def test_udp_sender_sends_one_message_per_datagram() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind((HOST, 0))
        listener.settimeout(5.0)
        frames = [_frame("urn:uuid:udp-1"), _frame("urn:uuid:udp-2")]
        with UdpSyslogSender(HOST, listener.getsockname()[1]) as sender:
            sender.send(frames)
        received = [listener.recvfrom(65535)[0] for _ in frames]
    assert received == frames  # no octet counting over UDP: the datagram is the message


def test_udp_sender_translates_errors() -> None:
    with UdpSyslogSender("host.invalid", 514) as sender, pytest.raises(AuditShipError) as info:
        sender.send([b"x"])
    assert isinstance(info.value.__cause__, OSError)
