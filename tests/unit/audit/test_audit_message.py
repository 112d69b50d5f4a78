"""build_audit_message: every kind x outcome validates against both DICOM schemas; fields carry through."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Callable
from typing import Any

import pytest
from lxml import etree

from hiem import xmlsafe
from hiem.audit.codes import (
    EventOutcomeIndicator,
    NetworkAccessPointTypeCode,
    RoleIDCode,
    SecurityAlertType,
)
from hiem.audit.events import AuditEvent, AuditKind, Participant, ParticipantObject
from hiem.audit.message import (
    MAX_TEXT,
    UNAUTHENTICATED_NOTE,
    build_audit_message,
    network_access_point_of,
    participant_objects,
)
from hiem.audit.validation import validate_audit_message

MakeEvent = Callable[..., AuditEvent]

# Optional-field variants: everything set, nothing optional set, and the in-between shapes that change
# which participant objects exist (the CP-2399 Name/Query rule applies to each of them).
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {"description": "all good", "unauthenticated": True},
    "bare": {
        "enterprise_site_id": None,
        "subscription_id": None,
        "topic": None,
        "message_id": None,
        "saml_user": None,
        "saml_org": None,
    },
    "subscription-only": {"topic": None, "message_id": None, "saml_user": None, "saml_org": None},
    "topic-only": {"subscription_id": None, "message_id": None, "unauthenticated": True},
    "message-only": {"subscription_id": None, "topic": None, "description": "consumer said 500"},
}


@pytest.mark.parametrize(
    ("kind", "outcome", "variant"),
    list(itertools.product(AuditKind, EventOutcomeIndicator, VARIANTS)),
    ids=lambda v: getattr(v, "name", v),
)
def test_every_kind_and_outcome_validates_against_both_schemas(
    make_event: MakeEvent, kind: AuditKind, outcome: EventOutcomeIndicator, variant: str
) -> None:
    event = make_event(kind=kind, outcome=outcome, **VARIANTS[variant])
    validate_audit_message(build_audit_message(event))


def _root(event: AuditEvent) -> etree._Element:
    return xmlsafe.parse(build_audit_message(event))


def _coded(element: etree._Element) -> tuple[str, str, str]:
    return (element.get("csd-code"), element.get("codeSystemName"), element.get("originalText"))


@pytest.mark.parametrize(
    ("kind", "event_id", "action", "type_code"),
    [
        (AuditKind.IMPORT, "110107", "C", "HIEM-Notify"),
        (AuditKind.EXPORT, "110106", "R", "HIEM-Notify"),
        (AuditKind.SUBSCRIBE_REQUESTED, "110112", "E", "HIEM-Subscribe"),
        (AuditKind.SUBSCRIBE_ACCEPTED, "110112", "E", "HIEM-Subscribe"),
        (AuditKind.SUBSCRIBE_REFUSED, "110112", "E", "HIEM-Subscribe"),
        (AuditKind.SUBSCRIPTION_TERMINATED, "110112", "E", "HIEM-Unsubscribe"),
        (AuditKind.SUBSCRIPTION_EXPIRED, "110112", "E", "HIEM-SubscriptionEnd"),
        (AuditKind.SECURITY_ALERT, "110113", "E", "110126"),
    ],
)
def test_event_identification_codes(
    make_event: MakeEvent, kind: AuditKind, event_id: str, action: str, type_code: str
) -> None:
    root = _root(make_event(kind=kind, outcome=EventOutcomeIndicator.SERIOUS_FAILURE))
    identification = root.find("EventIdentification")
    assert identification.get("EventActionCode") == action
    assert identification.get("EventOutcomeIndicator") == "8"
    assert identification.get("EventDateTime") == "2025-03-14T15:09:26.535Z"
    assert _coded(identification.find("EventID"))[:2] == (event_id, "DCM")
    types = [_coded(e) for e in identification.findall("EventTypeCode")]
    assert types[0][0] == type_code
    assert types[1] == (kind.value, "HIEM Audit Events", kind.display)


def test_security_alert_type_can_be_chosen(make_event: MakeEvent) -> None:
    event = make_event(kind=AuditKind.SECURITY_ALERT, alert_type=SecurityAlertType.USE_OF_RESTRICTED_FUNCTION)
    first = _root(event).find("EventIdentification/EventTypeCode")
    assert _coded(first) == ("110132", "DCM", "Use of Restricted Function")


def test_active_participants_carry_through(make_event: MakeEvent) -> None:
    participants = _root(make_event()).findall("ActiveParticipant")
    assert [p.get("UserIsRequestor") for p in participants] == ["true", "false", "true", "false"]
    source, destination, user, org = participants
    assert source.get("UserID") == "https://gateway.example.net/subscriber"
    assert (source.get("NetworkAccessPointID"), source.get("NetworkAccessPointTypeCode")) == (
        "192.0.2.10",
        "2",
    )
    assert _coded(source.find("RoleIDCode")) == ("110153", "DCM", "Source Role ID")
    assert destination.get("AlternativeUserID") == "4242"
    assert (destination.get("NetworkAccessPointID"), destination.get("NetworkAccessPointTypeCode")) == (
        "hiem.example.org",
        "1",
    )
    assert _coded(destination.find("RoleIDCode")) == ("110152", "DCM", "Destination Role ID")
    assert user.get("UserID") == user.get("UserName") == "UID=dr.who,O=Example Hospital"
    assert org.get("UserID") == "Example Hospital"
    assert user.find("RoleIDCode") is None and org.find("RoleIDCode") is None


def test_no_saml_means_two_participants(make_event: MakeEvent) -> None:
    root = _root(make_event(saml_user=None, saml_org=None))
    assert len(root.findall("ActiveParticipant")) == 2


def test_audit_source(make_event: MakeEvent) -> None:
    source = _root(make_event()).find("AuditSourceIdentification")
    assert source.get("AuditSourceID") == "hiem-test"
    assert source.get("AuditEnterpriseSiteID") == "2.16.840.1.113883.3.42"
    assert _coded(source.find("AuditSourceTypeCode"))[:2] == ("4", "DCM")


def test_subscription_event_objects(make_event: MakeEvent) -> None:
    event = make_event(kind=AuditKind.SUBSCRIBE_ACCEPTED)
    objects = _root(event).findall("ParticipantObjectIdentification")
    # the topic rides in the subscription's ParticipantObjectQuery; the message id is an object of its own
    assert len(objects) == 2
    subscription = objects[0]
    assert subscription.get("ParticipantObjectID") == event.subscription_id
    assert (
        subscription.get("ParticipantObjectTypeCode"),
        subscription.get("ParticipantObjectTypeCodeRole"),
    ) == (
        "2",
        "24",
    )
    assert _coded(subscription.find("ParticipantObjectIDTypeCode"))[:2] == (
        "HIEM-Subscribe",
        "HIEM Transactions",
    )
    assert base64.b64decode(subscription.findtext("ParticipantObjectQuery")).decode() == event.topic
    assert subscription.find("ParticipantObjectName") is None


def test_notify_event_objects(make_event: MakeEvent) -> None:
    event = make_event(kind=AuditKind.EXPORT)
    objects = _root(event).findall("ParticipantObjectIdentification")
    by_role = {o.get("ParticipantObjectTypeCodeRole"): o for o in objects}
    assert set(by_role) == {"24", "3", "23"}
    assert by_role["24"].findtext("ParticipantObjectName") == event.subscription_id
    assert by_role["3"].get("ParticipantObjectID") == by_role["3"].findtext("ParticipantObjectName")
    assert by_role["3"].get("ParticipantObjectID") == event.message_id
    assert _coded(by_role["3"].find("ParticipantObjectIDTypeCode"))[0] == "HIEM-Notify"
    assert by_role["23"].findtext("ParticipantObjectName") == event.topic
    assert _coded(by_role["23"].find("ParticipantObjectIDTypeCode"))[:2] == ("10", "RFC-3881")


def test_security_alert_has_an_alert_subject(make_event: MakeEvent) -> None:
    event = make_event(
        kind=AuditKind.SECURITY_ALERT,
        outcome=EventOutcomeIndicator.MINOR_FAILURE,
        subscription_id=None,
        topic=None,
        message_id=None,
        description="signature did not verify",
    )
    (subject,) = _root(event).findall("ParticipantObjectIdentification")
    assert subject.get("ParticipantObjectID") == "192.0.2.10"
    assert subject.get("ParticipantObjectTypeCodeRole") == "13"
    assert _coded(subject.find("ParticipantObjectIDTypeCode"))[:2] == ("110182", "DCM")
    detail = subject.find("ParticipantObjectDetail")
    assert detail.get("type") == "Alert Description"
    assert base64.b64decode(detail.get("value")) == b"signature did not verify"


def test_description_goes_to_event_outcome_description(make_event: MakeEvent) -> None:
    root = _root(
        make_event(kind=AuditKind.EXPORT, outcome=EventOutcomeIndicator.SERIOUS_FAILURE, description="HTTP 503")
    )
    assert root.findtext("EventIdentification/EventOutcomeDescription") == "HTTP 503"
    assert _root(make_event()).find("EventIdentification/EventOutcomeDescription") is None


def test_unauthenticated_is_marked_twice(make_event: MakeEvent) -> None:
    root = _root(make_event(unauthenticated=True, description="why"))
    assert root.findtext("EventIdentification/EventOutcomeDescription") == f"{UNAUTHENTICATED_NOTE}; why"
    first = root.find("ParticipantObjectIdentification")
    details = {d.get("type"): base64.b64decode(d.get("value")) for d in first.findall("ParticipantObjectDetail")}
    assert details == {"hiem-auth": b"unauthenticated"}
    others = root.findall("ParticipantObjectIdentification")[1:]
    assert all(o.find("ParticipantObjectDetail") is None for o in others)


def test_message_is_one_line_utf8_with_declaration(make_event: MakeEvent) -> None:
    message = build_audit_message(make_event(saml_user="Dr. Müller"))
    assert message.startswith(b'<?xml version="1.0" encoding="UTF-8"?><AuditMessage>')
    assert b"\n" not in message
    assert "Dr. Müller".encode() in message


def test_text_xml_cannot_carry_is_replaced_and_long_text_cut(make_event: MakeEvent) -> None:
    event = make_event(saml_user="bad\x00user\x1f", description="x" * (MAX_TEXT * 3), topic="t\ufffe" * 2000)
    message = build_audit_message(event)
    validate_audit_message(message)
    root = xmlsafe.parse(message)
    assert root.find("ActiveParticipant[3]").get("UserID") == "bad\ufffduser\ufffd"
    assert len(root.findtext("EventIdentification/EventOutcomeDescription")) == MAX_TEXT


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.1.2.3", ("10.1.2.3", NetworkAccessPointTypeCode.IP_ADDRESS)),
        ("2001:db8::1", ("2001:db8::1", NetworkAccessPointTypeCode.IP_ADDRESS)),
        ("[2001:db8::1]", ("2001:db8::1", NetworkAccessPointTypeCode.IP_ADDRESS)),
        ("host.example.org", ("host.example.org", NetworkAccessPointTypeCode.MACHINE_NAME)),
        (
            "https://consumer.example.org:8443/ws",
            ("consumer.example.org", NetworkAccessPointTypeCode.MACHINE_NAME),
        ),
        ("http://[2001:db8::2]:80/x", ("2001:db8::2", NetworkAccessPointTypeCode.IP_ADDRESS)),
        (None, (None, None)),
    ],
)
def test_network_access_point_type_is_decided_by_value(value: str | None, expected: tuple[Any, Any]) -> None:
    assert network_access_point_of(value) == expected


def test_participant_without_network_access_point(make_event: MakeEvent) -> None:
    anonymous = Participant("urn:hiem:scheduler", None, True, RoleIDCode.APPLICATION)
    root = _root(make_event(kind=AuditKind.SUBSCRIPTION_EXPIRED, source=anonymous))
    source = root.find("ActiveParticipant")
    assert source.get("NetworkAccessPointID") is None and source.get("NetworkAccessPointTypeCode") is None
    validate_audit_message(etree.tostring(root))


def test_participant_object_requires_name_or_query() -> None:
    from hiem.audit.codes import HiemTransaction, ParticipantObjectTypeCode, ParticipantObjectTypeCodeRole

    common = {
        "object_id": "x",
        "type_code": ParticipantObjectTypeCode.SYSTEM_OBJECT,
        "role": ParticipantObjectTypeCodeRole.QUERY,
        "id_type": HiemTransaction.SUBSCRIBE,
    }
    with pytest.raises(ValueError, match="CP-2399"):
        ParticipantObject(**common)
    with pytest.raises(ValueError, match="CP-2399"):
        ParticipantObject(**common, name="x", query=b"x")


def test_every_participant_object_has_name_or_query(make_event: MakeEvent) -> None:
    for kind in AuditKind:
        for obj in participant_objects(make_event(kind=kind, unauthenticated=True)):
            assert (obj.name is None) != (obj.query is None)
