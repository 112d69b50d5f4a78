"""A development identity and NHIN-shaped SAML assertions, for ``--dev``, clients and tests.

:func:`ensure_dev_identity` makes (once) a self-signed RSA-2048 certificate the broker can sign with
and pin, so a dev broker can exercise the whole security path without a PKI.

:func:`mint_assertion` issues a signed SAML 2.0 assertion shaped by the NHIN Authorization Framework:

* NameID = ``subject_id``; AttributeStatement with xspa subject-id (the person's name),
  subject:organization, subject:organization-id, ``urn:nhin:names:saml:homeCommunityId``, xacml
  subject:role and xspa subject:purposeofuse, the last two as HL7 CE elements (``urn:hl7-org:v3``);
* role: SNOMED CT (2.16.840.1.113883.6.96). HIEM v2.0 §3.1.3 asks for a user role of "IT Professional"
  for system messages, but the NHIN User Role value set (SNOMED CT, Authorization Framework) has no
  concept by that name; its nearest member is 224608005 "Administrative healthcare staff", the code
  the CONNECT reference gateway sends for administrative users, and the default here;
* purpose of use: code system 2.16.840.1.113883.3.18.7.1 ("nhin-purpose"), default OPERATIONS;
* subject confirmation: holder-of-key with the given certificate in SubjectConfirmationData/ds:KeyInfo
  when ``subject_confirmation_cert_pem`` is passed, sender-vouches otherwise;
* an enveloped ds:Signature (exclusive c14n, RSA/ECDSA-SHA256, the certificate in KeyInfo/X509Data),
  made by libxmlsec1 (:mod:`hiem.security.xmldsig`) and placed right after Issuer as SAML 2.0 core
  §5.4.1 requires.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import fcntl
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from lxml import etree

from hiem import ns, xmlsafe
from hiem.security._processor import HL7, cert_der, format_instant, q, soap_parts
from hiem.security.policy import HOLDER_OF_KEY, SENDER_VOUCHES
from hiem.security.signing import EnvelopeSigner, ensure_security
from hiem.security.xmldsig import XmlSigningKey, sign_enveloped

ROLE_CODE_SYSTEM = "2.16.840.1.113883.6.96"
PURPOSE_CODE_SYSTEM = "2.16.840.1.113883.3.18.7.1"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_KEY_FILE, _CERT_FILE = "hiem-dev-key.pem", "hiem-dev-cert.pem"


@dataclass(frozen=True)
class DevIdentity:
    """A private key and its self-signed certificate (PEM), and where they live."""

    key_pem: bytes
    cert_pem: bytes
    key_path: Path
    cert_path: Path


def ensure_dev_identity(directory: Path, common_name: str = "hiem development broker") -> DevIdentity:
    """Load the dev identity from ``directory``, creating it first if missing or about to expire.

    The key file is written with mode 0600 and never rewritten while valid; a lock file keeps two
    processes starting together from writing two different pairs.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_path, cert_path = directory / _KEY_FILE, directory / _CERT_FILE
    with _locked(directory / ".hiem-dev-identity.lock"):
        if key_path.exists() and cert_path.exists():
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            if cert.not_valid_after_utc - datetime.now(UTC) > timedelta(days=1):
                return DevIdentity(key_path.read_bytes(), cert_path.read_bytes(), key_path, cert_path)
        key_pem, cert_pem = self_signed_identity(common_name)
        _write(key_path, key_pem, 0o600)
        _write(cert_path, cert_pem, 0o644)
    return DevIdentity(key_pem, cert_pem, key_path, cert_path)


