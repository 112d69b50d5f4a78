"""The WSS4J signer (tests/support/wss4j.py) signs the way the broker's interop tests rely on.

Checked here without any hiem code: the layout each option gives, the KeyInfo each key reference gives,
and (with python-xmlsec) that the signatures verify.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from lxml import etree

from tests.support import wss4j

WSA = "http://www.w3.org/2005/08/addressing"
ENVELOPE = (
    '<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"><s:Header>'
    f'<wsa:To xmlns:wsa="{WSA}">http://x/</wsa:To>'
    f'<wsa:Action xmlns:wsa="{WSA}">urn:a</wsa:Action>'
    f'<wsa:MessageID xmlns:wsa="{WSA}">urn:uuid:1</wsa:MessageID>'
    '</s:Header><s:Body><x:Ping xmlns:x="urn:x"/></s:Body></s:Envelope>'
).encode()
SOAP11_ENVELOPE = (ENVELOPE.replace(b"http://www.w3.org/2003/05/soap-envelope",
                                    b"http://schemas.xmlsoap.org/soap/envelope/"))
ASSERTION_ID = "_4f1c2a9e-wss4j-helper"
SAML2 = "urn:oasis:names:tc:SAML:2.0:assertion"
NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "s11": "http://schemas.xmlsoap.org/soap/envelope/",
    "wsse": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd",
    "wsse11": "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd",
    "wsu": "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd",
    "ds": "http://www.w3.org/2000/09/xmldsig#",
    "ec": "http://www.w3.org/2001/10/xml-exc-c14n#",
    "wsa": WSA,
    "saml2": SAML2,
}
WSU_ID = f"{{{NS['wsu']}}}Id"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
X509_TOKEN = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0"
SOAP_MESSAGE_11 = "http://docs.oasis-open.org/wss/oasis-wss-soap-message-security-1.1"
SAML_PROFILE = "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1"

# (layout, key_ref, with assertion, envelope): every result the tests below look at, signed in parallel
CASES = {
    "default": ("default", "bst", False, ENVELOPE),
    "transforms-only": ("transforms-only", "bst", False, ENVELOPE),
    "none": ("none", "bst", False, ENVELOPE),
    "issuer-serial": ("default", "issuer-serial", False, ENVELOPE),
    "ski": ("default", "ski", False, ENVELOPE),
    "thumbprint": ("default", "thumbprint", False, ENVELOPE),
    "samlid": ("default", "samlid", True, ENVELOPE),
    "soap11": ("default", "bst", False, SOAP11_ENVELOPE),
}


class Signer:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wss4j helper"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example, Inc.")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                     .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
                     .sign(self.key, hashes.SHA256()))
        self.key_pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self.der = self.cert.public_bytes(serialization.Encoding.DER)


def _require_wss4j() -> None:
    wss4j.require()


def _unsigned_assertion() -> bytes:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (f'<saml2:Assertion xmlns:saml2="{SAML2}" ID="{ASSERTION_ID}" IssueInstant="{now}" Version="2.0">'
            "<saml2:Issuer>https://idp.example.org/</saml2:Issuer>"
            "<saml2:Subject><saml2:NameID>CN=tester</saml2:NameID></saml2:Subject></saml2:Assertion>").encode()


@pytest.fixture(scope="module")
def signer() -> Signer:
    _require_wss4j()
    return Signer()


@pytest.fixture(scope="module")
def signed_assertion(signer: Signer) -> bytes:
    return wss4j.sign_assertion(_unsigned_assertion(), key_pem=signer.key_pem, cert_pem=signer.cert_pem)


@pytest.fixture(scope="module")
def signed(signer: Signer, signed_assertion: bytes) -> dict[str, etree._Element]:
    def one(case: tuple[str, str, bool, bytes]) -> etree._Element:
        layout, key_ref, with_assertion, envelope = case
        out = wss4j.sign(envelope, key_pem=signer.key_pem, cert_pem=signer.cert_pem, layout=layout,
                         key_ref=key_ref, assertion=signed_assertion if with_assertion else None)
        return etree.fromstring(out)

    with ThreadPoolExecutor(max_workers=len(CASES)) as pool:  # one JVM each: run them side by side
        return dict(zip(CASES, pool.map(one, CASES.values()), strict=True))


def _one(node: etree._Element, path: str) -> etree._Element:
    found = node.xpath(path, namespaces=NS)
    assert len(found) == 1, f"{path}: {len(found)} matches"
    return found[0]


def _signature(envelope: etree._Element) -> etree._Element:
    return _one(envelope, "/*/*[local-name()='Header']/wsse:Security/ds:Signature")


def _verify(envelope: etree._Element, cert_pem: bytes) -> None:
    """python-xmlsec (libxmlsec1) checks every Reference digest and the SignatureValue."""
    manager = xmlsec.KeysManager()
    ctx = xmlsec.SignatureContext(manager)
    ctx.key = xmlsec.Key.from_memory(cert_pem, xmlsec.constants.KeyDataFormatCertPem)
    for element in envelope.iter():
        if isinstance(element.tag, str) and element.get(WSU_ID) is not None:
            ctx.register_id(element, "Id", NS["wsu"])
    ctx.verify(_signature(envelope))


def test_keystore_holds_the_key_under_the_alias(tmp_path: Path) -> None:
    _require_wss4j()
    s = Signer()
    path = wss4j.keystore(s.key_pem, s.cert_pem, tmp_path)
    loaded = pkcs12.load_pkcs12(path.read_bytes(), wss4j.PASSWORD.encode())
    assert loaded.cert is not None and loaded.cert.certificate == s.cert
    assert loaded.cert.friendly_name == wss4j.ALIAS.encode()
    assert loaded.key is not None and loaded.key.public_key() == s.key.public_key()


@pytest.mark.parametrize("case", list(CASES))
def test_signs_body_timestamp_and_addressing_headers(signed: dict[str, etree._Element], case: str) -> None:
    envelope = signed[case]
    security = _one(envelope, "/*/*[local-name()='Header']/wsse:Security")
    soap = envelope.nsmap["s"]
    assert security.get(f"{{{soap}}}mustUnderstand") == ("1" if case == "soap11" else "true")
    timestamp = _one(security, "wsu:Timestamp")
    created, expires = (dt.datetime.fromisoformat(_one(timestamp, f"wsu:{n}").text or "")
                        for n in ("Created", "Expires"))
    assert expires - created == dt.timedelta(seconds=300)

    signed_info = _one(_signature(envelope), "ds:SignedInfo")
    assert _one(signed_info, "ds:CanonicalizationMethod").get("Algorithm") == EXC_C14N
    assert (_one(signed_info, "ds:SignatureMethod").get("Algorithm")
            == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
    references = signed_info.findall("ds:Reference", NS)
    by_id = {e.get(WSU_ID): e for e in envelope.iter() if isinstance(e.tag, str) and e.get(WSU_ID)}
    covered = [by_id[ref.get("URI", "").removeprefix("#")] for ref in references]
    assert [etree.QName(e).localname for e in covered] == ["Body", "Timestamp", "To", "Action", "MessageID"]
    for ref in references:
        assert [t.get("Algorithm") for t in ref.findall("ds:Transforms/ds:Transform", NS)] == [EXC_C14N]
        assert _one(ref, "ds:DigestMethod").get("Algorithm") == "http://www.w3.org/2001/04/xmlenc#sha256"


@pytest.mark.parametrize(("case", "on_signed_info", "on_transforms"),
                         [("default", True, True), ("transforms-only", False, True), ("none", False, False)])
def test_inclusive_namespaces_per_layout(signed: dict[str, etree._Element], case: str, on_signed_info: bool,
                                         on_transforms: bool) -> None:
    signed_info = _one(_signature(signed[case]), "ds:SignedInfo")
    method = signed_info.findall("ds:CanonicalizationMethod/ec:InclusiveNamespaces", NS)
    transforms = signed_info.findall("ds:Reference/ds:Transforms/ds:Transform", NS)
    per_transform = [t.findall("ec:InclusiveNamespaces", NS) for t in transforms]
    assert len(method) == (1 if on_signed_info else 0)
    assert [len(found) for found in per_transform] == [1 if on_transforms else 0] * 5
    if on_signed_info:
        assert method[0].get("PrefixList") == "s"  # what is in scope above wsse:Security
    if on_transforms:  # WSS4J 1.6: ancestors' prefixes, less the element's own; "" for the Body
        assert [found[0].get("PrefixList") for found in per_transform] == ["", "wsse s", "s", "s", "s"]


def _str(envelope: etree._Element) -> etree._Element:
    return _one(_signature(envelope), "ds:KeyInfo/wsse:SecurityTokenReference")


def _key_identifier(envelope: etree._Element, value_type: str) -> str:
    identifier = _one(_str(envelope), "wsse:KeyIdentifier")
    assert identifier.get("ValueType") == value_type
    return identifier.text or ""


def _bst(envelope: etree._Element) -> list[etree._Element]:
    return envelope.xpath("//wsse:Security/wsse:BinarySecurityToken", namespaces=NS)


KEY_INFO_CHECKS: dict[str, Callable[[etree._Element, Signer], None]] = {}


def _key_info_check(case: str) -> Callable[[Callable[[etree._Element, Signer], None]],
                                           Callable[[etree._Element, Signer], None]]:
    def register(check: Callable[[etree._Element, Signer], None]) -> Callable[[etree._Element, Signer], None]:
        KEY_INFO_CHECKS[case] = check
        return check
    return register


@_key_info_check("default")
def _bst_reference(envelope: etree._Element, s: Signer) -> None:
    (bst,) = _bst(envelope)
    assert bst.get("ValueType") == f"{X509_TOKEN}#X509v3"
    assert base64.b64decode(bst.text or "") == s.der
    reference = _one(_str(envelope), "wsse:Reference")
    assert reference.get("URI") == f"#{bst.get(WSU_ID)}"
    assert reference.get("ValueType") == f"{X509_TOKEN}#X509v3"


@_key_info_check("issuer-serial")
def _issuer_serial(envelope: etree._Element, s: Signer) -> None:
    assert _bst(envelope) == []
    issuer_serial = _one(_str(envelope), "ds:X509Data/ds:X509IssuerSerial")
    assert _one(issuer_serial, "ds:X509IssuerName").text == s.cert.issuer.rfc4514_string()
    assert _one(issuer_serial, "ds:X509SerialNumber").text == str(s.cert.serial_number)


@_key_info_check("ski")
def _ski(envelope: etree._Element, s: Signer) -> None:
    assert _bst(envelope) == []
    ski = s.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert base64.b64decode(_key_identifier(envelope, f"{X509_TOKEN}#X509SubjectKeyIdentifier")) == ski


@_key_info_check("thumbprint")
def _thumbprint(envelope: etree._Element, s: Signer) -> None:
    assert _bst(envelope) == []
    thumbprint = base64.b64decode(_key_identifier(envelope, f"{SOAP_MESSAGE_11}#ThumbprintSHA1"))
    assert thumbprint == hashlib.sha1(s.der).digest()


@_key_info_check("samlid")
def _samlid(envelope: etree._Element, s: Signer) -> None:
    assert _bst(envelope) == []
    assert _str(envelope).get(f"{{{NS['wsse11']}}}TokenType") == f"{SAML_PROFILE}#SAMLV2.0"
    assert _key_identifier(envelope, f"{SAML_PROFILE}#SAMLID") == ASSERTION_ID
    security = _one(envelope, "//wsse:Security")
    assert [etree.QName(c).localname for c in security] == ["Timestamp", "Assertion", "Signature"]


@pytest.mark.parametrize("case", list(KEY_INFO_CHECKS))
def test_key_info_per_key_reference(signed: dict[str, etree._Element], signer: Signer, case: str) -> None:
    KEY_INFO_CHECKS[case](signed[case], signer)


@pytest.mark.parametrize("case", list(CASES))
def test_signature_verifies_independently(signed: dict[str, etree._Element], signer: Signer, case: str) -> None:
    _verify(signed[case], signer.cert_pem)


def test_tampered_body_fails_verification(signed: dict[str, etree._Element], signer: Signer) -> None:
    envelope = etree.fromstring(etree.tostring(signed["default"]))
    _one(envelope, "//*[local-name()='Ping']").set("tampered", "1")
    with pytest.raises(xmlsec.Error):
        _verify(envelope, signer.cert_pem)


def test_assertion_signed_per_saml_core(signed_assertion: bytes, signer: Signer) -> None:
    assertion = etree.fromstring(signed_assertion)
    assert [etree.QName(c).localname for c in assertion][:2] == ["Issuer", "Signature"]
    signature = _one(assertion, "ds:Signature")
    reference = _one(signature, "ds:SignedInfo/ds:Reference")
    assert reference.get("URI") == f"#{ASSERTION_ID}"
    assert [t.get("Algorithm") for t in reference.findall("ds:Transforms/ds:Transform", NS)] == [
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature", EXC_C14N]
    certificate = _one(signature, "ds:KeyInfo/ds:X509Data/ds:X509Certificate").text or ""
    assert base64.b64decode("".join(certificate.split())) == signer.der
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_memory(signer.cert_pem, xmlsec.constants.KeyDataFormatCertPem)
    ctx.register_id(assertion, "ID")
    ctx.verify(signature)
