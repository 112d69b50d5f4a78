"""What hiem audits (HIEM v2.0 section 5), as plain frozen data the store can keep as JSON.

An :class:`AuditEvent` is written when something auditable happens (in the same transaction as the
change it describes), kept as JSON (:func:`event_to_json`), and turned into a DICOM PS3.15 A.5 message
(:func:`hiem.audit.message.build_audit_message`) only when it is shipped. Nothing here touches XML.

Event kinds and their codes (rationale in :mod:`hiem.audit.codes`)::

    AuditKind                 EventID          Action  EventTypeCode (HIEM Transactions)
    IMPORT                    110107 Import    C       HIEM-Notify           a Notify arrived
    EXPORT                    110106 Export    R       HIEM-Notify           a Notify was sent (or not)
    SUBSCRIBE_REQUESTED       110112 Query     E       HIEM-Subscribe        a Subscribe was sent or received,
                                                                             no decision recorded in it
    SUBSCRIBE_ACCEPTED        110112 Query     E       HIEM-Subscribe        a subscription was created
    SUBSCRIBE_REFUSED         110112 Query     E       HIEM-Subscribe        a Subscribe was refused
    SUBSCRIPTION_TERMINATED   110112 Query     E       HIEM-Unsubscribe      Unsubscribe, or an operator
    SUBSCRIPTION_EXPIRED      110112 Query     E       HIEM-SubscriptionEnd  termination time reached
    SECURITY_ALERT            110113 Security  E       CID 403 (alert_type)  a request failed security
                                     Alert

Every message also carries the kind itself as a second EventTypeCode in the ``HIEM Audit Events`` code
system (code = ``AuditKind`` value), so an audit repository can tell "requested" from "accepted" without
reading participant objects.

Outcomes (A.5.1 EventOutcomeIndicator) as hiem uses them:

* 0 success.
* 4 minor failure: the request was refused for the client's own reasons (bad topic, SOAP fault from the
  client side), or one delivery attempt of a Notify failed and will be retried.
* 8 serious failure: a Notify delivery was given up (dead). There is deliberately no DELIVERY_DEAD kind:
  a dead delivery is an EXPORT (data left, or failed to leave, hiem) whose outcome is 8 and whose
  ``description`` holds the last delivery error, which is how A.5.3.4 describes a failed export.
* 12 major failure: hiem itself could not do its job (database down, internal error).

For SECURITY_ALERT the levels follow A.5.3.11: 0 an informative alert, 4/8 the mitigation (refusing the
request) worked, 12 security may have been compromised.

Dev mode: ``unauthenticated=True`` marks a record made while hiem ran without authentication, so no
identity in it was verified. The message shows it twice: as a prefix of EventOutcomeDescription and as a
``ParticipantObjectDetail type="hiem-auth" value="unauthenticated"`` on the first participant object.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from hiem.audit.codes import (
    HIEM_AUDIT_EVENTS,
    CodedEnum,
    EventActionCode,
    EventID,
    EventOutcomeIndicator,
    HiemTransaction,
    ParticipantObjectTypeCode,
    ParticipantObjectTypeCodeRole,
    RoleIDCode,
    SecurityAlertType,
)

__all__ = [
    "JSON_VERSION",
    "AuditEvent",
    "AuditKind",
    "Participant",
    "ParticipantObject",
    "event_from_json",
    "event_to_json",
]

#: Bumped whenever the JSON layout changes; event_from_json refuses versions it does not know.
JSON_VERSION = 1


class AuditKind(CodedEnum):
    """What happened, from hiem's point of view. The value is the ``HIEM Audit Events`` code."""

    IMPORT = "notify-received", "Notify received"
    EXPORT = "notify-sent", "Notify sent"
    SUBSCRIBE_REQUESTED = "subscribe-requested", "Subscribe requested"
    SUBSCRIBE_ACCEPTED = "subscribe-accepted", "Subscribe accepted"
    SUBSCRIBE_REFUSED = "subscribe-refused", "Subscribe refused"
    SUBSCRIPTION_TERMINATED = "subscription-terminated", "Subscription terminated"
    SUBSCRIPTION_EXPIRED = "subscription-expired", "Subscription expired"
    SUBSCRIPTION_RENEWED = "subscription-renewed", "Subscription renewed"
    SECURITY_ALERT = "security-alert", "Security alert"

    @property
    def system(self) -> str:
        return HIEM_AUDIT_EVENTS

    @property
    def event_id(self) -> EventID:
        return _KIND_CODES[self][0]

    @property
    def action(self) -> EventActionCode:
        return _KIND_CODES[self][1]

    @property
    def transaction(self) -> HiemTransaction | None:
        """The HIEM transaction code, or None for a security alert (its type is a CID 403 code)."""
        return _KIND_CODES[self][2]

    @property
    def is_subscription_event(self) -> bool:
        return self.event_id is EventID.QUERY


