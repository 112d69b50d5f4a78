"""Building hiem's security objects from settings: the inbound policy and verifier, the outbound signer.

Production (no ``--dev``): every request must carry a SAML 2.0 assertion from a trusted IdP
(``HIEM_IDP_CERTS``) and, unless ``HIEM_REQUIRE_SIGNATURE=0``, a WS-Security signature; the broker signs
every Notify it sends with ``HIEM_SIGNING_KEY``/``HIEM_SIGNING_CERT`` and carries its own system assertion.
Dev mode builds a different *policy object* (nothing required, anything present still verified) and
a generated local identity (``hiem dev assertion`` mints assertions with it), never scattered ``if dev``.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lxml import etree

from hiem.config import Settings
from hiem.errors import ConfigError
from hiem.security import (
    AssertionMinter,
    EnvelopeSigner,
    EnvelopeVerifier,
    NonceCache,
    SecurityPolicy,
    ensure_dev_identity,
)


def _read_all(paths: tuple[str, ...], variable: str) -> tuple[bytes, ...]:
    out = []
    for path in paths:
        try:
            out.append(Path(path).read_bytes())
        except OSError as exc:
            raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror}") from None
    return tuple(out)


@dataclass(frozen=True)
class BrokerIdentity:
    key_pem: bytes
    cert_pem: bytes


def broker_identity(settings: Settings) -> BrokerIdentity:
    sec = settings.security
    if sec.signing_key and sec.signing_cert:
        key, cert = _read_all((sec.signing_key, sec.signing_cert), "HIEM_SIGNING_KEY/HIEM_SIGNING_CERT")
        return BrokerIdentity(key, cert)
    if settings.dev:
        dev = ensure_dev_identity(Path(sec.dev_dir))
        return BrokerIdentity(dev.key_pem, dev.cert_pem)
    raise ConfigError("HIEM_SIGNING_KEY and HIEM_SIGNING_CERT are required outside --dev (the broker signs "
                      "every Notify it sends)")


def inbound_policy(settings: Settings) -> SecurityPolicy:
    sec = settings.security
    idps = _read_all(sec.idp_certs, "HIEM_IDP_CERTS")
    signers = _read_all(sec.signer_certs, "HIEM_SIGNER_CERTS")
    if settings.dev:
        dev = broker_identity(settings)
        # the dev identity doubles as the local IdP of `hiem dev assertion`
        return SecurityPolicy.dev(trusted_idp_certs=(*idps, dev.cert_pem),
                                  trusted_signer_certs=(*signers, dev.cert_pem), clock_skew_seconds=sec.clock_skew)
    if not idps:
        raise ConfigError("HIEM_IDP_CERTS is required outside --dev: every HIEM message must carry a SAML "
                          "assertion from a trusted identity provider (HIEM v2.0 §3.1.1)")
    return SecurityPolicy(require_assertion=True, require_signature=sec.require_signature,
                          trusted_idp_certs=idps, trusted_signer_certs=signers, clock_skew_seconds=sec.clock_skew,
                          audience=sec.audience or None)


def make_verifier(settings: Settings, nonces: NonceCache) -> EnvelopeVerifier:
    return EnvelopeVerifier(inbound_policy(settings), nonces)


class BrokerSigner:
    """Signs each outgoing envelope with the broker's key and its system assertion (HIEM v2.0 §3.1.1: a
    system user, role code of the NHIN administrative/IT role).

    The assertion is holder-of-key on the broker's own certificate, without ``<OneTimeUse>``, so it may
    ride on many messages while valid (SAML 2.0 core §2.5.1.5): it is minted once per validity window and
    minted again once less than a fifth of its lifetime is left. Each message still gets its own
    Timestamp, MessageID and signature. Shared by sender threads.
    """

    #: mint again when less than this share of the assertion's lifetime remains
    RENEW_AT = 0.2

    def __init__(self, settings: Settings, identity: BrokerIdentity) -> None:
        self.settings = settings
        self.identity = identity
        self.issuer = settings.public_url or settings.audit.source_id or "hiem"
        sec = settings.security
        self._minter = AssertionMinter(
            key_pem=identity.key_pem, cert_pem=identity.cert_pem, issuer=self.issuer,
            subject_id=f"hiem-broker@{sec.organization}", subject_name="hiem broker (system)",
            organization=sec.organization, organization_id=sec.organization_id,
            home_community_id=sec.home_community_id, lifetime_seconds=sec.assertion_lifetime,
            subject_confirmation_cert_pem=identity.cert_pem,
        )
        self._signer = EnvelopeSigner(identity.key_pem, identity.cert_pem)
        self._lifetime = timedelta(seconds=sec.assertion_lifetime)
        self._lock = threading.Lock()
        self._current: tuple[etree._Element, datetime] | None = None

    def assertion(self, now: datetime | None = None) -> etree._Element:
        """The assertion for a message sent ``now``: the current one, or a new one near its expiry."""
        now = now or datetime.now(UTC)
        with self._lock:
            if self._current is None or now >= self._current[1] - self._lifetime * self.RENEW_AT:
                self._current = (self._minter.mint(not_before=now), now + self._lifetime)
            return copy.deepcopy(self._current[0])  # each envelope carries its own element

    def sign(self, envelope: etree._Element) -> etree._Element:
        return self._signer.sign(envelope, assertion=self.assertion())
