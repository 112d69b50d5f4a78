"""What signing and verifying share: SOAP structure, ids, instants, canonicalization, keys.

The role split follows signxml (signer / verifier / processor). Nothing here trusts its
input: ids are collected over the whole document so an ambiguous id is seen before any reference is
resolved (XML Signature Best Practices, "prevent signature wrapping"), and text is read as the XPath
string value, which skips comments. A comment is not signed under exclusive c14n, and lxml's ``.text``
stops at the first one, so reading ``.text`` would let a replayed message change what hiem reads
without breaking the signature.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key
from lxml import etree

from hiem import ns

HL7 = "urn:hl7-org:v3"
WSSE11 = "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
X509_TOKEN = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
BASE64_BINARY = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
SAML_ID = "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLID"
SAML2_TOKEN = "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0"
SOAP_VERSIONS = (ns.SOAP11, ns.SOAP12)
#: Attribute local names signxml (and most WS-Security stacks) resolve "#id" references against.
ID_LOCAL_NAMES = frozenset({"Id", "ID", "id"})
WSU_ID = ns.qname(ns.WSU, "Id")


def q(namespace: str, local: str) -> str:
    return ns.qname(namespace, local)


@dataclass(frozen=True)
class SoapParts:
    """The envelope, its SOAP namespace, its Header (if any) and its one Body."""

    envelope: etree._Element
    soap_ns: str
    header: etree._Element | None
    body: etree._Element

    @property
    def header_blocks(self) -> list[etree._Element]:
        return children(self.header) if self.header is not None else []

    def security_headers(self) -> list[etree._Element]:
        return [block for block in self.header_blocks if block.tag == q(ns.WSSE, "Security")]


def soap_parts(envelope: etree._Element) -> SoapParts:
    """Find Header and Body by the envelope's own namespace; ValueError if it is not a usable envelope."""
    tag = envelope.tag if isinstance(envelope.tag, str) else ""
    soap_ns = etree.QName(tag).namespace if tag else None
    if soap_ns not in SOAP_VERSIONS or etree.QName(tag).localname != "Envelope":
        raise ValueError("the document is not a SOAP 1.1 or SOAP 1.2 Envelope")
    assert soap_ns is not None
    headers = [child for child in children(envelope) if child.tag == q(soap_ns, "Header")]
    bodies = [child for child in children(envelope) if child.tag == q(soap_ns, "Body")]
    if len(headers) > 1 or len(bodies) != 1:
        raise ValueError("a SOAP Envelope has at most one Header and exactly one Body")
    return SoapParts(envelope, soap_ns, headers[0] if headers else None, bodies[0])


def children(parent: etree._Element, tag: str | None = None) -> list[etree._Element]:
    """Element children only (comments and processing instructions are skipped)."""
    return [child for child in parent if isinstance(child.tag, str) and (tag is None or child.tag == tag)]


_ID_ATTRIBUTES = etree.XPath("//@*[" + " or ".join(f"local-name()='{name}'" for name in sorted(ID_LOCAL_NAMES)) + "]")


def id_values(element: etree._Element) -> Iterator[str]:
    for name, value in element.attrib.items():
        if etree.QName(name).localname in ID_LOCAL_NAMES:
            yield value


def id_index(root: etree._Element) -> dict[str, etree._Element]:
    """Every id in the document mapped to its element; ValueError naming the first id seen twice."""
    index: dict[str, etree._Element] = {}
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        for value in id_values(element):
            if value in index:
                raise ValueError(f"the id {value!r} appears more than once in the message")
            index[value] = element
    return index


def repeated_id(root: etree._Element) -> str | None:
    """The first id value the document carries more than once, if any (one XPath pass, in C: cheaper
    than :func:`id_index` when only uniqueness matters, as for an envelope about to be signed)."""
    seen: set[str] = set()
    for value in _ID_ATTRIBUTES(root):
        if value in seen:
            return str(value)
        seen.add(value)
    return None


def text_of(element: etree._Element | None) -> str | None:
    """The element's XPath string value (all descendant text, comments excluded), stripped; None if empty."""
    if element is None:
        return None
    value = str(element.xpath("string()")).strip()
    return value or None


_INSTANT = re.compile(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", re.ASCII)
# Far enough from datetime's limits that adding skew, windows and offsets can never overflow.
_YEARS = range(1900, 9000)


def parse_instant(text: str | None) -> datetime:
    """An xs:dateTime with a time zone (WS-Security and SAML both require UTC); ValueError otherwise.

    Hand-parsed because .NET and Java stacks send up to 7 or 9 fractional digits, which
    ``datetime.fromisoformat`` on Python 3.11 does not take in every form.
    """
    match = _INSTANT.fullmatch((text or "").strip())
    if match is None:
        raise ValueError(f"{text!r} is not an xs:dateTime with a time zone")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    if year not in _YEARS:
        raise ValueError(f"{text!r} is not a plausible instant")
    micros = int((match.group(7) or "0")[:6].ljust(6, "0"))
    zone = match.group(8)
    moment = datetime(year, month, day, hour, minute, second, micros, tzinfo=UTC)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        moment -= sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    return moment


def format_instant(moment: datetime) -> str:
    """UTC, millisecond precision, "Z" suffix: the form every WS-Security and SAML stack reads."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def exclusive_c14n(element: etree._Element, inclusive_prefixes: list[str] | None = None) -> bytes:
    """Exclusive XML Canonicalization 1.0 without comments of one element, as a Reference digests it."""
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=False,
                          inclusive_ns_prefixes=inclusive_prefixes)


def cert_from_base64(text: str | None) -> x509.Certificate:
    """A DER certificate carried as base64 (BinarySecurityToken, ds:X509Certificate); ValueError if not."""
    try:
        der = base64.b64decode("".join((text or "").split()), validate=True)
    except binascii.Error as exc:
        raise ValueError("the certificate is not valid base64") from exc
    return x509.load_der_x509_certificate(der)


def cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(Encoding.PEM).decode("ascii")


def public_key_pem(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def subject_of(cert: x509.Certificate) -> str | None:
    """The subject DN (RFC 4514), or None when the certificate's name cannot be decoded."""
    try:
        return cert.subject.rfc4514_string()
    except ValueError:
        return None


def fingerprint(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pinned(cert: x509.Certificate, trusted: tuple[x509.Certificate, ...]) -> bool:
    """Certificate pinning: the very certificate (DER bytes), not merely one chaining to a trusted CA."""
    der = cert_der(cert)
    return any(cert_der(candidate) == der for candidate in trusted)


SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@functools.lru_cache(maxsize=16)
def load_signing_key(key_pem: bytes) -> SigningKey:
    """Load an unencrypted PEM RSA or EC private key; ValueError for anything else.

    Cached: loading an RSA key checks it thoroughly (tens of milliseconds), and the broker signs every
    outgoing message with the same one or two keys.
    """
    key = load_pem_private_key(key_pem, password=None)
    if not isinstance(key, SigningKey):
        raise ValueError("only RSA and EC private keys can sign")
    return key
