"""Making XML Signatures (XML-DSig 1.0): the one place hiem signs XML.

Two ways, by how often they run:

* :func:`sign_detached`, the message signature of every Notify (the hot path of a fan-out): each
  referenced part is canonicalized on its own with lxml's exclusive C14N, digested with hashlib, and the
  canonical SignedInfo signed with one ``cryptography`` operation (which releases the GIL, so the sender
  threads of one process sign on every core). libxmlsec1 walks the whole document for every reference;
  this does the least work a signature needs (``docs/performance.md``, "Signing").
* :func:`sign_enveloped`, the broker's assertion, minted once per validity window: libxmlsec1
  (python-xmlsec), the library python3-saml and most SAML stacks sign with. It must link the same
  libxml2 as lxml (pinned together in pyproject.toml).

What is produced is fixed, and is what :mod:`hiem.security.verifying` (signxml) demands: exclusive c14n
for SignedInfo and for every reference, SHA-256 digests, RSA-SHA256 or ECDSA-SHA256 by key type (ECDSA
values as r || s, XML-DSig 1.1 section 6.4.3), ``ds:`` prefix. One :class:`XmlSigningKey` serves every
thread: libxmlsec1 contexts duplicate the key, and ``cryptography`` keys are safe to share.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import xmlsec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from lxml import etree

from hiem import ns
from hiem.security._processor import WSU_ID, load_signing_key

_C14N = xmlsec.constants.TransformExclC14N
_DIGEST = xmlsec.constants.TransformSha256
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"


@dataclass(frozen=True)
class XmlSigningKey:
    """A private key loaded into libxmlsec1, with its signature method (and certificate, when given).

    Build one per key with :meth:`from_pem` and keep it: loading checks the key (for RSA, tens of
    milliseconds).
    """

    key: Any  # xmlsec.Key (python-xmlsec ships no type information)
    method: Any  # xmlsec.constants.TransformRsaSha256 or TransformEcdsaSha256
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey  # the same key, for sign_detached

    @property
    def method_uri(self) -> str:
        return ECDSA_SHA256 if isinstance(self.private, ec.EllipticCurvePrivateKey) else RSA_SHA256

    def sign(self, data: bytes) -> bytes:
        """The SignatureValue octets of ``data``: PKCS#1 v1.5 for RSA, r || s for ECDSA."""
        if isinstance(self.private, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(hashes.SHA256())))
            size = (self.private.curve.key_size + 7) // 8
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())

    @classmethod
    def from_pem(cls, key_pem: bytes, cert_pem: bytes | None = None) -> XmlSigningKey:
        """``key_pem``: an unencrypted PEM RSA or EC private key (ValueError otherwise). ``cert_pem``: its
        certificate, which :func:`sign_enveloped` then writes into KeyInfo/X509Data."""
        private = load_signing_key(key_pem)  # the same key rules as everywhere else in hiem
        method = (xmlsec.constants.TransformEcdsaSha256 if isinstance(private, ec.EllipticCurvePrivateKey)
                  else xmlsec.constants.TransformRsaSha256)
        try:
            key = xmlsec.Key.from_memory(key_pem, xmlsec.constants.KeyDataFormatPem)
            if cert_pem is not None:
                key.load_cert_from_memory(cert_pem, xmlsec.constants.KeyDataFormatCertPem)
        except xmlsec.Error as exc:
            raise ValueError(f"libxmlsec1 could not load the signing key or certificate: {exc}") from None
        return cls(key, method, private)


def sign_detached(document: etree._Element, place: etree._Element, targets: Sequence[etree._Element],
                  key: XmlSigningKey, key_info: etree._Element | None = None) -> etree._Element:
    """Append a ds:Signature to ``place`` covering each of ``targets`` by its wsu:Id; returns the signature.

    Every target must already carry a wsu:Id, unique in ``document`` (the caller checks uniqueness: a
    signature over an ambiguous id is refused before anything is signed). ``key_info``, when given, is a
    complete ds:KeyInfo (holding a WS-Security SecurityTokenReference, for instance) and becomes the
    signature's.
    """
    signature = etree.SubElement(place, _ds("Signature"), nsmap={"ds": ns.DS})
    signed_info = etree.SubElement(signature, _ds("SignedInfo"))
    etree.SubElement(signed_info, _ds("CanonicalizationMethod"), Algorithm=EXC_C14N)
    etree.SubElement(signed_info, _ds("SignatureMethod"), Algorithm=key.method_uri)
    for target in targets:
        reference = etree.SubElement(signed_info, _ds("Reference"), URI=f"#{target.get(WSU_ID)}")
        etree.SubElement(etree.SubElement(reference, _ds("Transforms")), _ds("Transform"), Algorithm=EXC_C14N)
        etree.SubElement(reference, _ds("DigestMethod"), Algorithm=SHA256)
        etree.SubElement(reference, _ds("DigestValue")).text = _b64(hashlib.sha256(_exc_c14n(target)).digest())
    etree.SubElement(signature, _ds("SignatureValue")).text = _b64(key.sign(_exc_c14n(signed_info)))
    if key_info is not None:
        signature.append(key_info)  # after SignatureValue, where XML-DSig puts KeyInfo
    return signature


def _exc_c14n(element: etree._Element) -> bytes:
    """Exclusive XML Canonicalization 1.0, without comments, of the subtree ``element`` heads."""
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=False)


def _ds(name: str) -> str:
    return f"{{{ns.DS}}}{name}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def sign_enveloped(root: etree._Element, after: etree._Element, key: XmlSigningKey,
                   id_attribute: str = "ID") -> etree._Element:
    """Sign ``root`` with an enveloped signature placed right after ``after`` (e.g. a SAML Issuer).

    The reference is ``#`` + root's ``id_attribute``; KeyInfo carries the key's certificate as X509Data.
    """
    signature = xmlsec.template.create(root, _C14N, key.method, ns="ds")
    after.addnext(signature)
    reference = xmlsec.template.add_reference(signature, _DIGEST, uri=f"#{root.get(id_attribute)}")
    xmlsec.template.add_transform(reference, xmlsec.constants.TransformEnveloped)
    xmlsec.template.add_transform(reference, _C14N)
    xmlsec.template.add_x509_data(xmlsec.template.ensure_key_info(signature))
    context = xmlsec.SignatureContext()
    context.register_id(root, id_attribute)
    return _sign(context, signature, key)


def _sign(context: Any, signature: etree._Element, key: XmlSigningKey) -> etree._Element:
    context.key = key.key
    try:
        context.sign(signature)
    except xmlsec.Error as exc:
        signature.getparent().remove(signature)
        raise ValueError(f"libxmlsec1 could not sign: {exc}") from None
    return signature


__all__ = ["XmlSigningKey", "sign_detached", "sign_enveloped"]
