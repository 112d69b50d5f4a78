"""Real keys, real assertions, real signed envelopes: the builders every hiem.security test uses.

Four parties, each a self-signed identity made by ``ensure_dev_identity``:

* ``idp``      the identity provider the broker trusts (issues assertions);
* ``client``   a gateway user's key, bound to assertions as the holder-of-key key;
* ``gateway``  a partner gateway that signs messages itself (sender-vouches, pinned as a signer);
* ``attacker`` a key nobody trusts.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from signxml import SignatureReference, XMLSigner, methods
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

from hiem import ns, xmlsafe
from hiem.security import (
    AlertType,
    DevIdentity,
    EnvelopeSigner,
    EnvelopeVerifier,
    FaultSubcode,
    MemoryNonceCache,
    SecurityError,
    SecurityPolicy,
    SecurityResult,
    ensure_dev_identity,
    mint_assertion,
    wrap_with_assertion,
)
from hiem.security._processor import WSU_ID

BROKER_URL = "https://hiem.example.org/wsn/NotificationBroker"
NOTIFY_ACTION = "http://docs.oasis-open.org/wsn/bw-2/NotificationConsumer/Notify"
AUDIENCE = "https://hiem.example.org/"


def build_envelope(version: str = ns.SOAP12, *, message_id: str | None = None, text: str = "lab result ready",
                   with_header: bool = True) -> etree._Element:
    """A HIEM Notify envelope with the WS-Addressing headers a publisher sends."""
    message_id = message_id or f"urn:uuid:{uuid.uuid4()}"
    header = (f"<s:Header><wsa:To>{BROKER_URL}</wsa:To><wsa:Action>{NOTIFY_ACTION}</wsa:Action>"
              f"<wsa:MessageID>{message_id}</wsa:MessageID></s:Header>") if with_header else ""
    xml = (f'<s:Envelope xmlns:s="{version}" xmlns:wsa="{ns.WSA}">{header}<s:Body>'
           f'<wsnt:Notify xmlns:wsnt="{ns.WSNT}"><wsnt:NotificationMessage><wsnt:Message>'
           f'<p xmlns="urn:example:payload">{text}</p></wsnt:Message></wsnt:NotificationMessage></wsnt:Notify>'
           "</s:Body></s:Envelope>")
    return xmlsafe.parse(xml.encode())


def wire(envelope: etree._Element) -> etree._Element:
    """Serialize and re-parse with the hardened parser, as the SOAP edge receives it."""
    return xmlsafe.parse(etree.tostring(envelope))


class _LegacySha1XMLSigner(XMLSigner):
    """signxml refuses to *make* SHA-1 signatures; a legacy peer still sends them, so the test makes one."""

    def check_deprecated_methods(self) -> None:
        return None


class Sha1EnvelopeSigner(EnvelopeSigner):
    """The broker's envelope layout, signed with RSA-SHA1 and SHA-1 digests by signxml."""

    def _signature(self, envelope: etree._Element, security: etree._Element, targets: list[etree._Element],
                   key_info: etree._Element) -> None:
        signer = _LegacySha1XMLSigner(method=methods.detached, signature_algorithm=SignatureMethod.RSA_SHA1,
                                      digest_algorithm=DigestAlgorithm.SHA1,
                                      c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0)
        references = [SignatureReference(URI=f"#{target.get(WSU_ID)}") for target in targets]
        security.append(signer.sign(envelope, key=self.key_pem, reference_uri=references, key_info=key_info))


def resign(assertion: etree._Element, identity: DevIdentity) -> bytes:
    """Sign an edited assertion again with ``identity``, as an IdP issuing that content would."""
    old = assertion.find(f"{{{ns.DS}}}Signature")
    assert old is not None
    assertion.replace(old, etree.Element(f"{{{ns.DS}}}Signature", Id="placeholder"))
    signer = XMLSigner(method=methods.enveloped, signature_algorithm=SignatureMethod.RSA_SHA256,
                       digest_algorithm=DigestAlgorithm.SHA256,
                       c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0)
    signed = signer.sign(assertion, key=identity.key_pem, cert=identity.cert_pem.decode(),
                         reference_uri=f"#{assertion.get('ID')}")
    return etree.tostring(signed)


