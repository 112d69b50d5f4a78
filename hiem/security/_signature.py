"""Check (4): the message signature in wsse:Security (WS-Security 1.1 SOAP Message Security §8).

Which key must have signed (SAML Token Profile 1.1 §3.5, NHIN Authorization Framework):

* holder-of-key assertion: the confirmation key from the verified assertion, whatever the signature's
  KeyInfo points at (the assertion by SAMLID, or a BinarySecurityToken holding the same key). Trust
  comes from the IdP having bound that key to the subject;
* otherwise (sender-vouches, bearer, no assertion): the X.509 BinarySecurityToken the signature's
  SecurityTokenReference points at, and that certificate must be pinned (``trusted_signer_certs`` or
  ``trusted_idp_certs``).

signxml does the cryptography. What signxml cannot know is *which* element each Reference was meant to
be, and that is where XML signature wrapping lives, so after it returns:

* every Reference must be a same-document ``#id`` with exclusive c14n as its only transform;
* the id is resolved once, in the id index built over the whole message (duplicates were refused);
* the bytes signxml digested must equal the exclusive c14n of *that* element of this envelope, so the
  content verified is the content hiem will process, not a copy moved elsewhere;
* the element must be THE Body, a header block, or a token in wsse:Security; anything else (a Body
  moved into a wrapper) is refused;
* the Body, the wsu:Timestamp and every WS-Addressing header must be among them.

signxml returns re-parsed canonical copies, so identity with the envelope's Body cannot be taken from
its result; it is established by the single resolution above plus the byte comparison.
"""

from __future__ import annotations

import copy
from typing import cast

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from lxml import etree
from signxml import VerifyResult

from hiem import ns
from hiem.security._inbound import Inbound, call_signxml, check_algorithms, signature_configuration
from hiem.security._key_identifiers import X509_VALUE_TYPES, by_issuer_serial, by_key_identifier
from hiem.security._processor import (
    BASE64_BINARY,
    EXC_C14N,
    SAML_ID,
    X509_TOKEN,
    cert_from_base64,
    children,
    exclusive_c14n,
    fingerprint,
    pinned,
    public_key_pem,
    q,
    soap_parts,
    subject_of,
    text_of,
)
from hiem.security._verifier import SignatureVerifier
from hiem.security.errors import FaultSubcode, SecurityError
from hiem.security.policy import HOLDER_OF_KEY, SENDER_VOUCHES

_STR = q(ns.WSSE, "SecurityTokenReference")
_BST = q(ns.WSSE, "BinarySecurityToken")


