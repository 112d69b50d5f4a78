"""The shared base: instants, ids and SOAP structure, read defensively."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hiem import ns, xmlsafe
from hiem.security._processor import format_instant, id_index, parse_instant, soap_parts, text_of


@pytest.mark.parametrize(("text", "expected"), [
    ("2030-01-02T03:04:05Z", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2030-01-02T03:04:05.1234567Z", datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),  # .NET's 7 digits
    ("2030-01-02T05:04:05+02:00", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
    (" 2030-01-02T03:04:05.5Z\n", datetime(2030, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)),
])
def test_instants_are_read_as_utc(text: str, expected: datetime) -> None:
    assert parse_instant(text) == expected


@pytest.mark.parametrize("text", [
    None, "", "2030-01-02T03:04:05", "2030-01-02", "yesterday", "2030-02-30T00:00:00Z", "2030-01-02T24:00:00Z",
    "9999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00", "\u0662\u0660\u0663\u0660-01-02T03:04:05Z",
])
def test_unreadable_or_implausible_instants_are_value_errors(text: str | None) -> None:
    with pytest.raises(ValueError):
        parse_instant(text)


def test_instants_are_written_in_utc_with_milliseconds() -> None:
    assert format_instant(datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)) == "2030-01-02T03:04:05.678Z"


def test_id_index_refuses_the_same_value_under_different_id_attribute_names() -> None:
    document = xmlsafe.parse(f'<a xmlns:u="{ns.WSU}"><b u:Id="x"/><c ID="x"/></a>'.encode())
    with pytest.raises(ValueError, match="more than once"):
        id_index(document)
    assert set(id_index(xmlsafe.parse(b'<a><b Id="x"/><c id="y"/></a>'))) == {"x", "y"}


def test_text_skips_comments() -> None:
    assert text_of(xmlsafe.parse(b"<a>urn:<!-- hidden -->uuid:1</a>")) == "urn:uuid:1"
    assert text_of(xmlsafe.parse(b"<a> </a>")) is None


@pytest.mark.parametrize("xml", [
    b"<Envelope/>",
    f'<s:Envelope xmlns:s="{ns.SOAP11}"/>'.encode(),
    f'<s:Envelope xmlns:s="{ns.SOAP11}"><s:Body/><s:Body/></s:Envelope>'.encode(),
    f'<s:Envelope xmlns:s="{ns.SOAP12}"><s:Header/><s:Header/><s:Body/></s:Envelope>'.encode(),
    f'<s:Body xmlns:s="{ns.SOAP12}"/>'.encode(),
])
def test_soap_parts_refuses_what_is_not_one_envelope(xml: bytes) -> None:
    with pytest.raises(ValueError):
        soap_parts(xmlsafe.parse(xml))
