"""The audit trail of the broker: which HIEM action produces which ATNA event (HIEM v2.0 §5).

==============================  ==========================================  ===========================
action                          event (kind, outcome)                       written in
==============================  ==========================================  ===========================
Notify received and recorded    IMPORT, success (one per NotificationMessage) the intake transaction
Notify refused with a fault     IMPORT, minor failure                       its own transaction
Notify delivered to a consumer  EXPORT, success                             the outcome transaction
delivery given up (dead)        EXPORT, serious failure + last error        the outcome transaction
Subscribe accepted              SUBSCRIBE_ACCEPTED, success                 the subscription's transaction
Subscribe refused with a fault  SUBSCRIBE_REFUSED, minor failure + reason   its own transaction
Unsubscribe                     SUBSCRIPTION_TERMINATED, success            the subscription's transaction
Unsubscribe refused             SUBSCRIPTION_TERMINATED, minor failure      its own transaction
security check failed           SECURITY_ALERT                              its own transaction
==============================  ==========================================  ===========================

Participants follow who opened the connection: the publisher or subscriber is the requesting source on
what hiem receives; hiem is the requesting source on the Notify it sends.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from hiem.audit.codes import EventOutcomeIndicator, RoleIDCode, SecurityAlertType
from hiem.audit.events import AuditEvent, AuditKind, Participant
from hiem.clock import utcnow
from hiem.config import Settings

Outcome = EventOutcomeIndicator


@dataclass(frozen=True)
class Caller:
    """Who sent a request, as far as hiem knows it (SAML fields once the security layer fills them)."""

    address: str | None
    user: str | None = None
    organization: str | None = None


class AuditTrail:
    """Builds the AuditEvents for broker actions from plain values (no XML, no database)."""

    def __init__(self, settings: Settings) -> None:
        self.source_id = settings.audit.source_id or "hiem"
        self.site = settings.audit.site or None
        self.unauthenticated = settings.dev

    def _event(self, kind: AuditKind, outcome: Outcome, source: Participant, destination: Participant,
               caller: Caller | None = None, **fields: object) -> AuditEvent:
        return AuditEvent(
            kind=kind, outcome=outcome, occurred_at=utcnow(), source=source, destination=destination,
            audit_source_id=self.source_id, enterprise_site_id=self.site,
            saml_user=caller.user if caller else None, saml_org=caller.organization if caller else None,
            unauthenticated=self.unauthenticated, **fields,  # type: ignore[arg-type]
        )

    @staticmethod
    def _requester(caller: Caller, role: RoleIDCode = RoleIDCode.SOURCE) -> Participant:
        address = caller.address or "unknown"
        return Participant(user_id=caller.user or address, network_access_point=caller.address,
                           is_requestor=True, role=role)

    @staticmethod
    def _hiem(endpoint_url: str, *, requestor: bool, role: RoleIDCode) -> Participant:
        return Participant(user_id=endpoint_url, network_access_point=urlsplit(endpoint_url).hostname,
                           is_requestor=requestor, role=role)

    def imported(self, caller: Caller, endpoint_url: str, *, topic: str | None, message_id: str | None,
                 outcome: Outcome = Outcome.SUCCESS, description: str | None = None) -> AuditEvent:
        return self._event(AuditKind.IMPORT, outcome, self._requester(caller),
                           self._hiem(endpoint_url, requestor=False, role=RoleIDCode.DESTINATION), caller,
                           topic=topic, message_id=message_id, description=description)

    def exported(self, manager_url: str, consumer_address: str, *, subscription_id: str, topic: str,
                 message_id: str, outcome: Outcome = Outcome.SUCCESS, description: str | None = None) -> AuditEvent:
        consumer = Participant(user_id=consumer_address, network_access_point=urlsplit(consumer_address).hostname,
                               is_requestor=False, role=RoleIDCode.DESTINATION)
        return self._event(AuditKind.EXPORT, outcome, self._hiem(manager_url, requestor=True, role=RoleIDCode.SOURCE),
                           consumer, subscription_id=subscription_id, topic=topic, message_id=message_id,
                           description=description)

    def subscription(self, kind: AuditKind, caller: Caller, endpoint_url: str, *, subscription_id: str | None,
                     topic: str | None, message_id: str | None, outcome: Outcome = Outcome.SUCCESS,
                     description: str | None = None) -> AuditEvent:
        return self._event(kind, outcome, self._requester(caller),
                           self._hiem(endpoint_url, requestor=False, role=RoleIDCode.DESTINATION), caller,
                           subscription_id=subscription_id, topic=topic, message_id=message_id,
                           description=description)

    def security_alert(self, caller: Caller, endpoint_url: str, *, reason: str,
                       alert_type: SecurityAlertType | None = None) -> AuditEvent:
        return self._event(AuditKind.SECURITY_ALERT, Outcome.MINOR_FAILURE, self._requester(caller),
                           self._hiem(endpoint_url, requestor=False, role=RoleIDCode.DESTINATION), caller,
                           description=reason, alert_type=alert_type)