class MessageSignatureCheck:
    """Verify the message signature, decide whose key it is, and record what it covers."""

    def verify(self, inbound: Inbound) -> None:
        if not inbound.active:
            return
        assert inbound.security is not None
        signature = inbound.one_child(inbound.security, q(ns.DS, "Signature"), "message ds:Signature")
        assertion = inbound.assertion
        needs_signature = inbound.policy.require_signature or (
            assertion is not None and assertion.confirmation_method in (HOLDER_OF_KEY, SENDER_VOUCHES))
        if signature is None:
            if needs_signature:
                raise SecurityError.signature("the message is not signed (no ds:Signature in wsse:Security)",
                                              FaultSubcode.INVALID_SECURITY)
            return
        references = [_reference(r) for r in check_algorithms(signature, inbound.policy, "message signature")]
        token_cert, names_assertion = self._key_reference(signature, inbound)
        results = self._verify(inbound, token_cert, names_assertion)
        if len(results) != len(references):
            raise SecurityError.signature("the message signature's references could not be matched")
        for (element_id, prefixes), result in zip(references, results, strict=True):
            self._record(inbound, element_id, prefixes, result)
        self._require_coverage(inbound)
        inbound.message_nonce = self._message_nonce(inbound, signature)

    @staticmethod
    def _key_reference(signature: etree._Element, inbound: Inbound) -> tuple[x509.Certificate | None, bool]:
        """The BinarySecurityToken certificate the KeyInfo points at, or (None, True) for the assertion."""
        token_ref = signature.find(f"{q(ns.DS, 'KeyInfo')}/{_STR}")
        if token_ref is None:
            raise SecurityError.authentication("the message signature's KeyInfo must hold a "
                                               "wsse:SecurityTokenReference", FaultSubcode.UNSUPPORTED_SECURITY_TOKEN)
        reference = token_ref.find(q(ns.WSSE, "Reference"))
        identifier = token_ref.find(q(ns.WSSE, "KeyIdentifier"))
        x509_data = token_ref.find(q(ns.DS, "X509Data"))
        assertion = inbound.assertion
        if reference is None and identifier is not None and identifier.get("ValueType") == SAML_ID:
            if assertion is None or text_of(identifier) != assertion.assertion_id:
                raise SecurityError.authentication("the message signature names an assertion that is not in the "
                                                   "message", FaultSubcode.SECURITY_TOKEN_UNAVAILABLE)
            return None, True
        if reference is None and (identifier is not None or x509_data is not None):
            return MessageSignatureCheck._named_certificate(identifier, x509_data, inbound), False
        uri = reference.get("URI", "") if reference is not None else ""
        token = inbound.ids.get(uri[1:]) if uri.startswith("#") else None
        if token is None:
            raise SecurityError.authentication("the message signature's key token is not in the message",
                                               FaultSubcode.SECURITY_TOKEN_UNAVAILABLE)
        if token is inbound.assertion_element:
            return None, True
        if token.tag != _BST or token.getparent() is not inbound.security or token.get("ValueType") != X509_TOKEN \
                or token.get("EncodingType", BASE64_BINARY) != BASE64_BINARY:
            raise SecurityError.authentication("the message signature's key token is not an X.509 "
                                               "BinarySecurityToken", FaultSubcode.UNSUPPORTED_SECURITY_TOKEN)
        try:
            cert = cert_from_base64(token.text)
            public_key_pem(cert)  # an unsupported key type fails here, as a token error, not later
            return cert, False
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise SecurityError.authentication("the BinarySecurityToken holds no readable certificate",
                                               FaultSubcode.INVALID_SECURITY_TOKEN) from exc

    @staticmethod
    def _named_certificate(identifier: etree._Element | None, x509_data: etree._Element | None,
                           inbound: Inbound) -> x509.Certificate:
        """The certificate a KeyIdentifier (SKI, thumbprint) or X509IssuerSerial names, among those hiem knows."""
        known = inbound.policy.signer_certificates
        if inbound.assertion is not None and inbound.assertion.hok_cert is not None:
            known = (inbound.assertion.hok_cert, *known)
        if identifier is not None:
            if identifier.get("ValueType") not in X509_VALUE_TYPES or \
                    identifier.get("EncodingType", BASE64_BINARY) != BASE64_BINARY:
                raise SecurityError.authentication("the message signature's KeyIdentifier is of an unsupported type",
                                                   FaultSubcode.UNSUPPORTED_SECURITY_TOKEN)
            cert = by_key_identifier(identifier, known)
        else:
            assert x509_data is not None
            cert = by_issuer_serial(x509_data, known)
        if cert is None:
            raise SecurityError.authentication("the message signature names a certificate that is not trusted",
                                               FaultSubcode.SECURITY_TOKEN_UNAVAILABLE)
        return cert

    @staticmethod
    def _verify(inbound: Inbound, token_cert: x509.Certificate | None, names_assertion: bool) -> list[VerifyResult]:
        assertion = inbound.assertion
        data = inbound.parts.envelope
        key_value: etree._Element | None = None
        if assertion is not None and assertion.confirmation_method == HOLDER_OF_KEY:
            cert, key_value = assertion.hok_cert, assertion.hok_key_value
        elif names_assertion or token_cert is None:
            raise SecurityError.authentication("only a holder-of-key assertion can supply the message signing key",
                                               FaultSubcode.UNSUPPORTED_SECURITY_TOKEN)
        elif not pinned(token_cert, inbound.policy.signer_certificates):
            raise SecurityError.authentication("the message is signed by a certificate that is not trusted")
        else:
            cert, inbound.signer_pinned = token_cert, True
        if key_value is not None:
            # signxml takes a bare public key only from the signature's own KeyInfo, so a copy of the
            # envelope gets the confirmation KeyValue there; KeyInfo is not covered by SignedInfo.
            data = _with_key_value(data, key_value)
        location = f"./{{{inbound.parts.soap_ns}}}Header/{{{ns.WSSE}}}Security/"
        config = signature_configuration(inbound, location=location, expect_references=True,
                                         require_x509=cert is not None)
        results = call_signxml(lambda: SignatureVerifier().verify(data, x509_cert=cert, expect_config=config),
                               SecurityError.signature, "message signature")
        results = cast(list[VerifyResult], results)
        inbound.signature_key = results[0].signature_key if results else None
        if token_cert is not None and inbound.signature_key != public_key_pem(token_cert):
            raise SecurityError.signature("the BinarySecurityToken does not hold the key that signed the message")
        named = cert or token_cert
        inbound.signer_subject = subject_of(named) if named is not None else None
        return results

    @staticmethod
    def _record(inbound: Inbound, element_id: str, prefixes: list[str] | None, result: VerifyResult) -> None:
        element = inbound.ids.get(element_id)
        if element is None:
            raise SecurityError.signature(f"the message signature references #{element_id}, which is not here")
        if exclusive_c14n(element, prefixes) != result.signed_data:
            raise SecurityError.signature(f"the content signed as #{element_id} is not the element the message "
                                          "carries under that id")
        parts, parent = inbound.parts, element.getparent()
        if element is not parts.body and parent is not parts.header and parent is not inbound.security:
            raise SecurityError.signature(f"the message signature covers #{element_id}, which is neither the "
                                          "SOAP Body nor a header block")
        inbound.signed.append(element)

    @staticmethod
    def _require_coverage(inbound: Inbound) -> None:
        if not inbound.is_signed(inbound.parts.body):
            raise SecurityError.signature("the message signature does not cover the SOAP Body")
        if inbound.timestamp is None and inbound.policy.require_signature:
            raise SecurityError.policy("wsse:Security must carry a signed wsu:Timestamp")
        if inbound.timestamp is not None and not inbound.is_signed(inbound.timestamp):
            raise SecurityError.signature("the message signature does not cover the wsu:Timestamp")
        for block in inbound.parts.header_blocks:
            if etree.QName(block).namespace == ns.WSA and not inbound.is_signed(block):
                name = etree.QName(block).localname
                raise SecurityError.signature(f"the message signature does not cover the wsa:{name} header")

    @staticmethod
    def _message_nonce(inbound: Inbound, signature: etree._Element) -> str:
        """Signer key + signed wsa:MessageID; without one, the signature value identifies the message."""
        signer = fingerprint(inbound.signature_key or b"")
        message_ids = [block for block in inbound.parts.header_blocks if block.tag == q(ns.WSA, "MessageID")]
        if len(message_ids) > 1:
            raise SecurityError.policy("the message has more than one wsa:MessageID header")
        if message_ids and text_of(message_ids[0]):
            return f"msg:{signer}|{text_of(message_ids[0])}"
        value = text_of(signature.find(q(ns.DS, "SignatureValue"))) or ""
        return f"sig:{signer}|{fingerprint(''.join(value.split()).encode())}"


