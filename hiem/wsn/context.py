"""What the WS-N role handlers share: settings, the database and the way to hand work to the workers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from hiem.audit.trail import AuditTrail, Caller
from hiem.config import Settings
from hiem.soap import SoapFault, SoapRequest
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
    #: signs control messages the web process sends itself (endpoint checks); None = unsigned
    signer: Any = None

    @property
    def leases(self) -> LeasePolicy:
        return LeasePolicy.from_settings(self.settings.default_lease, self.settings.max_lease)

    def base_url(self, request_base_url: str) -> str:
        return self.settings.public_url or request_base_url

    def endpoint_url(self, request: SoapRequest, endpoint: str) -> str:
        return f"{self.base_url(request.base_url)}/wsn/{endpoint}"

    @staticmethod
    def caller(request: SoapRequest) -> Caller:
        """Who sent the request: the address, and the SAML subject and organization when verified."""
        result = request.security
        if result is None or not getattr(result, "authenticated", False):
            return Caller(address=request.remote_addr)
        return Caller(address=request.remote_addr, user=result.subject_name or result.subject_id,
                      organization=result.organization)

    def authorizing(self, request: SoapRequest) -> str | None:
        """The organization to authorize, or None when authorization does not apply (dev mode)."""
        if self.settings.dev:
            return None
        result = request.security
        organization = (result.organization_id or result.organization) if result is not None else None
        if not organization:
            raise SoapFault("the SAML assertion names no organization (NHIN organization-id attribute)",
                            security_alert=True)
        return organization
