"""The coded values hiem writes into DICOM PS3.15 A.5 audit messages, as Enums whose values are the codes.

Each coded Enum member is the ``csd-code``; it also carries its ``system`` (``codeSystemName``) and
``display`` (``originalText``), the three attributes every coded value in the A.5.1 schema requires.
Looking up an unknown code raises ValueError from the Enum itself.

Where the codes come from
-------------------------
* ``DCM``: DICOM PS3.16 CID 400 (Audit Event ID), CID 402 (Audit Active Participant Role ID),
  CID 403 (Security Alert Type), CID 404 (Audit Participant Object ID Type, DCM part).
* ``RFC-3881``: the participant object ID types RFC 3881 §5.5 defined and PS3.16 CID 404 keeps.
* The small integer enumerations (EventActionCode, EventOutcomeIndicator, NetworkAccessPointTypeCode,
  AuditSourceTypeCode, ParticipantObjectTypeCode, ParticipantObjectTypeCodeRole) are literal parts of the
  A.5.1 schema (``dicom2017c.xsd``); no other value validates.
* ``HIEM Transactions``: hiem's own code system for EventTypeCode, because HIEM v2.0 (NHIN) defines no
  audit codes of its own. It mirrors IHE's ``"IHE Transactions"`` convention (code = transaction name, as in
  ``EV("ITI-52", "IHE Transactions", "Document Metadata Subscribe")``) without borrowing IHE's namespace:
  HIEM is not DSUB, and an ITI-5x code would claim conformance to a profile hiem does not implement.

Why Subscribe and Unsubscribe are audited as DCM 110112 "Query"
----------------------------------------------------------------
HIEM v2.0 profiles WS-BaseNotification, exactly as IHE DSUB does. DSUB's Document Metadata Subscribe
[ITI-52] (which covers both Subscribe and Unsubscribe) is audited with EventID ``EV(110112, DCM, "Query")``,
EventActionCode ``E`` and EventTypeCode ``ITI-52``; its Notify [ITI-53] with ``EV(110106, DCM, "Export")``
and action ``R`` at the broker; Publish [ITI-54] with ``EV(110107, DCM, "Import")`` and action ``C``.
hiem follows the same pattern with its own EventTypeCodes: a subscription is a standing query that the
broker executes for the subscriber, so 110112/E is the closest DICOM event. The alternatives are worse:
110106/110107 describe data leaving or entering, not a request; 110100 "Application Activity" is for
application start/stop (CID 401 event types); 110114 "User Authentication" is for login/logout.
The expiry of a subscription (no client transaction) is recorded with the same event ID and the
``HIEM-SubscriptionEnd`` event type, after the WS-BaseNotification message that announces it.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Protocol

__all__ = [
    "DCM",
    "HIEM_AUDIT_EVENTS",
    "HIEM_TRANSACTIONS",
    "RFC_3881",
    "AuditSourceTypeCode",
    "CodedEnum",
    "CodedValue",
    "EventActionCode",
    "EventID",
    "EventOutcomeIndicator",
    "HiemTransaction",
    "NetworkAccessPointTypeCode",
    "ParticipantObjectIDTypeCode",
    "ParticipantObjectTypeCode",
    "ParticipantObjectTypeCodeRole",
    "RoleIDCode",
    "SecurityAlertType",
]

DCM = "DCM"
RFC_3881 = "RFC-3881"
HIEM_TRANSACTIONS = "HIEM Transactions"
#: hiem's second EventTypeCode system: which hiem event (AuditKind) a record is, see hiem.audit.events.
HIEM_AUDIT_EVENTS = "HIEM Audit Events"


class CodedValue(Protocol):
    """What the message builder needs from a coded value: csd-code, codeSystemName, originalText."""

    @property
    def code(self) -> str: ...

    @property
    def system(self) -> str: ...

    @property
    def display(self) -> str: ...


class CodedEnum(StrEnum):
    """Base for coded Enums: ``NAME = "code", "display"``; the value is the code alone.

    Subclasses say which code system they belong to by overriding ``system``.
    """

    display: str

    def __new__(cls, code: str, display: str) -> CodedEnum:
        member = str.__new__(cls, code)
        member._value_ = code
        member.display = display
        return member

    @property
    def code(self) -> str:
        return str(self.value)

    @property
    def system(self) -> str:  # pragma: no cover - every concrete subclass overrides it
        raise NotImplementedError


class _DcmCoded(CodedEnum):
    @property
    def system(self) -> str:
        return DCM


class EventID(_DcmCoded):
    """PS3.16 CID 400 Audit Event ID: the kind of event (A.5.3 defines the message for each)."""

    APPLICATION_ACTIVITY = "110100", "Application Activity"
    EXPORT = "110106", "Export"
    IMPORT = "110107", "Import"
    QUERY = "110112", "Query"
    SECURITY_ALERT = "110113", "Security Alert"
    USER_AUTHENTICATION = "110114", "User Authentication"


class RoleIDCode(_DcmCoded):
    """PS3.16 CID 402 Audit Active Participant Role ID."""

    APPLICATION = "110150", "Application"
    APPLICATION_LAUNCHER = "110151", "Application Launcher"
    DESTINATION = "110152", "Destination Role ID"
    SOURCE = "110153", "Source Role ID"
    DESTINATION_MEDIA = "110154", "Destination Media"
    SOURCE_MEDIA = "110155", "Source Media"


class SecurityAlertType(_DcmCoded):
    """PS3.16 CID 403 Security Alert Type: the EventTypeCode a Security Alert (A.5.3.11) must carry.

    hiem reports a message that failed TLS, WS-Security or SAML checks as NODE_AUTHENTICATION (the default),
    and an authenticated caller asking for something policy forbids as USE_OF_RESTRICTED_FUNCTION.
    """

    NODE_AUTHENTICATION = "110126", "Node Authentication"
    NETWORK_CONFIGURATION = "110128", "Network Configuration"
    SECURITY_CONFIGURATION = "110129", "Security Configuration"
    SOFTWARE_CONFIGURATION = "110131", "Software Configuration"
    USE_OF_RESTRICTED_FUNCTION = "110132", "Use of Restricted Function"
    AUDIT_RECORDING_STOPPED = "110133", "Audit Recording Stopped"
    AUDIT_RECORDING_STARTED = "110134", "Audit Recording Started"
    AUTHENTICATION_DECISION = "110143", "Authentication Decision"
    AUTHORIZATION_DECISION = "110144", "Authorization Decision"


class HiemTransaction(CodedEnum):
    """EventTypeCode for the HIEM v2.0 transaction an event belongs to (code system ``HIEM Transactions``).

    Also used as the ParticipantObjectIDTypeCode of the objects a transaction names (the subscription,
    the notification message), the way IHE audits use the transaction code for a query's ID type.
    """

    NOTIFY = "HIEM-Notify", "HIEM Notify"
    SUBSCRIBE = "HIEM-Subscribe", "HIEM Subscribe"
    UNSUBSCRIBE = "HIEM-Unsubscribe", "HIEM Unsubscribe"
    SUBSCRIPTION_END = "HIEM-SubscriptionEnd", "HIEM Subscription End"

    @property
    def system(self) -> str:
        return HIEM_TRANSACTIONS


class ParticipantObjectIDTypeCode(CodedEnum):
    """PS3.16 CID 404 Audit Participant Object ID Type (the RFC-3881 and DCM codes hiem uses)."""

    REPORT_NUMBER = "9", "Report Number"
    SEARCH_CRITERIA = "10", "Search Criteria"
    USER_IDENTIFIER = "11", "User Identifier"
    URI = "12", "URI"
    NODE_ID = "110182", "Node ID"

    @property
    def system(self) -> str:
        return DCM if self.value.startswith("110") else RFC_3881


class AuditSourceTypeCode(_DcmCoded):
    """A.5.1 AuditSourceTypeCode (from RFC 3881 §5.4); hiem is an application server process (4)."""

    END_USER_DISPLAY = "1", "End-user display device, diagnostic device"
    DATA_ACQUISITION = "2", "Data acquisition device or instrument"
    WEB_SERVER = "3", "Web Server process or thread"
    APPLICATION_SERVER = "4", "Application Server process or thread"
    DATABASE_SERVER = "5", "Database Server process or thread"
    SECURITY_SERVER = "6", "Security server, e.g., a domain controller"
    NETWORK_COMPONENT = "7", "ISO level 1-3 network component"
    OPERATING_SOFTWARE = "8", "ISO level 4-6 operating software"
    OTHER = "9", "other"


class EventActionCode(StrEnum):
    """A.5.1 EventActionCode: what was done to the objects of the event."""

    CREATE = "C"
    READ = "R"
    UPDATE = "U"
    DELETE = "D"
    EXECUTE = "E"


class EventOutcomeIndicator(IntEnum):
    """A.5.1 EventOutcomeIndicator. hiem's meaning of each failure level is in ``hiem.audit.events``."""

    SUCCESS = 0
    MINOR_FAILURE = 4
    SERIOUS_FAILURE = 8
    MAJOR_FAILURE = 12


