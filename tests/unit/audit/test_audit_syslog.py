"""RFC 5424 message structure and RFC 5425 framing; sender construction without a network."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import certifi
import pytest

from hiem.audit.syslog import BOM, TlsSyslogSender, format_rfc5424, octet_counted
from hiem.errors import ConfigError

XML = b'<?xml version="1.0" encoding="UTF-8"?><AuditMessage/>'
WHEN = datetime(2025, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)

# RFC 5424 §6: <PRI>VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP SD [SP MSG]
HEADER = re.compile(
    rb"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48}) "
    rb"(?P<procid>[!-~]{1,128}) (?P<msgid>[!-~]{1,32}) (?P<sd>-) (?P<msg>.*)$",
    re.DOTALL,
)


def test_structure() -> None:
    frame = format_rfc5424(XML, hostname="hiem-1.example.org", procid=4242, timestamp=WHEN)
    match = HEADER.match(frame)
    assert match is not None
    assert match["pri"] == b"85"  # facility 10 (authpriv) * 8 + severity 5 (notice), DICOM A.7 / ITI-20
    assert match["ts"] == b"2025-03-14T15:09:26.535Z"
    assert (match["host"], match["app"], match["procid"], match["msgid"]) == (
        b"hiem-1.example.org",
        b"hiem",
        b"4242",
        b"IHE+RFC-3881",
    )
    assert match["msg"] == BOM + XML  # RFC 5424 §6.4: a UTF-8 MSG starts with the BOM


def test_timestamp_is_written_in_utc() -> None:
    local = WHEN.astimezone(timezone(timedelta(hours=-5)))
    assert b" 2025-03-14T15:09:26.535Z " in format_rfc5424(XML, hostname="h", procid=1, timestamp=local)


def test_nil_values_and_options() -> None:
    frame = format_rfc5424(
        XML, hostname=None, app_name="", procid=None, msgid=None, timestamp=WHEN, facility=13, severity=4
    )
    assert frame.startswith(b"<108>1 2025-03-14T15:09:26.535Z - - - - - " + BOM)


def test_existing_bom_is_not_doubled() -> None:
    frame = format_rfc5424(BOM + XML, hostname="h", procid=1, timestamp=WHEN)
    assert frame.count(BOM) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"hostname": "has space"},
        {"hostname": "h" * 256},
        {"app_name": "a" * 49},
        {"msgid": "m" * 33},
        {"procid": "caf\u00e9"},
        {"timestamp": datetime(2025, 1, 1)},
        {"facility": 24},
        {"severity": 8},
    ],
)
def test_invalid_header_values(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"hostname": "h", "procid": 1, "timestamp": WHEN, **kwargs}
    with pytest.raises(ValueError):
        format_rfc5424(XML, **args)  # type: ignore[arg-type]


def test_octet_counting_counts_bytes_not_characters() -> None:
    message = format_rfc5424("<a>\u00fc</a>".encode(), hostname="h", procid=1, timestamp=WHEN)
    framed = octet_counted(message)
    length, _, rest = framed.partition(b" ")
    assert int(length) == len(message) == len(rest)
    assert rest == message


def test_bad_tls_files_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot load the audit TLS files"):
        TlsSyslogSender("127.0.0.1", 6514, "/nonexistent/ca.pem", None, None)


def test_empty_batch_does_not_connect() -> None:
    # 192.0.2.1 (TEST-NET-1) is unreachable: any connection attempt would raise AuditShipError.
    with TlsSyslogSender("192.0.2.1", 9, certifi.where(), None, None, timeout=0.01) as sender:
        sender.send([])
