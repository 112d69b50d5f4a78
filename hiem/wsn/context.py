"""What the WS-N role handlers share: settings, the database and the way to hand work to the workers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from hiem.audit.trail import AuditTrail, Caller
from hiem.config import Settings
from hiem.soap import SoapRequest
from hiem.store.db import Database
from hiem.wsn.leases import LeasePolicy


class Dispatcher(Protocol):
    """Hands committed work to the workers. Losing a call is allowed: the sweeper re-enqueues."""

    def fanout(self, notification_id: int) -> None: ...

    def deliver_in_order(self, delivery_ids: list[int]) -> None: ...


@dataclass(frozen=True)
class ServiceContext:
    settings: Settings
    db: Database
    dispatcher: Dispatcher
    audit: AuditTrail

    @property
    def leases(self) -> LeasePolicy:
        return LeasePolicy.from_settings(self.settings.default_lease, self.settings.max_lease)

    def base_url(self, request_base_url: str) -> str:
        return self.settings.public_url or request_base_url

    def endpoint_url(self, request: SoapRequest, endpoint: str) -> str:
        return f"{self.base_url(request.base_url)}/wsn/{endpoint}"

    @staticmethod
    def caller(request: SoapRequest) -> Caller:
        """Who sent the request. The security layer adds the SAML subject and organization here."""
        return Caller(address=request.remote_addr)