def mint_assertion(*, key_pem: bytes, cert_pem: bytes, issuer: str, subject_id: str, organization: str,
                   organization_id: str, home_community_id: str, role_code: str = "224608005",
                   purpose_of_use: str = "OPERATIONS", audience: str | None = None, lifetime_seconds: float = 300,
                   not_before: datetime | None = None, assertion_id: str | None = None,
                   subject_confirmation_cert_pem: bytes | None = None, subject_name: str | None = None,
                   one_time_use: bool = False) -> bytes:
    """Issue a signed NHIN-style saml2:Assertion (see the module docstring); returns its bytes."""
    minter = AssertionMinter(
        key_pem=key_pem, cert_pem=cert_pem, issuer=issuer, subject_id=subject_id, organization=organization,
        organization_id=organization_id, home_community_id=home_community_id, role_code=role_code,
        purpose_of_use=purpose_of_use, audience=audience, lifetime_seconds=lifetime_seconds,
        subject_confirmation_cert_pem=subject_confirmation_cert_pem, subject_name=subject_name,
        one_time_use=one_time_use)
    return etree.tostring(minter.mint(not_before=not_before, assertion_id=assertion_id))


class AssertionMinter:
    """Issues assertions about one subject that differ only in their ID and times.

    Why a class: the broker mints its system assertion again every validity window, and everything but the
    ID and the instants is the same every time. The fixed content is built, and the key and certificate
    are loaded, once; each :meth:`mint` copies the template and signs it.
    Safe to share between threads (nothing is mutated after ``__init__``).
    """

    def __init__(self, *, key_pem: bytes, cert_pem: bytes, issuer: str, subject_id: str, organization: str,
                 organization_id: str, home_community_id: str, role_code: str = "224608005",
                 purpose_of_use: str = "OPERATIONS", audience: str | None = None, lifetime_seconds: float = 300,
                 subject_confirmation_cert_pem: bytes | None = None, subject_name: str | None = None,
                 one_time_use: bool = False) -> None:
        self._key = XmlSigningKey.from_pem(key_pem, cert_pem)
        self._lifetime = timedelta(seconds=lifetime_seconds)
        assertion = _element(None, "Assertion", {"ID": "", "Version": "2.0", "IssueInstant": ""})
        _element(assertion, "Issuer").text = issuer
        subject = _element(assertion, "Subject")
        _element(subject, "NameID", {"Format": _name_format(subject_id)}).text = subject_id
        method = HOLDER_OF_KEY if subject_confirmation_cert_pem is not None else SENDER_VOUCHES
        confirmation = _element(subject, "SubjectConfirmation", {"Method": method})
        if subject_confirmation_cert_pem is not None:
            data = _element(confirmation, "SubjectConfirmationData",
                            {q(_XSI, "type"): "saml2:KeyInfoConfirmationDataType"})
            x509_data = etree.SubElement(etree.SubElement(data, q(ns.DS, "KeyInfo")), q(ns.DS, "X509Data"))
            hok_cert = x509.load_pem_x509_certificate(subject_confirmation_cert_pem)
            etree.SubElement(x509_data, q(ns.DS, "X509Certificate")).text = \
                base64.b64encode(cert_der(hok_cert)).decode()
        conditions = _element(assertion, "Conditions", {"NotBefore": "", "NotOnOrAfter": ""})
        if audience is not None:
            _element(_element(conditions, "AudienceRestriction"), "Audience").text = audience
        if one_time_use:
            _element(conditions, "OneTimeUse")
        authn = _element(assertion, "AuthnStatement", {"AuthnInstant": ""})
        _element(_element(authn, "AuthnContext"), "AuthnContextClassRef").text = (
            "urn:oasis:names:tc:SAML:2.0:ac:classes:X509")
        statement = _element(assertion, "AttributeStatement")
        for name, value in (("urn:oasis:names:tc:xspa:1.0:subject:subject-id", subject_name or subject_id),
                            ("urn:oasis:names:tc:xspa:1.0:subject:organization", organization),
                            ("urn:oasis:names:tc:xspa:1.0:subject:organization-id", organization_id),
                            ("urn:nhin:names:saml:homeCommunityId", home_community_id)):
            _attribute(statement, name).text = value
        _coded(_attribute(statement, "urn:oasis:names:tc:xacml:2.0:subject:role"), "Role", role_code,
               ROLE_CODE_SYSTEM, "SNOMED_CT", "Administrative healthcare staff" if role_code == "224608005" else None)
        _coded(_attribute(statement, "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"), "PurposeOfUse",
               purpose_of_use, PURPOSE_CODE_SYSTEM, "nhin-purpose", None)
        self._template = assertion

    def mint(self, *, not_before: datetime | None = None, assertion_id: str | None = None) -> etree._Element:
        """A freshly signed assertion (a new element each time), valid from ``not_before`` (now)."""
        start = not_before or datetime.now(UTC)
        instant = format_instant(start)
        assertion = copy.deepcopy(self._template)
        assertion.set("ID", assertion_id or f"_{uuid.uuid4().hex}")
        assertion.set("IssueInstant", instant)
        conditions = assertion.find(q(ns.SAML2, "Conditions"))
        conditions.set("NotBefore", instant)
        conditions.set("NotOnOrAfter", format_instant(start + self._lifetime))
        assertion.find(q(ns.SAML2, "AuthnStatement")).set("AuthnInstant", instant)
        sign_enveloped(assertion, assertion.find(q(ns.SAML2, "Issuer")), self._key)
        return assertion


