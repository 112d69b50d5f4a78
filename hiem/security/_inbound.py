"""The state one inbound message accumulates as the checks run, and the helpers the checks share.

Each check (``_header``, ``_assertion``, ``_signature`` and the nonce check in ``verifying``) reads
what the earlier ones established from :class:`Inbound` and adds what it proved. Nothing here is
public: callers only ever see the frozen ``SecurityResult`` built at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

import cryptography.exceptions
from cryptography import x509
from lxml import etree
from signxml import SignatureConfiguration
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature, SignXMLException

from hiem import ns
from hiem.security._processor import SoapParts, children, q
from hiem.security.errors import FaultSubcode, SecurityError
from hiem.security.policy import SecurityPolicy

T = TypeVar("T")


@dataclass(frozen=True)
class VerifiedAssertion:
    """What a verified saml2:Assertion says, read from the signed (canonical) copy only."""

    issuer: str
    assertion_id: str
    not_on_or_after: datetime
    confirmation_method: str
    #: Holder-of-key: the confirmation key as a certificate, or as a ds:KeyValue element.
    hok_cert: x509.Certificate | None = None
    hok_key_value: etree._Element | None = None
    subject_id: str | None = None
    subject_name: str | None = None
    organization: str | None = None
    organization_id: str | None = None
    home_community_id: str | None = None
    role: str | None = None
    purpose_of_use: str | None = None
    #: carries ``<saml2:OneTimeUse>`` (SAML 2.0 core §2.5.1.5): one message only
    one_time_use: bool = False


@dataclass
class Inbound:
    """One message under verification (mutable; private to the verifier)."""

    parts: SoapParts
    policy: SecurityPolicy
    now: datetime
    #: True once a wsse:Security header is to be verified (required, or present and verify_if_present).
    active: bool = False
    security: etree._Element | None = None
    ids: dict[str, etree._Element] = field(default_factory=dict)
    timestamp: etree._Element | None = None
    #: Until when the wsu:Timestamp keeps the message acceptable (skew included).
    fresh_until: datetime | None = None
    assertion_element: etree._Element | None = None
    assertion: VerifiedAssertion | None = None
    signed: list[etree._Element] = field(default_factory=list)
    signature_key: bytes | None = None
    signer_pinned: bool = False
    signer_subject: str | None = None
    message_nonce: str | None = None

    @property
    def skew(self) -> timedelta:
        return timedelta(seconds=self.policy.clock_skew_seconds)

    def is_signed(self, element: etree._Element) -> bool:
        return any(candidate is element for candidate in self.signed)

    def one_child(self, parent: etree._Element, tag: str, what: str) -> etree._Element | None:
        """The single child ``tag`` of ``parent``, None if absent; more than one is refused as ambiguous."""
        found = children(parent, tag)
        if len(found) > 1:
            raise SecurityError.policy(f"more than one {what} in the message")
        return found[0] if found else None


class Check(Protocol):
    """One inbound check, composed in order by the verifier (zeep ``wsse/compose.py`` style)."""

    def verify(self, inbound: Inbound) -> None: ...


def check_algorithms(signature: etree._Element, policy: SecurityPolicy, what: str) -> list[etree._Element]:
    """Refuse any SignatureMethod or DigestMethod the policy does not allow; return the References.

    signxml enforces the same sets, but checking here first gives the client the precise WS-Security
    fault (UnsupportedAlgorithm) instead of a generic verification failure.
    """
    signed_info = children(signature, q(ns.DS, "SignedInfo"))
    if len(signed_info) != 1:
        raise SecurityError.signature(f"the {what} has no single ds:SignedInfo")
    method = children(signed_info[0], q(ns.DS, "SignatureMethod"))
    algorithm = method[0].get("Algorithm") if len(method) == 1 else None
    if algorithm not in policy.signature_algorithms:
        raise SecurityError.policy(f"the {what} uses a signature algorithm that is not allowed: {algorithm}",
                                   FaultSubcode.UNSUPPORTED_ALGORITHM)
    references = children(signed_info[0], q(ns.DS, "Reference"))
    if not references:
        raise SecurityError.signature(f"the {what} has no ds:Reference")
    for reference in references:
        digest = children(reference, q(ns.DS, "DigestMethod"))
        algorithm = digest[0].get("Algorithm") if len(digest) == 1 else None
        if algorithm not in policy.digest_algorithms:
            raise SecurityError.policy(f"the {what} uses a digest algorithm that is not allowed: {algorithm}",
                                       FaultSubcode.UNSUPPORTED_ALGORITHM)
    return references


def signature_configuration(inbound: Inbound, **options: Any) -> SignatureConfiguration:
    """signxml's expectations from the policy: allowed algorithms, certificates checked at ``now``."""
    return SignatureConfiguration(
        signature_methods=frozenset(SignatureMethod(uri) for uri in inbound.policy.signature_algorithms),
        digest_algorithms=frozenset(DigestAlgorithm(uri) for uri in inbound.policy.digest_algorithms),
        verification_time=inbound.now,
        **options,
    )


# signxml walks attacker-controlled XML with plain attribute and dict access: a missing SignatureValue
# text, an unknown curve URI or a truncated base64 surfaces as TypeError/KeyError/ValueError rather than
# as one of its own exceptions. Any of them means "this signature cannot be verified", so all of them
# are refused; the original exception stays chained for the log.
_MALFORMED = (SignXMLException, etree.LxmlError, cryptography.exceptions.UnsupportedAlgorithm,
              ValueError, TypeError, KeyError, IndexError, AttributeError)


def call_signxml(verify: Callable[[], T], failure: Callable[[str], SecurityError], what: str) -> T:
    """Run a signxml verification and turn every way it can fail into one precise SecurityError."""
    try:
        return verify()
    except InvalidDigest as exc:
        raise failure(f"the {what} does not match the signed content (digest mismatch)") from exc
    except InvalidCertificate as exc:
        raise failure(f"the {what} was made with a certificate that is expired or not yet valid") from exc
    except (InvalidSignature, cryptography.exceptions.InvalidSignature) as exc:
        raise failure(f"the {what} value does not verify") from exc
    except InvalidInput as exc:
        raise failure(f"the {what} is malformed: {str(exc)[:160]}") from exc
    except etree.DocumentInvalid as exc:
        raise failure(f"the {what} does not follow the XML Signature schema") from exc
    except _MALFORMED as exc:
        raise failure(f"the {what} is malformed") from exc