_KIND_CODES: dict[AuditKind, tuple[EventID, EventActionCode, HiemTransaction | None]] = {
    AuditKind.IMPORT: (EventID.IMPORT, EventActionCode.CREATE, HiemTransaction.NOTIFY),
    AuditKind.EXPORT: (EventID.EXPORT, EventActionCode.READ, HiemTransaction.NOTIFY),
    AuditKind.SUBSCRIBE_REQUESTED: (EventID.QUERY, EventActionCode.EXECUTE, HiemTransaction.SUBSCRIBE),
    AuditKind.SUBSCRIBE_ACCEPTED: (EventID.QUERY, EventActionCode.EXECUTE, HiemTransaction.SUBSCRIBE),
    AuditKind.SUBSCRIBE_REFUSED: (EventID.QUERY, EventActionCode.EXECUTE, HiemTransaction.SUBSCRIBE),
    AuditKind.SUBSCRIPTION_TERMINATED: (EventID.QUERY, EventActionCode.EXECUTE, HiemTransaction.UNSUBSCRIBE),
    AuditKind.SUBSCRIPTION_RENEWED: (EventID.QUERY, EventActionCode.EXECUTE, HiemTransaction.SUBSCRIBE),
    AuditKind.SUBSCRIPTION_EXPIRED: (
        EventID.QUERY,
        EventActionCode.EXECUTE,
        HiemTransaction.SUBSCRIPTION_END,
    ),
    AuditKind.SECURITY_ALERT: (EventID.SECURITY_ALERT, EventActionCode.EXECUTE, None),
}


@dataclass(frozen=True)
class Participant:
    """One A.5.1 ActiveParticipant: a system (or person) taking part in the event.

    ``user_id`` is the endpoint as the transaction names it (for a SOAP exchange the WS-Addressing
    address, e.g. the consumer's EPR address or hiem's own endpoint URL). ``network_access_point`` is the
    host name or IP address of that system; a URL is accepted and reduced to its host in the message.
    ``is_requestor`` is True for the party that started the network exchange: the publisher on IMPORT,
    hiem on EXPORT, the subscriber on SUBSCRIBE_*, the offending client on SECURITY_ALERT. (DSUB's
    ITI-53 table marks the notification recipient as requestor instead; the flag is the caller's call.)
    """

    user_id: str
    network_access_point: str | None
    is_requestor: bool
    role: RoleIDCode
    alt_user_id: str | None = None
    user_name: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.user_id, str) or not self.user_id.strip():
            raise ValueError("Participant.user_id must be a non-empty string (A.5.1 UserID is required)")
        if not isinstance(self.role, RoleIDCode):
            raise TypeError(f"Participant.role must be a RoleIDCode, not {self.role!r}")
        for name in ("network_access_point", "alt_user_id", "user_name"):
            _blank_to_none(self, name)


@dataclass(frozen=True)
class ParticipantObject:
    """One A.5.1 ParticipantObjectIdentification, derived from an event by the message builder.

    Exactly one of ``name`` and ``query`` is set: DICOM CP-2399 (``dicom2024d.xsd``) requires one of
    ParticipantObjectName / ParticipantObjectQuery. ``details`` are (type, raw value) pairs; the message
    base64-encodes the value as the schema requires.
    """

    object_id: str | None
    type_code: ParticipantObjectTypeCode
    role: ParticipantObjectTypeCodeRole
    id_type: CodedEnum
    name: str | None = None
    query: bytes | None = None
    details: tuple[tuple[str, bytes], ...] = ()

    def __post_init__(self) -> None:
        if (self.name is None) == (self.query is None):
            raise ValueError("a ParticipantObject needs exactly one of name and query (DICOM CP-2399)")


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    """One auditable event. Optional text fields given as "" are stored as None.

    ``saml_user`` (the SAML subject) becomes a third ActiveParticipant with UserIsRequestor="true";
    ``saml_org`` (the subject's organization) a fourth one, as IHE BALP records the user's organization
    as an agent of its own. ``description`` (a fault reason, the last delivery error) goes into
    EventOutcomeDescription, which both schemas allow for every event. ``alert_type`` is only for
    SECURITY_ALERT and defaults to Node Authentication there.
    """

    kind: AuditKind
    outcome: EventOutcomeIndicator
    occurred_at: datetime
    source: Participant
    destination: Participant
    audit_source_id: str
    enterprise_site_id: str | None = None
    subscription_id: str | None = None
    topic: str | None = None
    message_id: str | None = None
    saml_user: str | None = None
    saml_org: str | None = None
    description: str | None = None
    unauthenticated: bool = False
    alert_type: SecurityAlertType | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kind, AuditKind):
            raise TypeError(f"AuditEvent.kind must be an AuditKind, not {self.kind!r}")
        if not isinstance(self.outcome, EventOutcomeIndicator):
            raise TypeError(f"AuditEvent.outcome must be an EventOutcomeIndicator, not {self.outcome!r}")
        if not isinstance(self.occurred_at, datetime) or self.occurred_at.utcoffset() is None:
            raise ValueError("AuditEvent.occurred_at must be a timezone-aware datetime")
        object.__setattr__(self, "occurred_at", self.occurred_at.astimezone(UTC))
        if not isinstance(self.source, Participant) or not isinstance(self.destination, Participant):
            raise TypeError("AuditEvent.source and destination must be Participant objects")
        if not isinstance(self.audit_source_id, str) or not self.audit_source_id.strip():
            raise ValueError("AuditEvent.audit_source_id must be a non-empty string")
        if self.alert_type is not None and self.kind is not AuditKind.SECURITY_ALERT:
            raise ValueError("AuditEvent.alert_type is only meaningful for SECURITY_ALERT")
        if not isinstance(self.unauthenticated, bool):
            raise TypeError("AuditEvent.unauthenticated must be a bool")
        for name in _OPTIONAL_TEXT:
            _blank_to_none(self, name)

    @property
    def effective_alert_type(self) -> SecurityAlertType | None:
        if self.kind is not AuditKind.SECURITY_ALERT:
            return None
        return self.alert_type or SecurityAlertType.NODE_AUTHENTICATION


