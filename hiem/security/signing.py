"""Outbound security: sign what the broker sends (WS-Security 1.1 SOAP Message Security, X.509 Token Profile).

HIEM v2.0 §3.1.1 and §3.1.3: a message the broker sends on its own behalf (a Notify to a consumer)
carries the NHIO "system" identity, a SAML assertion naming a system administrator, the organization,
the role "IT Professional" and a purpose of use (see ``devkeys.mint_assertion``). :class:`EnvelopeSigner`
adds, in one wsse:Security header (mustUnderstand in the envelope's own SOAP version):

* wsu:Timestamp with Created and Expires (``lifetime_seconds``);
* wsse:BinarySecurityToken with the broker's X.509 certificate;
* the broker's saml2:Assertion, when given (it is appended as is: its enveloped signature stays valid
  because it uses exclusive c14n, which ignores the new surrounding namespaces);
* ds:Signature (exclusive c14n, RSA-SHA256 or ECDSA-SHA256 by key type, SHA-256 digests, computed
  part by part: :mod:`hiem.security.xmldsig`) over the Body, the Timestamp and every other header block
  (WS-Addressing headers, reference parameters, ``hiem:Sequence``), each given a wsu:Id when it has none.
  Its KeyInfo is a SecurityTokenReference to the BinarySecurityToken.

That is exactly what :class:`~hiem.security.verifying.EnvelopeVerifier` demands, so a consumer trusting
the broker's certificate verifies the broker's messages (the round-trip tests prove it).

An assertion without ``<OneTimeUse>`` may ride on many messages while it is valid (receivers refuse a
repeated message, not a repeated holder-of-key assertion): :class:`hiem.security.setup.BrokerSigner`
mints the broker's once per validity window.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from lxml import etree

from hiem import ns, xmlsafe
from hiem.security._processor import (
    BASE64_BINARY,
    WSU_ID,
    X509_TOKEN,
    SoapParts,
    cert_der,
    children,
    format_instant,
    load_signing_key,
    q,
    repeated_id,
    soap_parts,
)
from hiem.security.xmldsig import XmlSigningKey, sign_detached


class EnvelopeSigner:
    """Signs SOAP 1.1/1.2 envelopes with one key, its certificate and, optionally, one SAML assertion."""

    def __init__(self, key_pem: bytes, cert_pem: bytes, assertion: bytes | None = None,
                 lifetime_seconds: float = 300) -> None:
        key = load_signing_key(key_pem)
        cert = x509.load_pem_x509_certificate(cert_pem)
        spki = (Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
            raise ValueError("EnvelopeSigner: the private key does not belong to the certificate")
        if assertion is not None and xmlsafe.parse(assertion).tag != q(ns.SAML2, "Assertion"):
            raise ValueError("EnvelopeSigner: the assertion is not a saml2:Assertion")
        if lifetime_seconds <= 0:
            raise ValueError("EnvelopeSigner: lifetime_seconds must be positive")
        self.key_pem, self.cert_pem, self.assertion = key_pem, cert_pem, assertion
        self.lifetime = timedelta(seconds=lifetime_seconds)
        self._cert = cert
        self._cert_b64 = base64.b64encode(cert_der(cert)).decode("ascii")
        self._xml_key = XmlSigningKey.from_pem(key_pem)

    def sign(self, envelope: etree._Element, assertion: etree._Element | None = None) -> etree._Element:
        """Add the wsse:Security header and sign; returns ``envelope`` itself, changed in place.

        ``assertion``: a saml2:Assertion element to carry instead of the signer's own (the broker passes a
        freshly minted one per message; the element is moved into the envelope).
        """
        parts = soap_parts(envelope)
        security = ensure_security(parts)
        if children(security, q(ns.DS, "Signature")) or children(security, q(ns.WSU, "Timestamp")):
            raise ValueError("the envelope is already signed")
        now = datetime.now(UTC)
        timestamp = etree.Element(q(ns.WSU, "Timestamp"), {WSU_ID: _new_id("TS")})
        etree.SubElement(timestamp, q(ns.WSU, "Created")).text = format_instant(now)
        etree.SubElement(timestamp, q(ns.WSU, "Expires")).text = format_instant(now + self.lifetime)
        token = etree.Element(_BST, {"EncodingType": BASE64_BINARY, "ValueType": X509_TOKEN, WSU_ID: _new_id("X509")})
        token.text = self._cert_b64
        security.insert(0, timestamp)
        security.insert(1, token)
        if assertion is None and self.assertion is not None:
            assertion = xmlsafe.parse(self.assertion)
        if assertion is not None:
            if assertion.tag != q(ns.SAML2, "Assertion"):
                raise ValueError("EnvelopeSigner: the assertion is not a saml2:Assertion")
            if children(security, q(ns.SAML2, "Assertion")):
                raise ValueError("the envelope already carries a SAML assertion")
            security.append(assertion)
        targets = self._targets(parts, timestamp)
        for element in targets:
            _ensure_id(element)
        repeated = repeated_id(envelope)  # a signature over an ambiguous id could cover the wrong element
        if repeated is not None:
            raise ValueError(f"the id {repeated!r} appears more than once in the message")
        self._signature(envelope, security, targets, _key_info(str(token.get(WSU_ID))))
        return envelope

    @staticmethod
    def _targets(parts: SoapParts, timestamp: etree._Element) -> list[etree._Element]:
        """What the signature covers: the Body, the Timestamp and every header block but wsse:Security.

        Every block, not only WS-Addressing's: a reference parameter (``nhin:SubscriptionId``) or
        ``hiem:Sequence`` left unsigned could be changed in transit to claim another subscription or
        another place in its stream without breaking the signature.
        """
        blocks = [block for block in parts.header_blocks if block.tag != q(ns.WSSE, "Security")]
        return [parts.body, timestamp, *blocks]

    def _signature(self, envelope: etree._Element, security: etree._Element, targets: list[etree._Element],
                   key_info: etree._Element) -> None:
        """Append the ds:Signature over ``targets`` (each with its wsu:Id) to ``security``."""
        sign_detached(envelope, security, targets, self._xml_key, key_info)


_BST = q(ns.WSSE, "BinarySecurityToken")


def ensure_security(parts: SoapParts) -> etree._Element:
    """The envelope's wsse:Security header, created (with SOAP Header and mustUnderstand) when missing."""
    header = parts.header
    if header is None:
        header = etree.Element(q(parts.soap_ns, "Header"))
        parts.envelope.insert(0, header)
    existing = [block for block in children(header) if block.tag == q(ns.WSSE, "Security")]
    if len(existing) > 1:
        raise ValueError("the envelope has more than one wsse:Security header")
    if existing:
        return existing[0]
    security = etree.Element(q(ns.WSSE, "Security"), nsmap={"wsse": ns.WSSE, "wsu": ns.WSU})
    # SOAP 1.1 §4.2.3 spells mustUnderstand "1"; SOAP 1.2 Part 1 §5.2.3 uses xs:boolean, "true".
    security.set(q(parts.soap_ns, "mustUnderstand"), "1" if parts.soap_ns == ns.SOAP11 else "true")
    header.insert(0, security)
    return security


def _ensure_id(element: etree._Element) -> str:
    existing = element.get(WSU_ID)
    if existing:
        return existing
    new = _new_id("id")
    element.set(WSU_ID, new)
    return new


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def _key_info(token_id: str) -> etree._Element:
    key_info = etree.Element(q(ns.DS, "KeyInfo"), nsmap={"ds": ns.DS})
    reference = etree.SubElement(etree.SubElement(key_info, q(ns.WSSE, "SecurityTokenReference"),
                                                  nsmap={"wsse": ns.WSSE}), q(ns.WSSE, "Reference"))
    reference.set("URI", f"#{token_id}")
    reference.set("ValueType", X509_TOKEN)
    return key_info
