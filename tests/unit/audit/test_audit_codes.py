"""The coded values are the real DICOM / RFC 3881 codes, and every coded Enum carries system and display."""

from __future__ import annotations

from enum import Enum

import pytest

import hiem.audit
from hiem.audit import codes
from hiem.audit.codes import (
    AuditSourceTypeCode,
    CodedEnum,
    EventActionCode,
    EventID,
    EventOutcomeIndicator,
    HiemTransaction,
    ParticipantObjectIDTypeCode,
    ParticipantObjectTypeCode,
    ParticipantObjectTypeCodeRole,
    RoleIDCode,
    SecurityAlertType,
)
from hiem.audit.events import AuditKind

CODED = [
    EventID,
    RoleIDCode,
    SecurityAlertType,
    HiemTransaction,
    ParticipantObjectIDTypeCode,
    AuditSourceTypeCode,
]


def test_the_dicom_codes() -> None:
    assert (EventID.IMPORT, EventID.EXPORT, EventID.SECURITY_ALERT, EventID.QUERY) == (
        "110107",
        "110106",
        "110113",
        "110112",
    )
    assert (RoleIDCode.SOURCE, RoleIDCode.DESTINATION, RoleIDCode.APPLICATION) == (
        "110153",
        "110152",
        "110150",
    )
    assert SecurityAlertType.NODE_AUTHENTICATION == "110126"
    assert ParticipantObjectIDTypeCode.NODE_ID == "110182"
    assert AuditSourceTypeCode.APPLICATION_SERVER == "4"


def test_the_schema_enumerations() -> None:
    assert [c.value for c in EventActionCode] == ["C", "R", "U", "D", "E"]
    assert [int(c) for c in EventOutcomeIndicator] == [0, 4, 8, 12]
    assert ParticipantObjectTypeCode.SYSTEM_OBJECT == "2"
    assert [int(r.value) for r in ParticipantObjectTypeCodeRole] == list(range(1, 27))


@pytest.mark.parametrize("enum_class", [*CODED, AuditKind], ids=lambda c: c.__name__)
def test_coded_members_have_system_and_display(enum_class: type[CodedEnum]) -> None:
    values = [member.value for member in enum_class]
    assert len(values) == len(set(values))
    for member in enum_class:
        assert member.code == member.value
        assert member.system and member.display
        assert enum_class(member.value) is member


def test_code_systems() -> None:
    assert EventID.IMPORT.system == codes.DCM
    assert ParticipantObjectIDTypeCode.SEARCH_CRITERIA.system == codes.RFC_3881
    assert ParticipantObjectIDTypeCode.NODE_ID.system == codes.DCM
    assert HiemTransaction.NOTIFY.system == codes.HIEM_TRANSACTIONS
    assert AuditKind.IMPORT.system == codes.HIEM_AUDIT_EVENTS


@pytest.mark.parametrize("enum_class", [*CODED, EventActionCode, EventOutcomeIndicator])
def test_unknown_codes_raise_value_error(enum_class: type[Enum]) -> None:
    with pytest.raises(ValueError):
        enum_class("999999")


def test_exported_members() -> None:
    exported = set(hiem.audit.__all__)
    public = {name for name in vars(hiem.audit) if not name.startswith("_")}
    assert exported <= public
    submodules = {"codes", "events", "message", "records", "schemas", "shipper", "syslog", "trail", "validation"}
    assert public - exported <= {"annotations", *submodules}
    assert set(codes.__all__) == {
        name for name, value in vars(codes).items() if not name.startswith("_") and value is not None
    } - {"annotations", "IntEnum", "StrEnum", "Protocol"}
