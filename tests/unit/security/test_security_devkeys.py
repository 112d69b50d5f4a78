"""ensure_dev_identity, mint_assertion and wrap_with_assertion."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from lxml import etree

from hiem import ns, xmlsafe
from hiem.security import ensure_dev_identity, mint_assertion, wrap_with_assertion
from hiem.security.policy import HOLDER_OF_KEY, SENDER_VOUCHES
from tests.support.saml_schema import resolved_xsi_types, schema_errors

SAML = f"{{{ns.SAML2}}}"
HL7 = "{urn:hl7-org:v3}"


def test_dev_identity_is_created_once_with_a_private_key_file(tmp_path: Path) -> None:
    first = ensure_dev_identity(tmp_path / "keys")
    assert stat.S_IMODE(first.key_path.stat().st_mode) == 0o600
    second = ensure_dev_identity(tmp_path / "keys")
    assert (second.key_pem, second.cert_pem) == (first.key_pem, first.cert_pem)
    assert second.key_path.read_bytes() == first.key_pem


def test_dev_identity_is_a_self_signed_rsa_2048_certificate_valid_a_year(tmp_path: Path) -> None:
    identity = ensure_dev_identity(tmp_path)
    cert = x509.load_pem_x509_certificate(identity.cert_pem)
    key = load_pem_private_key(identity.key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert cert.subject == cert.issuer
    cert.verify_directly_issued_by(cert)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=364) < lifetime < timedelta(days=366)
    assert cert.not_valid_before_utc <= datetime.now(UTC)


def test_minted_assertion_is_valid_saml_and_its_coded_values_are_hl7_ce(kit) -> None:
    for confirmation in ({}, {"subject_confirmation_cert_pem": kit.idp.cert_pem}):
        assertion = xmlsafe.parse(kit.assertion(**confirmation))
        assert schema_errors(assertion) == []
        types = resolved_xsi_types(assertion)
        assert types[f"{HL7}Role"] == f"{HL7}CE"
        assert types[f"{HL7}PurposeOfUse"] == f"{HL7}CE"
    assert types[f"{SAML}SubjectConfirmationData"] == f"{SAML}KeyInfoConfirmationDataType"


def test_minted_assertion_carries_the_nhin_attributes(kit) -> None:
    assertion = xmlsafe.parse(kit.assertion(purpose_of_use="OPERATIONS"))
    names = [attribute.get("Name") for attribute in assertion.iter(f"{SAML}Attribute")]
    assert names == [
        "urn:oasis:names:tc:xspa:1.0:subject:subject-id",
        "urn:oasis:names:tc:xspa:1.0:subject:organization",
        "urn:oasis:names:tc:xspa:1.0:subject:organization-id",
        "urn:nhin:names:saml:homeCommunityId",
        "urn:oasis:names:tc:xacml:2.0:subject:role",
        "urn:oasis:names:tc:xspa:1.0:subject:purposeofuse",
    ]
    role = assertion.find(f".//{HL7}Role")
    assert (role.get("code"), role.get("codeSystem"), role.get("codeSystemName")) == (
        "224608005", "2.16.840.1.113883.6.96", "SNOMED_CT")
    purpose = assertion.find(f".//{HL7}PurposeOfUse")
    assert (purpose.get("code"), purpose.get("codeSystem")) == ("OPERATIONS", "2.16.840.1.113883.3.18.7.1")


def test_minted_assertion_places_the_signature_after_the_issuer(kit) -> None:
    assertion = xmlsafe.parse(kit.assertion())
    assert [etree.QName(child).localname for child in assertion][:3] == ["Issuer", "Signature", "Subject"]
    reference = assertion.find(f"{{{ns.DS}}}Signature/{{{ns.DS}}}SignedInfo/{{{ns.DS}}}Reference")
    assert reference.get("URI") == "#" + assertion.get("ID")


def test_subject_confirmation_is_holder_of_key_with_a_certificate_else_sender_vouches(kit) -> None:
    hok = xmlsafe.parse(kit.assertion())
    assert hok.find(f".//{SAML}SubjectConfirmation").get("Method") == HOLDER_OF_KEY
    assert hok.find(f".//{SAML}SubjectConfirmationData/{{{ns.DS}}}KeyInfo") is not None
    sv = xmlsafe.parse(kit.assertion(sender_vouches=True))
    assert sv.find(f".//{SAML}SubjectConfirmation").get("Method") == SENDER_VOUCHES


def test_explicit_id_audience_and_window(kit) -> None:
    start = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assertion = xmlsafe.parse(mint_assertion(
        key_pem=kit.idp.key_pem, cert_pem=kit.idp.cert_pem, issuer="CN=idp", subject_id="admin@example.org",
        organization="Org", organization_id="urn:oid:1.2", home_community_id="urn:oid:1.2.3",
        audience="https://hiem.example.org/", lifetime_seconds=120, not_before=start, assertion_id="_fixed"))
    assert assertion.get("ID") == "_fixed"
    conditions = assertion.find(f"{SAML}Conditions")
    assert (conditions.get("NotBefore"), conditions.get("NotOnOrAfter")) == (
        "2030-01-02T03:04:05.000Z", "2030-01-02T03:06:05.000Z")
    assert conditions.findtext(f"{SAML}AudienceRestriction/{SAML}Audience") == "https://hiem.example.org/"
    name_id = assertion.find(f".//{SAML}NameID")
    assert name_id.get("Format") == "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


def test_wrap_without_a_signer_only_adds_the_assertion(kit) -> None:
    envelope = wrap_with_assertion(kit.envelope(ns.SOAP11), kit.assertion(), None)
    security = envelope.find(f"{{{ns.SOAP11}}}Header/{{{ns.WSSE}}}Security")
    assert [etree.QName(child).localname for child in security] == ["Assertion"]
    assert security.get(f"{{{ns.SOAP11}}}mustUnderstand") == "1"
