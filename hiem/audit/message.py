"""Build the DICOM PS3.15 A.5 AuditMessage (the IHE ATNA format, ITI-20) for an :class:`AuditEvent`.

Layout (element order is the A.5.1 schema's)::

    AuditMessage
      EventIdentification  EventActionCode, EventDateTime (UTC, ms), EventOutcomeIndicator
        EventID            by kind (see hiem.audit.events)
        EventTypeCode      the HIEM transaction (or the CID 403 alert type), then the kind (HIEM Audit Events)
        EventOutcomeDescription   dev-mode note and/or event.description, when there is one
      ActiveParticipant    source       RoleIDCode from the Participant (110153 Source usually)
      ActiveParticipant    destination  RoleIDCode from the Participant (110152 Destination usually)
      ActiveParticipant    SAML subject, UserIsRequestor="true", when saml_user is set
      ActiveParticipant    SAML subject's organization, UserIsRequestor="false", when saml_org is set
      AuditSourceIdentification  AuditSourceID, AuditEnterpriseSiteID; AuditSourceTypeCode 4 (app server)
      ParticipantObjectIdentification ...  see below

Participant objects (all ParticipantObjectTypeCode 2, "system object")::

    object          when                  role                  IDTypeCode                  Name / Query
    subscription    subscription events   24 Query              HIEM-Subscribe (HIEM Tr.)   Query = the topic,
                                                                                            else Name = the id
    subscription    other events          24 Query              HIEM-Subscribe (HIEM Tr.)   Name = the id
    notification    message_id set        3 Report              HIEM-Notify (HIEM Tr.)      Name = the id
    topic           not a subscription    23 Routing Criteria   10 Search Criteria          Name = the topic
                    event                                       (RFC-3881)
    alert subject   SECURITY_ALERT        13 Security Resource  110182 Node ID (DCM)        Name = source node

A subscription is a standing query, so it is coded the way IHE codes a query (role 24, ID type = the
transaction code, the filter in ParticipantObjectQuery) and the same way in every event, which keeps
searches by subscription id uniform. DSUB codes the document of a Notify with role 3 (Report); hiem's
notification message is that object. The alert subject follows A.5.3.11 (the node whose request raised
the alert, described by an "Alert Description" detail).

Every participant object has a ParticipantObjectName or ParticipantObjectQuery, so the message validates
against ``dicom2024d.xsd`` (CP-2399) as well as ``dicom2017c.xsd``.

Hardening: characters XML 1.0 cannot carry are replaced by U+FFFD, so odd input still produces a record,
and free text (description, topic) is cut to :data:`MAX_TEXT` characters so a message stays well under
the 8 KiB that RFC 5425 §4.3.1 says receivers SHOULD accept (rsyslog's default maxMessageSize).
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import re
from dataclasses import replace
from urllib.parse import urlsplit

from lxml import etree

from hiem.audit.codes import (
    AuditSourceTypeCode,
    CodedEnum,
    CodedValue,
    HiemTransaction,
    NetworkAccessPointTypeCode,
    ParticipantObjectIDTypeCode,
    ParticipantObjectTypeCode,
    ParticipantObjectTypeCodeRole,
    RoleIDCode,
)
from hiem.audit.events import AuditEvent, AuditKind, ParticipantObject

__all__ = [
    "MAX_TEXT",
    "UNAUTHENTICATED_NOTE",
    "build_audit_message",
    "network_access_point_of",
    "participant_objects",
]

MAX_TEXT = 1024
UNAUTHENTICATED_NOTE = "UNAUTHENTICATED (hiem dev mode): identities in this record were not verified"
_Role = ParticipantObjectTypeCodeRole
_AUTH_DETAIL = ("hiem-auth", b"unauthenticated")
_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>'
# Everything outside the XML 1.0 Char production (control characters, lone surrogates, U+FFFE/FFFF).
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def build_audit_message(event: AuditEvent) -> bytes:
    """Return the UTF-8 AuditMessage for ``event``, on one line, with an XML declaration."""
    root = etree.Element("AuditMessage")
    identification = etree.SubElement(
        root,
        "EventIdentification",
        EventActionCode=event.kind.action.value,
        EventDateTime=event.occurred_at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        EventOutcomeIndicator=str(int(event.outcome)),
    )
    _coded(identification, "EventID", event.kind.event_id)
    for code in _event_type_codes(event):
        _coded(identification, "EventTypeCode", code)
    description = _outcome_description(event)
    if description is not None:
        etree.SubElement(identification, "EventOutcomeDescription").text = description

    for participant in (event.source, event.destination):
        _active_participant(
            root,
            participant.user_id,
            is_requestor=participant.is_requestor,
            role=participant.role,
            network_access_point=participant.network_access_point,
            alt_user_id=participant.alt_user_id,
            user_name=participant.user_name,
        )
    if event.saml_user is not None:
        # XUA (ITI TF-2 3.40.4.2): the human requestor is an ActiveParticipant of its own.
        _active_participant(root, event.saml_user, is_requestor=True, user_name=event.saml_user)
    if event.saml_org is not None:
        # IHE BALP records the user's organization as an agent of its own, not the requestor.
        _active_participant(root, event.saml_org, is_requestor=False, user_name=event.saml_org)

    source = etree.SubElement(root, "AuditSourceIdentification")
    if event.enterprise_site_id is not None:
        source.set("AuditEnterpriseSiteID", _clean(event.enterprise_site_id))
    source.set("AuditSourceID", _clean(event.audit_source_id))
    _coded(source, "AuditSourceTypeCode", AuditSourceTypeCode.APPLICATION_SERVER)

    for obj in participant_objects(event):
        _participant_object(root, obj)
    return _XML_DECLARATION + etree.tostring(root, encoding="UTF-8")


def participant_objects(event: AuditEvent) -> tuple[ParticipantObject, ...]:
    """The participant objects of ``event`` per the table in the module docstring."""
    objects: list[ParticipantObject] = []
    topic = _truncate(event.topic) if event.topic is not None else None
    if event.kind.is_subscription_event:
        if event.subscription_id is not None or topic is not None:
            objects.append(
                ParticipantObject(
                    object_id=event.subscription_id,
                    type_code=ParticipantObjectTypeCode.SYSTEM_OBJECT,
                    role=_Role.QUERY,
                    id_type=HiemTransaction.SUBSCRIBE,
                    name=None if topic is not None else event.subscription_id,
                    query=topic.encode("utf-8") if topic is not None else None,
                )
            )
        topic = None  # carried by the subscription's query
    elif event.subscription_id is not None:
        objects.append(_named(event.subscription_id, _Role.QUERY, HiemTransaction.SUBSCRIBE))
    if event.message_id is not None:
        objects.append(_named(event.message_id, _Role.REPORT, HiemTransaction.NOTIFY))
    if topic is not None:
        objects.append(_named(topic, _Role.ROUTING_CRITERIA, ParticipantObjectIDTypeCode.SEARCH_CRITERIA))
    if event.kind is AuditKind.SECURITY_ALERT:
        node = network_access_point_of(event.source.network_access_point)[0] or event.source.user_id
        description = _truncate(event.description) if event.description is not None else None
        details = (("Alert Description", description.encode("utf-8")),) if description else ()
        objects.append(
            ParticipantObject(
                object_id=node,
                type_code=ParticipantObjectTypeCode.SYSTEM_OBJECT,
                role=_Role.SECURITY_RESOURCE,
                id_type=ParticipantObjectIDTypeCode.NODE_ID,
                name=node,
                details=details,
            )
        )
    if event.unauthenticated and objects:
        objects[0] = replace(objects[0], details=(*objects[0].details, _AUTH_DETAIL))
    return tuple(objects)


def network_access_point_of(value: str | None) -> tuple[str | None, NetworkAccessPointTypeCode | None]:
    """Return (NetworkAccessPointID, type): 2 for an IP address, 1 for anything else (a machine name).

    A URL is reduced to its host first, since the attribute names a machine, not an endpoint.
    """
    if value is None:
        return None, None
    host = value.strip()
    if "://" in host:
        with contextlib.suppress(ValueError):  # a malformed URL stays as it is: the record matters more
            host = urlsplit(host).hostname or host
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host, NetworkAccessPointTypeCode.MACHINE_NAME
    return host, NetworkAccessPointTypeCode.IP_ADDRESS


def _event_type_codes(event: AuditEvent) -> tuple[CodedValue, ...]:
    first = event.kind.transaction or event.effective_alert_type
    assert first is not None  # every kind has a transaction, or is a security alert
    return (first, event.kind)


def _outcome_description(event: AuditEvent) -> str | None:
    parts = []
    if event.unauthenticated:
        parts.append(UNAUTHENTICATED_NOTE)
    if event.description is not None:
        parts.append(_truncate(event.description))
    return _clean("; ".join(parts)) if parts else None


def _named(value: str, role: ParticipantObjectTypeCodeRole, id_type: CodedEnum) -> ParticipantObject:
    return ParticipantObject(
        object_id=value,
        type_code=ParticipantObjectTypeCode.SYSTEM_OBJECT,
        role=role,
        id_type=id_type,
        name=value,
    )


def _active_participant(
    parent: etree._Element,
    user_id: str,
    *,
    is_requestor: bool,
    role: RoleIDCode | None = None,
    network_access_point: str | None = None,
    alt_user_id: str | None = None,
    user_name: str | None = None,
) -> None:
    element = etree.SubElement(parent, "ActiveParticipant", UserID=_clean(user_id))
    if alt_user_id is not None:
        element.set("AlternativeUserID", _clean(alt_user_id))
    if user_name is not None:
        element.set("UserName", _clean(user_name))
    element.set("UserIsRequestor", "true" if is_requestor else "false")
    nap_id, nap_type = network_access_point_of(network_access_point)
    if nap_id is not None and nap_type is not None:
        element.set("NetworkAccessPointID", _clean(nap_id))
        element.set("NetworkAccessPointTypeCode", nap_type.value)
    if role is not None:
        _coded(element, "RoleIDCode", role)


def _participant_object(parent: etree._Element, obj: ParticipantObject) -> None:
    element = etree.SubElement(parent, "ParticipantObjectIdentification")
    if obj.object_id is not None:
        element.set("ParticipantObjectID", _clean(obj.object_id))
    element.set("ParticipantObjectTypeCode", obj.type_code.value)
    element.set("ParticipantObjectTypeCodeRole", obj.role.value)
    _coded(element, "ParticipantObjectIDTypeCode", obj.id_type)
    if obj.name is not None:
        etree.SubElement(element, "ParticipantObjectName").text = _clean(obj.name)
    else:
        assert obj.query is not None
        etree.SubElement(element, "ParticipantObjectQuery").text = base64.b64encode(obj.query).decode("ascii")
    for detail_type, value in obj.details:
        etree.SubElement(
            element,
            "ParticipantObjectDetail",
            type=_clean(detail_type),
            value=base64.b64encode(value).decode("ascii"),
        )


def _coded(parent: etree._Element, tag: str, value: CodedValue) -> None:
    etree.SubElement(
        parent,
        tag,
        {"csd-code": value.code, "codeSystemName": value.system, "originalText": _clean(value.display)},
    )


def _clean(text: str) -> str:
    return _NOT_XML_CHAR.sub("\ufffd", text)


def _truncate(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "\u2026"
