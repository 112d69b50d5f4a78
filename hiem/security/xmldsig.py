"""Making XML Signatures (XML-DSig 1.0): the one place hiem signs XML, through libxmlsec1 (python-xmlsec).

Why libxmlsec1 and not signxml, which hiem uses to *verify*: the broker signs every message it sends
twice (the fresh system assertion, then the envelope), so signing is the largest cost of a delivery.
signxml re-serializes and re-parses the document in Python for every reference; libxmlsec1 canonicalizes,
digests and signs in C, and python-xmlsec releases the GIL while it does, so the sender threads of one
process sign on every core at once (``docs/performance.md``, "Signing"). It is the library python3-saml
and most SAML stacks sign with; it must link the same libxml2 as lxml (pinned together in pyproject.toml).

What is produced is fixed, and is what :mod:`hiem.security.verifying` (signxml) demands: exclusive c14n
for SignedInfo and for every reference, SHA-256 digests, RSA-SHA256 or ECDSA-SHA256 by key type, ``ds:``
prefix. Each signature gets a fresh :class:`xmlsec.SignatureContext` (they are single-use); the loaded key
is shared (the context duplicates it), so one :class:`XmlSigningKey` serves every thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import xmlsec
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree

from hiem import ns
from hiem.security._processor import WSU_ID, load_signing_key

_C14N = xmlsec.constants.TransformExclC14N
_DIGEST = xmlsec.constants.TransformSha256


@dataclass(frozen=True)
class XmlSigningKey:
    """A private key loaded into libxmlsec1, with its signature method (and certificate, when given).

    Build one per key with :meth:`from_pem` and keep it: loading checks the key (for RSA, tens of
    milliseconds).
    """

    key: Any  # xmlsec.Key (python-xmlsec ships no type information)
    method: Any  # xmlsec.constants.TransformRsaSha256 or TransformEcdsaSha256

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
        return cls(key, method)


def sign_detached(document: etree._Element, place: etree._Element, targets: Sequence[etree._Element],
                  key: XmlSigningKey, key_info: etree._Element | None = None) -> etree._Element:
    """Append a ds:Signature to ``place`` covering each of ``targets`` by its wsu:Id; returns the signature.

    Every target must already carry a wsu:Id, unique in ``document`` (the caller checks uniqueness: a
    signature over an ambiguous id is refused before anything is signed). ``key_info``, when given, is a
    complete ds:KeyInfo (holding a WS-Security SecurityTokenReference, for instance) and becomes the
    signature's.
    """
    signature = xmlsec.template.create(document, _C14N, key.method, ns="ds")
    place.append(signature)
    context = xmlsec.SignatureContext()
    for target in targets:
        reference = xmlsec.template.add_reference(signature, _DIGEST, uri=f"#{target.get(WSU_ID)}")
        xmlsec.template.add_transform(reference, _C14N)
        context.register_id(target, "Id", ns.WSU)
    if key_info is not None:
        signature.append(key_info)  # after SignatureValue, where XML-DSig puts KeyInfo
    return _sign(context, signature, key)


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
