"""IHE ATNA auditing for HIEM v2.0 section 5: events, DICOM PS3.15 A.5 messages, syslog shipping.

:mod:`.trail` says which action gives which event; :mod:`.records` keeps each :class:`AuditEvent` as JSON
in ``audit_records`` (:func:`event_to_json`), in the transaction of the action; :mod:`.shipper`
builds the message (:func:`build_audit_message`), wraps it in RFC 5424 (:func:`format_rfc5424`) and sends
it with an :class:`AuditSender` (:class:`TlsSyslogSender` per RFC 5425, :class:`UdpSyslogSender` per
RFC 5426). Codes live in :mod:`hiem.audit.codes`; why each was chosen is written there and in
:mod:`hiem.audit.events`.
"""

from __future__ import annotations

from hiem.audit.events import AuditEvent, AuditKind, Participant, event_from_json, event_to_json
from hiem.audit.message import build_audit_message
from hiem.audit.syslog import AuditSender, TlsSyslogSender, UdpSyslogSender, format_rfc5424
from hiem.audit.validation import validate_audit_message

__all__ = [
    "AuditEvent",
    "AuditKind",
    "AuditSender",
    "Participant",
    "TlsSyslogSender",
    "UdpSyslogSender",
    "build_audit_message",
    "event_from_json",
    "event_to_json",
    "format_rfc5424",
    "validate_audit_message",
]