class NetworkAccessPointTypeCode(StrEnum):
    """A.5.1 NetworkAccessPointTypeCode; IHE transactions use only 1 and 2."""

    MACHINE_NAME = "1"
    IP_ADDRESS = "2"
    TELEPHONE_NUMBER = "3"
    EMAIL_ADDRESS = "4"
    URI = "5"


class ParticipantObjectTypeCode(StrEnum):
    """A.5.1 ParticipantObjectTypeCode; everything hiem audits is a system object (2)."""

    PERSON = "1"
    SYSTEM_OBJECT = "2"
    ORGANIZATION = "3"
    OTHER = "4"


class ParticipantObjectTypeCodeRole(StrEnum):
    """A.5.1 ParticipantObjectTypeCodeRole (RFC 3881 §5.5.2): the role the object plays in the event."""

    PATIENT = "1"
    LOCATION = "2"
    REPORT = "3"
    RESOURCE = "4"
    MASTER_FILE = "5"
    USER = "6"
    LIST = "7"
    DOCTOR = "8"
    SUBSCRIBER = "9"
    GUARANTOR = "10"
    SECURITY_USER_ENTITY = "11"
    SECURITY_USER_GROUP = "12"
    SECURITY_RESOURCE = "13"
    SECURITY_GRANULARITY_DEFINITION = "14"
    PROVIDER = "15"
    DATA_DESTINATION = "16"
    DATA_ARCHIVE = "17"
    SCHEDULE = "18"
    CUSTOMER = "19"
    JOB = "20"
    JOB_STREAM = "21"
    TABLE = "22"
    ROUTING_CRITERIA = "23"
    QUERY = "24"
    DATA_SOURCE = "25"
    PROCESSING_ELEMENT = "26"