@dataclass(frozen=True)
class Kit:
    idp: DevIdentity
    client: DevIdentity
    gateway: DevIdentity
    attacker: DevIdentity

    # The module-level builders, reachable from tests through the fixture (conftest is not importable).
    envelope = staticmethod(build_envelope)
    wire = staticmethod(wire)

    def resign(self, assertion: etree._Element, identity: DevIdentity | None = None) -> bytes:
        return resign(assertion, identity or self.idp)

    def sha1_signed(self, envelope: etree._Element, identity: DevIdentity | None = None) -> etree._Element:
        identity = identity or self.gateway
        return wire(Sha1EnvelopeSigner(identity.key_pem, identity.cert_pem).sign(envelope))

    def policy(self, **overrides: Any) -> SecurityPolicy:
        values: dict[str, Any] = {"trusted_idp_certs": (self.idp.cert_pem,),
                                  "trusted_signer_certs": (self.gateway.cert_pem,)}
        values.update(overrides)
        return SecurityPolicy(**values)

    def verifier(self, policy: SecurityPolicy | None = None, *, now: Callable[[], datetime] | None = None,
                 cache: MemoryNonceCache | None = None) -> EnvelopeVerifier:
        return EnvelopeVerifier(policy or self.policy(), cache or MemoryNonceCache(), now=now)

    def assertion(self, *, issuer_identity: DevIdentity | None = None, holder: DevIdentity | None = None,
                  sender_vouches: bool = False, **overrides: Any) -> bytes:
        """An NHIN assertion from the IdP; holder-of-key bound to ``holder`` (the client by default)."""
        issuer = issuer_identity or self.idp
        values: dict[str, Any] = {
            "key_pem": issuer.key_pem, "cert_pem": issuer.cert_pem, "issuer": "CN=Test IdP,O=Example HIO",
            "subject_id": "UID=jdoe,O=Example HIO", "subject_name": "Jane Doe", "organization": "Example HIO",
            "organization_id": "urn:oid:2.16.840.1.113883.3.42",
            "home_community_id": "urn:oid:2.16.840.1.113883.3.42.1",
            "lifetime_seconds": 3600,
            "subject_confirmation_cert_pem": None if sender_vouches else (holder or self.client).cert_pem,
        }
        values.update(overrides)
        return mint_assertion(**values)

    def message(self, assertion: bytes | None = None, *, signer: DevIdentity | None = None,
                envelope: etree._Element | None = None, sign: bool = True, **envelope_options: Any) -> etree._Element:
        """A signed envelope carrying ``assertion`` (a fresh HoK one by default), as received off the wire."""
        envelope = envelope if envelope is not None else build_envelope(**envelope_options)
        assertion = assertion if assertion is not None else self.assertion()
        identity = signer or self.client
        return wire(wrap_with_assertion(envelope, assertion,
                                        EnvelopeSigner(identity.key_pem, identity.cert_pem) if sign else None))

    def signed_without_assertion(self, signer: DevIdentity | None = None, **envelope_options: Any) -> etree._Element:
        identity = signer or self.gateway
        return wire(EnvelopeSigner(identity.key_pem, identity.cert_pem).sign(build_envelope(**envelope_options)))

    @staticmethod
    def refused(call: Callable[[], object], alert: AlertType, subcode: FaultSubcode, match: str) -> SecurityError:
        """Assert that ``call`` raises SecurityError matching ``match`` with this alert type and subcode."""
        with pytest.raises(SecurityError, match=match) as caught:
            call()
        assert caught.value.alert_type is alert, caught.value
        assert caught.value.subcode is subcode, caught.value
        return caught.value

    def accept(self, envelope: etree._Element, policy: SecurityPolicy | None = None, **options: Any) -> SecurityResult:
        return self.verifier(policy, **options).verify(envelope)


@pytest.fixture(scope="session")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    def identity(name: str) -> DevIdentity:
        return ensure_dev_identity(Path(tmp_path_factory.mktemp(name)), f"{name} test identity")

    return Kit(identity("idp"), identity("client"), identity("gateway"), identity("attacker"))


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)
