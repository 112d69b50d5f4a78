"""Check (3): the saml2:Assertion in wsse:Security (HIEM v2.0 §3.1.1, NHIN Authorization Framework).

In order:

* the assertion carries exactly one enveloped ds:Signature whose one Reference is the assertion's own
  ID (SAML 2.0 core §5.4.2), verified by signxml with a *pinned* IdP certificate: when the signature
  names its certificate, it must be one of ``trusted_idp_certs`` byte for byte; when it does not, each
  pinned certificate is tried. The certificate in the message is never trusted on its own say-so;
* everything below is read from the canonical copy signxml returns (``signed_xml``), never from the
  message tree, so unsigned additions (comments, a second Subject...) are simply not seen;
* Issuer present; IssueInstant not in the future; Conditions NotBefore/NotOnOrAfter honoured with
  the clock skew (core §2.5.1.2), NotOnOrAfter required and the lifetime bounded; each
  AudienceRestriction must name ``audience`` when one is configured (§2.5.1.4); an unknown Condition
  makes the assertion invalid (§2.5.1: "Indeterminate" is not "Valid");
* SubjectConfirmation: holder-of-key preferred, then sender-vouches, then bearer, but only methods in
  ``subject_confirmation_methods``. Holder-of-key must carry the key (X509Certificate or KeyValue) in
  SubjectConfirmationData/ds:KeyInfo; the signature check then proves the sender holds that key;
* the NHIN attributes (subject-id, organization, organization-id, homeCommunityId, role,
  purposeofuse). Their presence is not enforced here: what a caller may do is an authorization
  decision, made by the handler from the result.

The assertion ID is recorded in the nonce cache only after the message signature verified too.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import cast

from cryptography import x509
from lxml import etree
from signxml import VerifyResult

from hiem.ns import DS, SAML2
from hiem.security._inbound import Inbound, VerifiedAssertion, call_signxml, check_algorithms, signature_configuration
from hiem.security._processor import cert_der, cert_from_base64, children, parse_instant, q, text_of
from hiem.security._verifier import SignatureVerifier
from hiem.security.errors import FaultSubcode, SecurityError
from hiem.security.policy import BEARER, HOLDER_OF_KEY, SENDER_VOUCHES

SUBJECT_ID = "urn:oasis:names:tc:xspa:1.0:subject:subject-id"
ORGANIZATION = "urn:oasis:names:tc:xspa:1.0:subject:organization"
ORGANIZATION_ID = "urn:oasis:names:tc:xspa:1.0:subject:organization-id"
HOME_COMMUNITY_IDS = ("urn:nhin:names:saml:homeCommunityId", "urn:ihe:iti:xca:2010:homeCommunityId")
ROLE = "urn:oasis:names:tc:xacml:2.0:subject:role"
PURPOSE_OF_USE = "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse"
_PREFERENCE = (HOLDER_OF_KEY, SENDER_VOUCHES, BEARER)
_KNOWN_CONDITIONS = {q(SAML2, "AudienceRestriction"), q(SAML2, "OneTimeUse"), q(SAML2, "ProxyRestriction")}


def _token_error(reason: str) -> SecurityError:
    return SecurityError.authentication(reason, FaultSubcode.INVALID_SECURITY_TOKEN)


class AssertionCheck:
    """Verify the assertion's signature, trust, validity window, audience and confirmation."""

    def verify(self, inbound: Inbound) -> None:
        if not inbound.active:
            return
        assertion = inbound.assertion_element
        if assertion is None:
            if inbound.policy.require_assertion:
                raise SecurityError.authentication("wsse:Security must carry a SAML 2.0 assertion")
            return
        signed = self._verified_copy(assertion, inbound)
        inbound.assertion = self._read(signed, inbound)

    def _verified_copy(self, assertion: etree._Element, inbound: Inbound) -> etree._Element:
        assertion_id = assertion.get("ID")
        if not assertion_id:
            raise _token_error("the SAML assertion has no ID")
        signatures = children(assertion, q(DS, "Signature"))
        if not signatures:
            raise _token_error("the SAML assertion is not signed")
        if len(signatures) > 1:
            raise _token_error("the SAML assertion carries more than one signature")
        references = check_algorithms(signatures[0], inbound.policy, "assertion signature")
        if len(references) != 1 or references[0].get("URI") != f"#{assertion_id}":
            raise _token_error("the assertion signature does not reference the assertion itself")
        trusted = inbound.policy.idp_certificates
        if not trusted:
            raise SecurityError.authentication("no identity provider certificate is trusted; assertion refused")
        embedded = signatures[0].find(f"{q(DS, 'KeyInfo')}/{q(DS, 'X509Data')}/{q(DS, 'X509Certificate')}")
        candidates = trusted
        if embedded is not None:
            try:
                der = cert_der(cert_from_base64(embedded.text))
            except ValueError as exc:
                raise _token_error("the assertion signature carries an unreadable certificate") from exc
            candidates = tuple(cert for cert in trusted if cert_der(cert) == der)
            if not candidates:
                raise SecurityError.authentication("the SAML assertion is signed by a certificate that is not trusted")
        data = etree.tostring(assertion, with_tail=False)
        failure: SecurityError | None = None
        for cert in candidates:
            try:
                result = call_signxml(lambda cert=cert: self._signxml(data, cert, inbound),
                                      SecurityError.authentication, "assertion signature")
            except SecurityError as exc:
                failure = exc
                continue
            signed = result.signed_xml
            if signed is None or signed.tag != q(SAML2, "Assertion") or signed.get("ID") != assertion_id:
                raise _token_error("the assertion signature does not cover the assertion")
            return signed
        assert failure is not None
        raise failure

    @staticmethod
    def _signxml(data: bytes, cert: x509.Certificate, inbound: Inbound) -> VerifyResult:
        # An enveloped signature, child of the Assertion (SAML 2.0 core §5.4.1), one Reference.
        config = signature_configuration(inbound, location="./", expect_references=1)
        return cast(VerifyResult, SignatureVerifier().verify(data, x509_cert=cert, expect_config=config))

    def _read(self, signed: etree._Element, inbound: Inbound) -> VerifiedAssertion:
        if signed.get("Version") != "2.0":
            raise _token_error("the SAML assertion is not version 2.0")
        issuer = text_of(signed.find(q(SAML2, "Issuer")))
        if issuer is None:
            raise _token_error("the SAML assertion has no Issuer")
        now, skew = inbound.now, inbound.skew
        issued = _instant(signed.get("IssueInstant"), "IssueInstant")
        if issued is None:
            raise _token_error("the SAML assertion has no IssueInstant")
        if issued > now + skew:
            raise SecurityError.expired("the SAML assertion was issued in the future",
                                        FaultSubcode.INVALID_SECURITY_TOKEN)
        not_on_or_after = self._conditions(signed, inbound, issued)
        subject = signed.find(q(SAML2, "Subject"))
        if subject is None:
            raise _token_error("the SAML assertion has no Subject")
        method, key_info = self._confirmation(subject, inbound)
        hok_cert, hok_key_value = _confirmation_key(key_info) if method == HOLDER_OF_KEY else (None, None)
        values = _attribute_values(signed)
        return VerifiedAssertion(
            issuer=issuer, assertion_id=str(signed.get("ID")), not_on_or_after=not_on_or_after,
            confirmation_method=method, hok_cert=hok_cert, hok_key_value=hok_key_value,
            subject_id=text_of(subject.find(q(SAML2, "NameID"))),
            subject_name=_plain(values.get(SUBJECT_ID)),
            organization=_plain(values.get(ORGANIZATION)),
            organization_id=_plain(values.get(ORGANIZATION_ID)),
            home_community_id=next((_plain(values[n]) for n in HOME_COMMUNITY_IDS if n in values), None),
            role=_coded(values.get(ROLE)),
            purpose_of_use=_coded(values.get(PURPOSE_OF_USE)),
            one_time_use=signed.find(f"{q(SAML2, 'Conditions')}/{q(SAML2, 'OneTimeUse')}") is not None,
        )

    @staticmethod
    def _conditions(signed: etree._Element, inbound: Inbound, issued: datetime) -> datetime:
        policy, now, skew = inbound.policy, inbound.now, inbound.skew
        conditions = signed.find(q(SAML2, "Conditions"))
        not_after = _instant(conditions.get("NotOnOrAfter") if conditions is not None else None, "NotOnOrAfter")
        if conditions is None or not_after is None:
            raise SecurityError.policy("the SAML assertion must have Conditions with NotOnOrAfter",
                                       FaultSubcode.FAILED_AUTHENTICATION)
        not_before = _instant(conditions.get("NotBefore"), "NotBefore")
        if not_before is not None and now + skew < not_before:
            raise SecurityError.expired("the SAML assertion is not yet valid", FaultSubcode.INVALID_SECURITY_TOKEN)
        if now >= not_after + skew:
            raise SecurityError.expired("the SAML assertion has expired", FaultSubcode.INVALID_SECURITY_TOKEN)
        if not_after - (not_before or issued) > timedelta(seconds=policy.max_assertion_lifetime_seconds):
            raise SecurityError.policy("the SAML assertion is valid for longer than this broker accepts",
                                       FaultSubcode.FAILED_AUTHENTICATION)
        for condition in children(conditions):
            if condition.tag not in _KNOWN_CONDITIONS:
                raise SecurityError.policy(f"the SAML assertion has an unsupported condition {condition.tag}",
                                           FaultSubcode.FAILED_AUTHENTICATION)
            if condition.tag == q(SAML2, "AudienceRestriction") and policy.audience is not None:
                audiences = {text_of(a) for a in children(condition, q(SAML2, "Audience"))}
                if policy.audience not in audiences:
                    raise SecurityError.policy("the SAML assertion is not meant for this broker (audience)",
                                               FaultSubcode.FAILED_AUTHENTICATION)
        return not_after

    @staticmethod
    def _confirmation(subject: etree._Element, inbound: Inbound) -> tuple[str, etree._Element | None]:
        by_method: dict[str, etree._Element] = {}
        for confirmation in children(subject, q(SAML2, "SubjectConfirmation")):
            by_method.setdefault(confirmation.get("Method") or "", confirmation)
        method = next((m for m in _PREFERENCE if m in by_method and m in inbound.policy.subject_confirmation_methods),
                      None)
        if method is None:
            raise SecurityError.policy("the SAML assertion's subject confirmation method is not accepted",
                                       FaultSubcode.FAILED_AUTHENTICATION)
        data = by_method[method].find(q(SAML2, "SubjectConfirmationData"))
        if data is None:
            return method, None
        not_before = _instant(data.get("NotBefore"), "SubjectConfirmationData NotBefore")
        not_after = _instant(data.get("NotOnOrAfter"), "SubjectConfirmationData NotOnOrAfter")
        if (not_before is not None and inbound.now + inbound.skew < not_before) or (
            not_after is not None and inbound.now >= not_after + inbound.skew
        ):
            raise SecurityError.expired("the SAML subject confirmation is outside its validity window",
                                        FaultSubcode.INVALID_SECURITY_TOKEN)
        return method, data.find(q(DS, "KeyInfo"))


