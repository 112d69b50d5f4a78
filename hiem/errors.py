"""The root of every error hiem raises on purpose, and the errors that never travel as SOAP faults.

::

    HiemError
     +-- ConfigError                 a HIEM_* variable is missing or malformed
     +-- XmlRejected                 hostile or malformed XML refused by the hardened parser
     +-- DeliveryError               one delivery attempt failed (hiem.delivery)
     |    +-- DeliveryTimeout         connect/read timeout            (retryable)
     |    +-- ConsumerUnreachable     refused, reset, DNS failure     (retryable)
     |    +-- ConsumerUnavailable     5xx, 408, 429                   (retryable)
     |    |    +-- ConsumerBusy        SOAP Receiver/Server fault      (retryable)
     |    +-- ConsumerRejected        other 4xx                       (final)
     |    +-- ConsumerFault           the consumer answered a SOAP fault (final)
     |    +-- DeliveryRefused         the address is not allowed by policy (final)
     +-- AuditShipError              the audit repository could not take a record (retryable)
     +-- WsnFault (hiem.wsn.faults)  everything that goes back to a client as a WS-N fault
"""

from __future__ import annotations


class HiemError(Exception):
    """Root of hiem's own exceptions."""


class ConfigError(HiemError, ValueError):
    """A configuration variable is missing or cannot be read; the message names the variable."""


class XmlRejected(HiemError, ValueError):
    """The hardened parser refused a document (DTD, entity, too big, too deep, not well-formed)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DeliveryError(HiemError):
    """One delivery attempt failed. ``retryable`` says whether trying again can help."""

    retryable = True

    def __init__(self, message: str, *, status_code: int | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class DeliveryTimeout(DeliveryError):
    """The consumer did not accept the connection or answer within the configured timeout."""


class ConsumerUnreachable(DeliveryError):
    """Connection refused or reset, or the consumer's host name did not resolve."""


class ConsumerUnavailable(DeliveryError):
    """The consumer answered 5xx, 408 or 429: it exists but cannot take the message now."""


class ConsumerBusy(ConsumerUnavailable):
    """The consumer answered a SOAP Receiver (1.2) or Server (1.1) fault: the trouble is on its side, and
    the SOAP specifications say the same message may succeed later."""


class ConsumerRejected(DeliveryError):
    """The consumer answered a 4xx other than 408/429: sending the same bytes again will not help."""

    retryable = False


class ConsumerFault(DeliveryError):
    """The consumer answered a SOAP fault that blames the message (Sender/Client, MustUnderstand,
    VersionMismatch): sending the same message again cannot help."""

    retryable = False


class DeliveryRefused(DeliveryError):
    """The consumer address is not allowed by the outbound address policy (SSRF protection)."""

    retryable = False


class AuditShipError(HiemError):
    """The Audit Record Repository could not be reached or refused a record; records wait and retry."""
