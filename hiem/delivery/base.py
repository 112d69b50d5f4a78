"""The delivery seam: one method, ``deliver(request) -> outcome``, shaped like httpx's BaseTransport.

Channels translate their library's exceptions into the :class:`hiem.errors.DeliveryError` tree (raised
``from`` the original). Whether an error is worth retrying is a property of its class
(``DeliveryError.retryable``), so the worker's retry policy is data, not a pile of except clauses, and
every channel shares it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class DeliveryRequest:
    """One fully built SOAP message for one consumer."""

    address: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    message_id: str = ""
    #: the IP address the outbound policy checked for the address's host: connect there and nowhere else,
    #: so a DNS answer that changes between check and connect (DNS rebinding) cannot redirect the POST
    connect_to: str | None = None


@dataclass(frozen=True)
class DeliveryOutcome:
    status_code: int
    elapsed_seconds: float


class DeliveryChannel(Protocol):
    def deliver(self, request: DeliveryRequest) -> DeliveryOutcome: ...

    def close(self) -> None: ...