def _reference(reference: etree._Element) -> tuple[str, list[str] | None]:
    """A same-document "#id" Reference with exactly one exclusive-c14n Transform: (id, PrefixList)."""
    uri = reference.get("URI") or ""
    transforms = reference.findall(f"{q(ns.DS, 'Transforms')}/{q(ns.DS, 'Transform')}")
    if not uri.startswith("#") or len(uri) < 2:
        raise SecurityError.signature("each message signature reference must point to an element by #id")
    if len(transforms) != 1 or transforms[0].get("Algorithm") != EXC_C14N:
        raise SecurityError.policy("each message signature reference must use exclusive c14n as its only "
                                   "transform", FaultSubcode.UNSUPPORTED_ALGORITHM)
    inclusive = transforms[0].find(q(EXC_C14N, "InclusiveNamespaces"))
    prefixes = (inclusive.get("PrefixList") or "").split() if inclusive is not None else None
    return uri[1:], prefixes


def _with_key_value(envelope: etree._Element, key_value: etree._Element) -> etree._Element:
    duplicate = copy.deepcopy(envelope)
    parts = soap_parts(duplicate)
    signature = children(parts.security_headers()[0], q(ns.DS, "Signature"))[0]
    key_info = signature.find(q(ns.DS, "KeyInfo"))
    assert key_info is not None
    for child in list(key_info):
        key_info.remove(child)
    key_info.append(copy.deepcopy(key_value))
    return duplicate
