"""Signature layouts other WS-Security stacks send, built directly with libxmlsec1 (not hiem's signer).

XML-DSig, Exclusive C14N and WS-I BSP 1.1 allow InclusiveNamespaces on SignedInfo's
CanonicalizationMethod, on the References' Transforms, on both or on neither, and a
SecurityTokenReference may name the key by BinarySecurityToken, Subject Key Identifier, SHA-1
thumbprint, issuer and serial, or the assertion's ID. Every such layout is accepted; the structural
check and every trust rule still apply.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import xmlsec
from cryptography import x509
from lxml import etree
from signxml import XMLSigner, XMLVerifier
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

from hiem import ns
from hiem.security import AlertType, DevIdentity, FaultSubcode
from hiem.security._key_identifiers import SKI, THUMBPRINT, subject_key_identifier
from hiem.security._processor import BASE64_BINARY, SAML_ID, WSU_ID, X509_TOKEN, cert_der, format_instant, soap_parts
from hiem.security._verifier import SignatureVerifier
from hiem.security.signing import ensure_security

EC = "http://www.w3.org/2001/10/xml-exc-c14n#"
WSSE11 = "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd"
SAML2_TOKEN = "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0"


def _sign(kit, identity: DevIdentity, *, key_ref: str = "bst", signed_info_prefixes: list[str] | None = None,
          transform_prefixes: list[str] | None = None, assertion: bytes | None = None,
          envelope: etree._Element | None = None) -> etree._Element:
    """A WS-Security 1.1 message signed by signxml in the layout the arguments describe."""
    envelope = envelope if envelope is not None else kit.envelope()
    parts = soap_parts(envelope)
    security = ensure_security(parts)
    now = datetime.now(UTC)
    timestamp = etree.SubElement(security, f"{{{ns.WSU}}}Timestamp", {WSU_ID: f"TS-{uuid.uuid4().hex}"})
    etree.SubElement(timestamp, f"{{{ns.WSU}}}Created").text = format_instant(now)
    etree.SubElement(timestamp, f"{{{ns.WSU}}}Expires").text = format_instant(now + timedelta(minutes=5))
    cert = x509.load_pem_x509_certificate(identity.cert_pem)
    assertion_id = None
    if assertion is not None:
        element = etree.fromstring(assertion)
        assertion_id = element.get("ID")
        security.append(element)
    key_info = etree.Element(f"{{{ns.DS}}}KeyInfo")
    reference = etree.SubElement(key_info, f"{{{ns.WSSE}}}SecurityTokenReference")
    if key_ref == "bst":
        token = etree.SubElement(security, f"{{{ns.WSSE}}}BinarySecurityToken",
                                 {"EncodingType": BASE64_BINARY, "ValueType": X509_TOKEN, WSU_ID: "X509-1"})
        token.text = base64.b64encode(cert_der(cert)).decode()
        etree.SubElement(reference, f"{{{ns.WSSE}}}Reference", URI="#X509-1", ValueType=X509_TOKEN)
    elif key_ref in ("ski", "thumbprint"):
        value = subject_key_identifier(cert) if key_ref == "ski" else hashlib.sha1(cert_der(cert)).digest()
        etree.SubElement(reference, f"{{{ns.WSSE}}}KeyIdentifier", EncodingType=BASE64_BINARY,
                         ValueType=SKI if key_ref == "ski" else THUMBPRINT).text = base64.b64encode(value).decode()
    elif key_ref == "issuer-serial":
        serial = etree.SubElement(etree.SubElement(reference, f"{{{ns.DS}}}X509Data"), f"{{{ns.DS}}}X509IssuerSerial")
        # the RFC 2253 spelling Java's X500Principal writes, not Python's
        etree.SubElement(serial, f"{{{ns.DS}}}X509IssuerName").text = ", ".join(
            attribute.rfc4514_string().replace("1.2.840.113549.1.9.1=", "EMAILADDRESS=")
            for rdn in reversed(cert.issuer.rdns) for attribute in rdn)
        etree.SubElement(serial, f"{{{ns.DS}}}X509SerialNumber").text = str(cert.serial_number)
    elif key_ref == "samlid":
        assert assertion_id is not None
        reference.set(f"{{{WSSE11}}}TokenType", SAML2_TOKEN)
        etree.SubElement(reference, f"{{{ns.WSSE}}}KeyIdentifier", ValueType=SAML_ID).text = assertion_id
    targets = [parts.body, timestamp, *(block for block in parts.header_blocks
                                        if etree.QName(block).namespace == ns.WSA)]
    for index, target in enumerate(targets):
        target.set(WSU_ID, target.get(WSU_ID) or f"id-{index}-{uuid.uuid4().hex}")
    signature = xmlsec.template.create(envelope, xmlsec.constants.TransformExclC14N,
                                       xmlsec.constants.TransformRsaSha256, ns="ds")
    if signed_info_prefixes is not None:
        method = signature.find(f"{{{ns.DS}}}SignedInfo/{{{ns.DS}}}CanonicalizationMethod")
        xmlsec.template.transform_add_c14n_inclusive_namespaces(method, signed_info_prefixes)
    context = xmlsec.SignatureContext()
    for target in targets:
        reference = xmlsec.template.add_reference(signature, xmlsec.constants.TransformSha256,
                                                  uri=f"#{target.get(WSU_ID)}")
        transform = xmlsec.template.add_transform(reference, xmlsec.constants.TransformExclC14N)
        if transform_prefixes is not None:
            xmlsec.template.transform_add_c14n_inclusive_namespaces(transform, transform_prefixes)
        context.register_id(target, "Id", ns.WSU)
    signature.append(key_info)
    security.append(signature)
    context.key = xmlsec.Key.from_memory(identity.key_pem, xmlsec.constants.KeyDataFormatPem)
    context.sign(signature)
    return kit.wire(envelope)


def _prefix_places(message: etree._Element) -> tuple[bool, bool]:
    signed_info = message.find(f".//{{{ns.WSSE}}}Security/{{{ns.DS}}}Signature/{{{ns.DS}}}SignedInfo")
    on_c14n = signed_info.find(f"{{{ns.DS}}}CanonicalizationMethod/{{{EC}}}InclusiveNamespaces") is not None
    on_transforms = signed_info.find(f".//{{{ns.DS}}}Transform/{{{EC}}}InclusiveNamespaces") is not None
    return on_c14n, on_transforms


@pytest.mark.parametrize(("signed_info", "transforms"), [
    (["s", "wsse"], ["s"]), (["s"], None), (None, ["wsse", "s"]), (None, None)],
    ids=["both", "signed-info-only", "transforms-only", "none"])
def test_inclusive_namespaces_wherever_exc_c14n_allows_them_are_accepted(kit, signed_info, transforms) -> None:
    message = _sign(kit, kit.client, assertion=kit.assertion(), signed_info_prefixes=signed_info,
                    transform_prefixes=transforms)
    assert _prefix_places(message) == (signed_info is not None, transforms is not None)
    result = kit.accept(message)
    assert result.authenticated and f"{{{ns.SOAP12}}}Body" in result.signed_parts


def test_a_signxml_signature_made_with_inclusive_ns_prefixes_verifies(kit) -> None:
    # signxml 5.2's own verifier refuses what its signer makes with inclusive_ns_prefixes (its schemas lack
    # exc-c14n's); hiem's verifier, on the same signxml, must not.
    payload = etree.fromstring(b'<p:Report xmlns:p="urn:example:payload"><p:Count>3</p:Count></p:Report>')
    signer = XMLSigner(signature_algorithm=SignatureMethod.RSA_SHA256, digest_algorithm=DigestAlgorithm.SHA256,
                       c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0)
    signed = signer.sign(payload, key=kit.gateway.key_pem, cert=kit.gateway.cert_pem.decode(),
                         inclusive_ns_prefixes=["p"])
    with pytest.raises(etree.DocumentInvalid):
        XMLVerifier().verify(signed, x509_cert=kit.gateway.cert_pem.decode())
    assert SignatureVerifier().verify(signed, x509_cert=kit.gateway.cert_pem.decode()).signed_xml is not None


def test_the_same_check_refuses_an_assertion_signature_with_an_undeclared_parameter(kit) -> None:
    assertion = etree.fromstring(kit.assertion(sender_vouches=True))
    method = assertion.find(f"{{{ns.DS}}}Signature/{{{ns.DS}}}SignedInfo/{{{ns.DS}}}CanonicalizationMethod")
    etree.SubElement(method, "{urn:example:other}Parameter")
    message = _sign(kit, kit.gateway, assertion=etree.tostring(assertion))
    kit.refused(lambda: kit.accept(message), AlertType.AUTHENTICATION, FaultSubcode.FAILED_AUTHENTICATION,
                "XML Signature schema")


@pytest.mark.parametrize("key_ref", ["bst", "ski", "thumbprint", "issuer-serial"])
def test_a_pinned_signer_may_be_named_any_way_the_x509_token_profile_allows(kit, key_ref) -> None:
    message = _sign(kit, kit.gateway, key_ref=key_ref, assertion=kit.assertion(sender_vouches=True),
                    signed_info_prefixes=["s"])
    result = kit.accept(message)
    assert result.authenticated and "CN=gateway test identity" in str(result.signer_subject)


@pytest.mark.parametrize("key_ref", ["samlid", "ski", "issuer-serial"])
def test_holder_of_key_may_name_the_confirmation_key_by_assertion_or_certificate(kit, key_ref) -> None:
    message = _sign(kit, kit.client, key_ref=key_ref, assertion=kit.assertion(), signed_info_prefixes=["s"])
    assert kit.accept(message).assertion_id is not None


@pytest.mark.parametrize("key_ref", ["ski", "thumbprint", "issuer-serial"])
def test_naming_an_untrusted_certificate_grants_nothing(kit, key_ref) -> None:
    message = _sign(kit, kit.attacker, key_ref=key_ref, assertion=kit.assertion(sender_vouches=True))
    kit.refused(lambda: kit.accept(message), AlertType.AUTHENTICATION, FaultSubcode.SECURITY_TOKEN_UNAVAILABLE,
                "names a certificate that is not trusted")


def test_an_unknown_element_in_canonicalization_method_is_still_refused_by_the_schema(kit) -> None:
    message = _sign(kit, kit.gateway, signed_info_prefixes=["s"], assertion=kit.assertion(sender_vouches=True))
    method = message.find(f".//{{{ns.WSSE}}}Security/{{{ns.DS}}}Signature/{{{ns.DS}}}SignedInfo/"
                          f"{{{ns.DS}}}CanonicalizationMethod")
    etree.SubElement(method, "{urn:example:other}Parameter")
    kit.refused(lambda: kit.accept(message), AlertType.SIGNATURE, FaultSubcode.FAILED_CHECK,
                "XML Signature schema")


def test_a_tampered_body_under_the_wss4j_layout_is_refused(kit) -> None:
    message = _sign(kit, kit.gateway, signed_info_prefixes=["s"], transform_prefixes=["s"],
                    assertion=kit.assertion(sender_vouches=True))
    message.find(".//{urn:example:payload}p").text = "changed"
    kit.refused(lambda: kit.accept(message), AlertType.SIGNATURE, FaultSubcode.FAILED_CHECK,
                "digest mismatch")
