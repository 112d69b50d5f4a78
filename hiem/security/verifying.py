"""Inbound security: verify a SOAP envelope and say, in one frozen result, what was proved and by whom.

HIEM v2.0 §3.1.1 puts NHIN Authorization Framework SAML assertions on every Subscribe, Unsubscribe
and Notify; WS-Security 1.1 SOAP Message Security carries them in a wsse:Security header together with
the XML signature that binds them to the message. :class:`EnvelopeVerifier` runs five small checks in
a fixed order (as zeep's ``wsse/compose.py`` chains its wsse objects), each able to refuse the message
with a :class:`~hiem.security.errors.SecurityError`:

1. ``SecurityHeaderCheck``   one wsse:Security when required; ids unique across the whole document
2. ``TimestampCheck``        wsu:Timestamp fresh (Created, Expires, freshness window, clock skew)
3. ``AssertionCheck``        saml2:Assertion signed by a pinned IdP, valid now, for us, confirmed
4. ``MessageSignatureCheck`` ds:Signature by the confirmation key or a pinned signer, covering the
                             Body, the Timestamp and every WS-Addressing header (wrapping-proof)
5. ``NonceCheck``           assertion ID and message ID never accepted twice; runs last, so a forged
                             copy can never "use up" the ID of the genuine message

Handlers read only the :class:`SecurityResult` ("see what is signed", signxml's advice): it names
the signed parts and the NHIN attributes taken from the signed assertion, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from lxml import etree

from hiem.security._assertion import AssertionCheck
from hiem.security._header import SecurityHeaderCheck, TimestampCheck
from hiem.security._inbound import Check, Inbound
from hiem.security._processor import soap_parts
from hiem.security._signature import MessageSignatureCheck
from hiem.security.errors import SecurityError
from hiem.security.nonces import NonceCache
from hiem.security.policy import BEARER, SecurityPolicy


@dataclass(frozen=True)
class SecurityResult:
    """What the security layer proved about one message (all None / empty when nothing was verified).

    ``subject_id`` is the assertion's NameID and ``subject_name`` its xspa subject-id attribute (the
    person's name, NHIN Authorization Framework); ``role`` and ``purpose_of_use`` are HL7 CE codes.
    ``signed_parts`` holds the Clark names of the signed elements (the Body, wsu:Timestamp, wsa:To ...),
    ``signer_subject`` the subject DN of the certificate that signed the message, when it was a
    certificate.
    """

    authenticated: bool = False
    subject_id: str | None = None
    subject_name: str | None = None
    organization: str | None = None
    organization_id: str | None = None
    home_community_id: str | None = None
    role: str | None = None
    purpose_of_use: str | None = None
    issuer: str | None = None
    assertion_id: str | None = None
    signed_parts: frozenset[str] = frozenset()
    signer_subject: str | None = None


class NonceCheck:
    """Refuse a message seen before (signer + signed wsa:MessageID, or its signature value), always; refuse
    an assertion seen before only when it may serve once.

    An assertion is single-use when it says so (``<OneTimeUse>``, SAML 2.0 core §2.5.1.5) or when it is a
    bearer assertion, which nothing binds to the message. A holder-of-key or sender-vouches assertion may
    ride on many messages within its validity window, as WS-Trust-issued tokens do: each message's own
    signature, Timestamp and signed MessageID make that message unrepeatable.
    """

    def __init__(self, cache: NonceCache) -> None:
        self.cache = cache

    def verify(self, inbound: Inbound) -> None:
        assertion = inbound.assertion
        if assertion is not None and (assertion.one_time_use or assertion.confirmation_method == BEARER):
            key = f"saml:{assertion.issuer}|{assertion.assertion_id}"
            if self.cache.seen(key, assertion.not_on_or_after + inbound.skew):
                raise SecurityError.replay(f"the SAML assertion {assertion.assertion_id} was already used")
        if inbound.message_nonce is not None:
            window = timedelta(seconds=inbound.policy.freshness_window_seconds)
            expires_at = inbound.fresh_until or inbound.now + window + inbound.skew
            if self.cache.seen(inbound.message_nonce, expires_at):
                raise SecurityError.replay("this message was already received (same signer and wsa:MessageID)")


class EnvelopeVerifier:
    """Verifies whole SOAP 1.1 or 1.2 envelopes against one :class:`SecurityPolicy`.

    ``now`` is injectable for tests and for verifying at a fixed instant; it must return an aware UTC
    datetime. One verifier is safe to share between threads (it keeps no per-message state).
    """

    def __init__(self, policy: SecurityPolicy, nonces: NonceCache,
                 now: Callable[[], datetime] | None = None) -> None:
        self.policy = policy
        self.nonces = nonces
        self._now = now or (lambda: datetime.now(UTC))
        self.checks: Sequence[Check] = (
            SecurityHeaderCheck(),
            TimestampCheck(),
            AssertionCheck(),
            MessageSignatureCheck(),
            NonceCheck(nonces),
        )

    def verify(self, envelope: etree._Element) -> SecurityResult:
        """Run every check; return what was proved, or raise SecurityError naming the first failure."""
        try:
            parts = soap_parts(envelope)
        except ValueError as exc:
            raise SecurityError.policy(str(exc)) from exc
        now = self._now()
        inbound = Inbound(parts, self.policy, now if now.tzinfo else now.replace(tzinfo=UTC))
        for check in self.checks:
            check.verify(inbound)
        return _result(inbound)


def _result(inbound: Inbound) -> SecurityResult:
    assertion = inbound.assertion
    common = {
        "authenticated": assertion is not None or inbound.signer_pinned,
        "signed_parts": frozenset(str(element.tag) for element in inbound.signed),
        "signer_subject": inbound.signer_subject,
    }
    if assertion is None:
        return SecurityResult(**common)  # type: ignore[arg-type]
    return SecurityResult(
        subject_id=assertion.subject_id, subject_name=assertion.subject_name, organization=assertion.organization,
        organization_id=assertion.organization_id, home_community_id=assertion.home_community_id,
        role=assertion.role, purpose_of_use=assertion.purpose_of_use, issuer=assertion.issuer,
        assertion_id=assertion.assertion_id, **common,  # type: ignore[arg-type]
    )