_OPTIONAL_TEXT = (
    "enterprise_site_id",
    "subscription_id",
    "topic",
    "message_id",
    "saml_user",
    "saml_org",
    "description",
)


def _blank_to_none(obj: object, name: str) -> None:
    value = getattr(obj, name)
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{type(obj).__name__}.{name} must be a string or None, not {value!r}")
    if not value.strip():
        object.__setattr__(obj, name, None)


# --- JSON (for a database column) -------------------------------------------------------------------

_PARTICIPANT_KEYS = frozenset(f.name for f in fields(Participant))
_EVENT_KEYS = frozenset(f.name for f in fields(AuditEvent)) | {"v"}


def _participant_to_json(p: Participant) -> dict[str, Any]:
    return {
        "user_id": p.user_id,
        "network_access_point": p.network_access_point,
        "is_requestor": p.is_requestor,
        "role": p.role.value,
        "alt_user_id": p.alt_user_id,
        "user_name": p.user_name,
    }


def event_to_json(event: AuditEvent) -> dict[str, Any]:
    """Return a JSON-safe dict (str, int, bool, None only) that :func:`event_from_json` reads back."""
    data: dict[str, Any] = {
        "v": JSON_VERSION,
        "kind": event.kind.value,
        "outcome": int(event.outcome),
        "occurred_at": event.occurred_at.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "source": _participant_to_json(event.source),
        "destination": _participant_to_json(event.destination),
        "audit_source_id": event.audit_source_id,
        "unauthenticated": event.unauthenticated,
        "alert_type": event.alert_type.value if event.alert_type else None,
    }
    for name in _OPTIONAL_TEXT:
        data[name] = getattr(event, name)
    return data


def _participant_from_json(data: Any, where: str) -> Participant:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    unknown = set(data) - _PARTICIPANT_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    if not isinstance(data.get("is_requestor"), bool):
        raise ValueError(f"{where}.is_requestor must be true or false")
    return Participant(
        user_id=data["user_id"],
        network_access_point=data.get("network_access_point"),
        is_requestor=data["is_requestor"],
        role=RoleIDCode(data["role"]),
        alt_user_id=data.get("alt_user_id"),
        user_name=data.get("user_name"),
    )


def event_from_json(data: dict[str, Any]) -> AuditEvent:
    """Rebuild an AuditEvent from :func:`event_to_json` output; anything unexpected raises ValueError."""
    if not isinstance(data, dict):
        raise ValueError(f"audit event JSON must be an object, got {type(data).__name__}")
    if data.get("v") != JSON_VERSION:
        raise ValueError(f"unsupported audit event JSON version {data.get('v')!r} (expected {JSON_VERSION})")
    unknown = set(data) - _EVENT_KEYS
    if unknown:
        raise ValueError(f"audit event JSON has unknown keys {sorted(unknown)}")
    try:
        outcome = data["outcome"]
        if not isinstance(outcome, int) or isinstance(outcome, bool):
            raise ValueError(f"outcome must be an integer, got {outcome!r}")
        if not isinstance(data.get("unauthenticated"), bool):
            raise ValueError("unauthenticated must be true or false")
        alert_type = data.get("alert_type")
        return AuditEvent(
            kind=AuditKind(data["kind"]),
            outcome=EventOutcomeIndicator(outcome),
            occurred_at=datetime.fromisoformat(data["occurred_at"]),
            source=_participant_from_json(data["source"], "source"),
            destination=_participant_from_json(data["destination"], "destination"),
            audit_source_id=data["audit_source_id"],
            unauthenticated=data["unauthenticated"],
            alert_type=SecurityAlertType(alert_type) if alert_type is not None else None,
            **{name: data.get(name) for name in _OPTIONAL_TEXT},
        )
    except KeyError as exc:
        raise ValueError(f"audit event JSON lacks the key {exc.args[0]!r}") from exc
    except TypeError as exc:
        raise ValueError(f"audit event JSON has a value of the wrong type: {exc}") from exc