def _instant(text: str | None, what: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise _token_error(f"the SAML assertion has an unreadable {what}") from exc


def _confirmation_key(key_info: etree._Element | None) -> tuple[x509.Certificate | None, etree._Element | None]:
    """The holder-of-key key: an X.509 certificate, or a ds:KeyValue (the form CONNECT gateways send)."""
    if key_info is not None:
        cert = key_info.find(f"{q(DS, 'X509Data')}/{q(DS, 'X509Certificate')}")
        if cert is not None:
            try:
                return cert_from_base64(cert.text), None
            except ValueError as exc:
                raise _token_error("the holder-of-key certificate is unreadable") from exc
        key_value = key_info.find(q(DS, "KeyValue"))
        if key_value is not None:
            return None, copy.deepcopy(key_value)
    raise _token_error("the holder-of-key confirmation carries no key in SubjectConfirmationData/ds:KeyInfo")


def _attribute_values(signed: etree._Element) -> dict[str, etree._Element]:
    """The first AttributeValue of each named Attribute in the assertion's AttributeStatements."""
    values: dict[str, etree._Element] = {}
    for statement in children(signed, q(SAML2, "AttributeStatement")):
        for attribute in children(statement, q(SAML2, "Attribute")):
            value = attribute.find(q(SAML2, "AttributeValue"))
            name = attribute.get("Name")
            if name and value is not None:
                values.setdefault(name, value)
    return values


def _plain(value: etree._Element | None) -> str | None:
    return text_of(value)


def _coded(value: etree._Element | None) -> str | None:
    """The code of an HL7 CE value (hl7:Role, hl7:PurposeOfUse or the older hl7:PurposeForUse), or plain text."""
    if value is None:
        return None
    for child in children(value):
        if child.get("code"):
            return child.get("code")
    return text_of(value)
