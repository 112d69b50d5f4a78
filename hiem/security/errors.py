"""The one exception the security layer raises, with what the SOAP edge and the audit trail need.

A refused message becomes a SOAP fault with code Sender (SOAP 1.2) or the subcode itself as faultcode
(SOAP 1.1), using the fault codes of WS-Security 1.1 SOAP Message Security §12 (``FaultSubcode``), and
an ATNA Security Alert whose kind is ``alert_type`` (``AlertType``). Which code goes with which
failure:

===========================================  ========================  ==============
failure                                      subcode                   alert_type
===========================================  ========================  ==============
no wsse:Security / assertion / signature     InvalidSecurity,          authentication
                                             FailedAuthentication
malformed or ambiguous Security header       InvalidSecurity           policy
assertion unsigned or malformed              InvalidSecurityToken      authentication
assertion signed by an untrusted key         FailedAuthentication      authentication
assertion expired / not yet valid            InvalidSecurityToken      expired
wsu:Timestamp expired, stale or future       MessageExpired            expired
message signature or digest does not verify  FailedCheck               signature
signature does not cover Body/Timestamp/WSA  FailedCheck               signature
algorithm not allowed (SHA-1, HMAC, ...)     UnsupportedAlgorithm      policy
audience / confirmation method / lifetime    FailedAuthentication      policy
assertion ID or MessageID seen before        InvalidSecurity           replay
===========================================  ========================  ==============

``reason`` is written for the client: it names what failed, never a key, a stack or a file path.
The underlying library exception (signxml, cryptography) is chained with ``from`` for the log.
"""

from __future__ import annotations

from enum import StrEnum

from hiem.errors import HiemError
from hiem.ns import WSSE, qname


class AlertType(StrEnum):
    """What kind of security failure happened; the audit layer maps it to a DICOM CID 403 code."""

    AUTHENTICATION = "authentication"
    SIGNATURE = "signature"
    REPLAY = "replay"
    EXPIRED = "expired"
    POLICY = "policy"


class FaultSubcode(StrEnum):
    """The WS-Security 1.1 (§12) fault codes, as Clark QNames in the wsse namespace."""

    UNSUPPORTED_SECURITY_TOKEN = qname(WSSE, "UnsupportedSecurityToken")
    UNSUPPORTED_ALGORITHM = qname(WSSE, "UnsupportedAlgorithm")
    INVALID_SECURITY = qname(WSSE, "InvalidSecurity")
    INVALID_SECURITY_TOKEN = qname(WSSE, "InvalidSecurityToken")
    FAILED_AUTHENTICATION = qname(WSSE, "FailedAuthentication")
    FAILED_CHECK = qname(WSSE, "FailedCheck")
    SECURITY_TOKEN_UNAVAILABLE = qname(WSSE, "SecurityTokenUnavailable")
    MESSAGE_EXPIRED = qname(WSSE, "MessageExpired")


class SecurityError(HiemError):
    """A message failed a security check. Always a client (Sender) fault, never retried as is."""

    def __init__(self, reason: str, *, alert_type: AlertType, subcode: FaultSubcode) -> None:
        super().__init__(reason)
        self.reason = reason
        self.alert_type = alert_type
        self.subcode = subcode

    def __repr__(self) -> str:
        return f"SecurityError({self.reason!r}, alert_type={self.alert_type.value!r}, subcode={self.subcode.value!r})"

    # Shorthands for the rows of the table above, so each check reads as one line.
    @classmethod
    def authentication(cls, reason: str, subcode: FaultSubcode = FaultSubcode.FAILED_AUTHENTICATION) -> SecurityError:
        return cls(reason, alert_type=AlertType.AUTHENTICATION, subcode=subcode)

    @classmethod
    def signature(cls, reason: str, subcode: FaultSubcode = FaultSubcode.FAILED_CHECK) -> SecurityError:
        return cls(reason, alert_type=AlertType.SIGNATURE, subcode=subcode)

    @classmethod
    def expired(cls, reason: str, subcode: FaultSubcode = FaultSubcode.MESSAGE_EXPIRED) -> SecurityError:
        return cls(reason, alert_type=AlertType.EXPIRED, subcode=subcode)

    @classmethod
    def replay(cls, reason: str) -> SecurityError:
        return cls(reason, alert_type=AlertType.REPLAY, subcode=FaultSubcode.INVALID_SECURITY)

    @classmethod
    def policy(cls, reason: str, subcode: FaultSubcode = FaultSubcode.INVALID_SECURITY) -> SecurityError:
        return cls(reason, alert_type=AlertType.POLICY, subcode=subcode)