def wrap_with_assertion(envelope: etree._Element, assertion_bytes: bytes,
                        signer: EnvelopeSigner | None) -> etree._Element:
    """Put ``assertion_bytes`` into the envelope's wsse:Security; sign with ``signer``'s key if given.

    For a client whose IdP issued the assertion: the signer's own assertion (if any) is replaced by the
    given one, so the message carries exactly one.
    """
    if signer is None:
        ensure_security(soap_parts(envelope)).append(xmlsafe.parse(assertion_bytes))
        return envelope
    return EnvelopeSigner(signer.key_pem, signer.cert_pem, assertion_bytes,
                          signer.lifetime.total_seconds()).sign(envelope)


def _element(parent: etree._Element | None, local: str, attrib: dict[str, str] | None = None) -> etree._Element:
    if parent is None:
        return etree.Element(q(ns.SAML2, local), attrib or {}, nsmap={"saml2": ns.SAML2, "ds": ns.DS, "xsi": _XSI})
    return etree.SubElement(parent, q(ns.SAML2, local), attrib or {})


def _attribute(statement: etree._Element, name: str) -> etree._Element:
    attribute = _element(statement, "Attribute", {"Name": name,
                                                  "NameFormat": "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"})
    return _element(attribute, "AttributeValue")


def _coded(value: etree._Element, local: str, code: str, system: str, system_name: str, display: str | None) -> None:
    element = etree.SubElement(value, q(HL7, local), {q(_XSI, "type"): "hl7:CE", "code": code, "codeSystem": system,
                                                      "codeSystemName": system_name}, nsmap={"hl7": HL7})
    if display:
        element.set("displayName", display)


def _name_format(subject_id: str) -> str:
    if "@" in subject_id and "=" not in subject_id:
        return "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
    if "=" in subject_id:
        return "urn:oasis:names:tc:SAML:1.1:nameid-format:X509SubjectName"
    return "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"


def self_signed_identity(common_name: str, *, elliptic: bool = False, days: int = 365) -> tuple[bytes, bytes]:
    """A new private key (RSA-2048, or EC P-256 with ``elliptic``) and its self-signed certificate, as PEM."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        ec.generate_private_key(ec.SECP256R1()) if elliptic
        else rsa.generate_private_key(public_exponent=65537, key_size=2048))
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hiem development")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def _write(path: Path, data: bytes, mode: int) -> None:
    # Written to a private temporary name and renamed, so no reader ever sees half a key, and the key's
    # permissions are right from the first byte (no chmod window).
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
