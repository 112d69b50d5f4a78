"""Certificates named without being carried: KeyIdentifier and X509IssuerSerial references.

A SecurityTokenReference may name the signing certificate instead of pointing at a BinarySecurityToken
(X.509 Token Profile 1.1 §3.2): by its Subject Key Identifier, by the SHA-1 thumbprint of its DER bytes
(WS-Security 1.1), or by issuer name and serial number (ds:X509IssuerSerial, Apache WSS4J's default). The
certificate is then not in the message, so it can only be one hiem already has: a pinned signer or IdP
certificate, or the holder-of-key certificate of the verified assertion. Nothing outside that set is
ever looked up, so naming a certificate grants no trust of its own.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable

from cryptography import x509
from lxml import etree

from hiem import ns
from hiem.security._processor import cert_der, q, text_of

SKI = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509SubjectKeyIdentifier"
THUMBPRINT = "http://docs.oasis-open.org/wss/oasis-wss-soap-message-security-1.1#ThumbprintSHA1"
X509_VALUE_TYPES = frozenset({SKI, THUMBPRINT})

# Attribute type spellings that Java (X500Principal RFC 2253), OpenSSL and RFC 4514 use for the same OID.
_TYPE_ALIASES = {"E": "EMAILADDRESS", "1.2.840.113549.1.9.1": "EMAILADDRESS", "S": "ST", "2.5.4.8": "ST",
                 "2.5.4.3": "CN", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.6": "C", "2.5.4.7": "L",
                 "0.9.2342.19200300.100.1.25": "DC", "2.5.4.5": "SERIALNUMBER"}
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")


def subject_key_identifier(cert: x509.Certificate) -> bytes:
    """The SKI extension's value, or RFC 5280 §4.2.1.2 method (1) when the certificate has none."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def by_key_identifier(identifier: etree._Element, candidates: Iterable[x509.Certificate]) -> x509.Certificate | None:
    """The candidate a wsse:KeyIdentifier (SKI or ThumbprintSHA1) names, or None."""
    try:
        wanted = base64.b64decode("".join((text_of(identifier) or "").split()), validate=True)
    except binascii.Error:
        return None
    value_type = identifier.get("ValueType")
    for cert in candidates:
        if value_type == SKI and subject_key_identifier(cert) == wanted:
            return cert
        if value_type == THUMBPRINT and hashlib.sha1(cert_der(cert)).digest() == wanted:
            return cert
    return None


def by_issuer_serial(x509_data: etree._Element, candidates: Iterable[x509.Certificate]) -> x509.Certificate | None:
    """The candidate a ds:X509Data/ds:X509IssuerSerial names (serial number and issuer DN), or None."""
    issuer_serial = x509_data.find(q(ns.DS, "X509IssuerSerial"))
    if issuer_serial is None:
        return None
    issuer = text_of(issuer_serial.find(q(ns.DS, "X509IssuerName")))
    serial = text_of(issuer_serial.find(q(ns.DS, "X509SerialNumber")))
    if issuer is None or serial is None or not serial.isdigit():
        return None
    wanted_issuer = _normal_dn(issuer)
    for cert in candidates:
        if cert.serial_number == int(serial) and _normal_dn(cert.issuer.rfc4514_string()) == wanted_issuer:
            return cert
    return None


def _normal_dn(dn: str) -> tuple[tuple[str, str], ...]:
    """A DN string as sorted (TYPE, value) pairs: RFC 2253/4514 spellings of one name compare equal."""
    pairs = []
    for part in _UNESCAPED_COMMA.split(dn):
        attribute, _, value = part.partition("=")
        kind = attribute.strip().upper()
        pairs.append((_TYPE_ALIASES.get(kind, kind), value.strip()))
    return tuple(sorted(pairs))
