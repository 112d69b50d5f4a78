"""validate_audit_message: both schemas, errors listed per schema, hardened parsing."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from lxml import etree

from hiem import xmlsafe
from hiem.audit.events import AuditEvent, AuditKind
from hiem.audit.message import build_audit_message
from hiem.audit.validation import SCHEMA_FILES, validate_audit_message

MakeEvent = Callable[..., AuditEvent]


def _mutated(make_event: MakeEvent, mutate: Callable[[etree._Element], None]) -> bytes:
    root = xmlsafe.parse(build_audit_message(make_event(kind=AuditKind.EXPORT)))
    mutate(root)
    return etree.tostring(root)


def test_schema_files_are_both_used() -> None:
    assert SCHEMA_FILES == ("dicom2017c.xsd", "dicom2024d.xsd")


def test_missing_audit_source_is_rejected_by_both(make_event: MakeEvent) -> None:
    xml = _mutated(make_event, lambda r: r.remove(r.find("AuditSourceIdentification")))
    with pytest.raises(ValueError) as info:
        validate_audit_message(xml)
    message = str(info.value)
    assert "dicom2017c.xsd: line" in message and "dicom2024d.xsd: line" in message


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r.find("EventIdentification").set("EventOutcomeIndicator", "1"),
        lambda r: r.find("ActiveParticipant").attrib.pop("UserID"),
        lambda r: r.find("EventIdentification/EventID").attrib.pop("csd-code"),
        lambda r: r.find("EventIdentification").set("EventActionCode", "X"),
    ],
    ids=["outcome-1", "no-user-id", "no-csd-code", "action-X"],
)
def test_broken_messages_are_rejected(make_event: MakeEvent, mutate: Callable[[etree._Element], None]) -> None:
    with pytest.raises(ValueError, match=r"dicom2017c\.xsd"):
        validate_audit_message(_mutated(make_event, mutate))


def test_cp_2399_is_checked_by_the_2024_schema_only(make_event: MakeEvent) -> None:
    def drop_name(root: etree._Element) -> None:
        obj = root.find("ParticipantObjectIdentification")
        name = obj.find("ParticipantObjectName")
        obj.remove(name)

    with pytest.raises(ValueError) as info:
        validate_audit_message(_mutated(make_event, drop_name))
    assert "dicom2024d.xsd" in str(info.value)
    assert "dicom2017c.xsd" not in str(info.value)


def test_root_must_be_audit_message() -> None:
    with pytest.raises(ValueError, match="root must be AuditMessage"):
        validate_audit_message(b'<EventID csd-code="1" codeSystemName="DCM" originalText="x"/>')


@pytest.mark.parametrize(
    "data",
    [
        b"<AuditMessage>",
        b'<!DOCTYPE AuditMessage [<!ENTITY x "y">]><AuditMessage>&x;</AuditMessage>',
        b"",
    ],
    ids=["not-well-formed", "dtd", "empty"],
)
def test_hostile_or_broken_xml_is_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError, match="rejected by the XML parser"):
        validate_audit_message(data)
