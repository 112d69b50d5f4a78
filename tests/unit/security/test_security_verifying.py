"""EnvelopeVerifier against real signed messages: what is accepted, and each way a message is refused."""

from __future__ import annotations

import base64
import copy
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from lxml import etree

from hiem import ns, xmlsafe
from hiem.security import AlertType, FaultSubcode, SecurityError, SecurityPolicy
from hiem.security.policy import BEARER, HOLDER_OF_KEY, SENDER_VOUCHES

WSSE_SECURITY = f"{{{ns.WSSE}}}Security"


def security_of(envelope: etree._Element) -> etree._Element:
    found = envelope.find(f"*/{WSSE_SECURITY}")
    assert found is not None
    return found


# --- accepted ------------------------------------------------------------------------------------------------


def test_valid_holder_of_key_message_is_accepted_with_the_nhin_attributes(kit) -> None:
    result = kit.accept(kit.message())
    assert result.authenticated
    assert result.subject_id == "UID=jdoe,O=Example HIO"
    assert result.subject_name == "Jane Doe"
    assert result.organization == "Example HIO"
    assert result.organization_id == "urn:oid:2.16.840.1.113883.3.42"
    assert result.home_community_id == "urn:oid:2.16.840.1.113883.3.42.1"
    assert result.role == "224608005"
    assert result.purpose_of_use == "OPERATIONS"
    assert result.issuer == "CN=Test IdP,O=Example HIO"
    assert result.assertion_id and result.assertion_id.startswith("_")
    assert result.signer_subject is not None and "client test identity" in result.signer_subject
    assert result.signed_parts == {
        f"{{{ns.SOAP12}}}Body", f"{{{ns.WSU}}}Timestamp",
        f"{{{ns.WSA}}}To", f"{{{ns.WSA}}}Action", f"{{{ns.WSA}}}MessageID",
    }


def test_sender_vouches_assertion_signed_by_a_pinned_gateway_is_accepted(kit) -> None:
    message = kit.message(kit.assertion(sender_vouches=True), signer=kit.gateway)
    result = kit.accept(message)
    assert result.authenticated and result.subject_name == "Jane Doe"
    assert "gateway test identity" in (result.signer_subject or "")


def test_audience_matching_the_broker_is_accepted(kit) -> None:
    message = kit.message(kit.assertion(audience="https://hiem.example.org/"))
    assert kit.accept(message, kit.policy(audience="https://hiem.example.org/")).authenticated


def test_time_checks_allow_the_configured_clock_skew(kit) -> None:
    message = kit.message(kit.assertion(not_before=datetime.now(UTC) + timedelta(seconds=60)))
    assert kit.accept(message).authenticated  # 60 s ahead is within the default 120 s skew


def test_role_and_purpose_are_read_from_hl7_coded_values(kit) -> None:
    message = kit.message(kit.assertion(role_code="112247003", purpose_of_use="TREATMENT"))
    result = kit.accept(message)
    assert (result.role, result.purpose_of_use) == ("112247003", "TREATMENT")


# --- refused: the assertion ----------------------------------------------------------------------------------


def test_assertion_signed_by_an_untrusted_key_is_refused(kit) -> None:
    forged = kit.assertion(issuer_identity=kit.attacker)
    kit.refused(lambda: kit.accept(kit.message(forged)), AlertType.AUTHENTICATION, FaultSubcode.FAILED_AUTHENTICATION,
                "not trusted")


def test_assertion_claiming_the_trusted_certificate_but_signed_by_another_key_is_refused(kit) -> None:
    forged = kit.assertion(key_pem=kit.attacker.key_pem)  # embeds the IdP's certificate, attacker's signature
    kit.refused(lambda: kit.accept(kit.message(forged)), AlertType.AUTHENTICATION, FaultSubcode.FAILED_AUTHENTICATION,
                "does not verify")


def test_assertion_from_an_idp_that_is_not_pinned_is_refused(kit) -> None:
    policy = kit.policy(trusted_idp_certs=(kit.gateway.cert_pem,))
    kit.refused(lambda: kit.accept(kit.message(), policy), AlertType.AUTHENTICATION, FaultSubcode.FAILED_AUTHENTICATION,
                "not trusted")


def test_no_trusted_idp_configured_refuses_every_assertion(kit) -> None:
    policy = kit.policy(trusted_idp_certs=())
    kit.refused(lambda: kit.accept(kit.message(), policy), AlertType.AUTHENTICATION, FaultSubcode.FAILED_AUTHENTICATION,
                "no identity provider")


def test_expired_assertion_is_refused(kit, now) -> None:
    old = kit.assertion(not_before=now - timedelta(hours=2), lifetime_seconds=300)
    kit.refused(lambda: kit.accept(kit.message(old)), AlertType.EXPIRED, FaultSubcode.INVALID_SECURITY_TOKEN,
                "has expired")


def test_not_yet_valid_assertion_is_refused(kit, now) -> None:
    early = kit.assertion(not_before=now + timedelta(hours=1))
    with pytest.raises(SecurityError) as caught:
        kit.accept(kit.message(early))
    assert caught.value.alert_type is AlertType.EXPIRED
    assert caught.value.subcode is FaultSubcode.INVALID_SECURITY_TOKEN
    assert "future" in caught.value.reason or "not yet valid" in caught.value.reason


def test_assertion_valid_for_too_long_is_refused(kit) -> None:
    long_lived = kit.assertion(lifetime_seconds=9 * 3600)
    kit.refused(lambda: kit.accept(kit.message(long_lived)), AlertType.POLICY, FaultSubcode.FAILED_AUTHENTICATION,
                "longer than")


def test_unsigned_assertion_is_refused(kit) -> None:
    assertion = xmlsafe.parse(kit.assertion())
    signature = assertion.find(f"{{{ns.DS}}}Signature")
    assertion.remove(signature)
    kit.refused(lambda: kit.accept(kit.message(etree.tostring(assertion))), AlertType.AUTHENTICATION,
                FaultSubcode.INVALID_SECURITY_TOKEN, "not signed")


def test_assertion_changed_after_signing_is_refused(kit) -> None:
    assertion = xmlsafe.parse(kit.assertion())
    assertion.find(f".//{{{ns.SAML2}}}NameID").text = "UID=root,O=Example HIO"
    kit.refused(lambda: kit.accept(kit.message(etree.tostring(assertion))), AlertType.AUTHENTICATION,
                FaultSubcode.FAILED_AUTHENTICATION, "digest mismatch")


def test_audience_mismatch_is_refused(kit) -> None:
    message = kit.message(kit.assertion(audience="https://somewhere-else.example.net/"))
    kit.refused(lambda: kit.accept(message, kit.policy(audience="https://hiem.example.org/")), AlertType.POLICY,
                FaultSubcode.FAILED_AUTHENTICATION, "audience")


def test_missing_assertion_is_refused_when_required(kit) -> None:
    kit.refused(lambda: kit.accept(kit.signed_without_assertion()), AlertType.AUTHENTICATION,
                FaultSubcode.FAILED_AUTHENTICATION, "SAML 2.0 assertion")


def bearer_assertion(kit) -> bytes:  # type: ignore[no-untyped-def]
    assertion = xmlsafe.parse(kit.assertion(sender_vouches=True))
    assertion.find(f".//{{{ns.SAML2}}}SubjectConfirmation").set("Method", BEARER)
    return kit.resign(assertion)


def test_bearer_assertions_are_refused_by_default(kit) -> None:
    assert BEARER not in SecurityPolicy().subject_confirmation_methods
    kit.refused(lambda: kit.accept(kit.message(bearer_assertion(kit), signer=kit.gateway)), AlertType.POLICY,
                FaultSubcode.FAILED_AUTHENTICATION, "confirmation method")


def test_bearer_assertions_are_accepted_when_the_policy_lists_bearer(kit) -> None:
    policy = kit.policy(subject_confirmation_methods=frozenset({HOLDER_OF_KEY, SENDER_VOUCHES, BEARER}))
    result = kit.accept(kit.message(bearer_assertion(kit), signer=kit.gateway), policy)
    assert result.authenticated and result.subject_name == "Jane Doe"


def test_policy_limited_to_holder_of_key_refuses_sender_vouches(kit) -> None:
    policy = kit.policy(subject_confirmation_methods=frozenset({HOLDER_OF_KEY}))
    message = kit.message(kit.assertion(sender_vouches=True), signer=kit.gateway)
    kit.refused(lambda: kit.accept(message, policy), AlertType.POLICY, FaultSubcode.FAILED_AUTHENTICATION,
                "confirmation method")


def test_holder_of_key_given_as_a_key_value_is_accepted(kit) -> None:
    # CONNECT gateways put ds:KeyValue/RSAKeyValue, not a certificate, in SubjectConfirmationData.
    assertion = xmlsafe.parse(kit.assertion())
    key_info = assertion.find(f".//{{{ns.SAML2}}}SubjectConfirmationData/{{{ns.DS}}}KeyInfo")
    numbers = x509.load_pem_x509_certificate(kit.client.cert_pem).public_key().public_numbers()
    for child in list(key_info):
        key_info.remove(child)
    rsa_value = etree.SubElement(etree.SubElement(key_info, f"{{{ns.DS}}}KeyValue"), f"{{{ns.DS}}}RSAKeyValue")
    etree.SubElement(rsa_value, f"{{{ns.DS}}}Modulus").text = _b64_int(numbers.n)
    etree.SubElement(rsa_value, f"{{{ns.DS}}}Exponent").text = _b64_int(numbers.e)
    message = kit.message(kit.resign(assertion))
    assert kit.accept(message).authenticated
    with pytest.raises(SecurityError, match="does not verify"):
        kit.accept(kit.message(kit.resign(copy.deepcopy(assertion)), signer=kit.attacker))


def _b64_int(value: int) -> str:
    return base64.b64encode(value.to_bytes((value.bit_length() + 7) // 8, "big")).decode()


def test_sender_vouches_signed_by_an_unpinned_key_is_refused(kit) -> None:
    message = kit.message(kit.assertion(sender_vouches=True), signer=kit.attacker)
    kit.refused(lambda: kit.accept(message), AlertType.AUTHENTICATION, FaultSubcode.FAILED_AUTHENTICATION,
                "not trusted")


def test_holder_of_key_message_signed_with_another_key_is_refused(kit) -> None:
    # The attacker holds the client's assertion but not the client's key; even a pinned gateway key fails.
    for signer in (kit.attacker, kit.gateway):
        with pytest.raises(SecurityError) as caught:
            kit.accept(kit.message(kit.assertion(), signer=signer))
        assert caught.value.alert_type is AlertType.SIGNATURE
        assert caught.value.subcode is FaultSubcode.FAILED_CHECK


# --- refused: the message ----------------------------------------------------------------------------------


def test_message_without_security_header_is_refused_by_the_strict_policy(kit) -> None:
    kit.refused(lambda: kit.accept(kit.envelope()), AlertType.AUTHENTICATION, FaultSubcode.INVALID_SECURITY,
                "no wsse:Security")


def test_unsigned_message_is_refused_when_a_signature_is_required(kit) -> None:
    message = kit.message(sign=False)
    kit.refused(lambda: kit.accept(message), AlertType.SIGNATURE, FaultSubcode.INVALID_SECURITY, "not signed")


def test_body_changed_after_signing_is_refused(kit) -> None:
    message = kit.message()
    message.find(".//{urn:example:payload}p").text = "transfer all records to the attacker"
    kit.refused(lambda: kit.accept(message), AlertType.SIGNATURE, FaultSubcode.FAILED_CHECK, "digest mismatch")


def test_addressing_header_changed_after_signing_is_refused(kit) -> None:
    message = kit.message()
    message.find(f".//{{{ns.WSA}}}To").text = "https://evil.example.net/"
    kit.refused(lambda: kit.accept(message), AlertType.SIGNATURE, FaultSubcode.FAILED_CHECK, "digest mismatch")


def test_unsigned_addressing_header_added_after_signing_is_refused(kit) -> None:
    message = kit.message()
    reply_to = etree.SubElement(message.find(f"{{{ns.SOAP12}}}Header"), f"{{{ns.WSA}}}ReplyTo")
    etree.SubElement(reply_to, f"{{{ns.WSA}}}Address").text = "https://evil.example.net/"
    kit.refused(lambda: kit.accept(message), AlertType.SIGNATURE, FaultSubcode.FAILED_CHECK, "wsa:ReplyTo")


def test_expired_timestamp_is_refused(kit, now) -> None:
    message = kit.message()  # signer lifetime 300 s; the assertion lives an hour
    later = now + timedelta(minutes=10)
    kit.refused(lambda: kit.accept(message, now=lambda: later), AlertType.EXPIRED, FaultSubcode.MESSAGE_EXPIRED,
                "has expired")


def test_timestamp_from_the_future_is_refused(kit, now) -> None:
    message = kit.message()
    earlier = now - timedelta(minutes=10)
    kit.refused(lambda: kit.accept(message, now=lambda: earlier), AlertType.EXPIRED, FaultSubcode.MESSAGE_EXPIRED,
                "future")


def test_message_older_than_the_replay_window_is_refused(kit, now) -> None:
    message = kit.message()
    policy = kit.policy(freshness_window_seconds=30, clock_skew_seconds=0)
    later = now + timedelta(seconds=60)
    kit.refused(lambda: kit.accept(message, policy, now=lambda: later), AlertType.EXPIRED, FaultSubcode.MESSAGE_EXPIRED,
                "too old")


def test_missing_timestamp_is_refused_when_a_signature_is_required(kit) -> None:
    message = kit.message(sign=False)
    kit.refused(lambda: kit.accept(message, kit.policy()), AlertType.SIGNATURE, FaultSubcode.INVALID_SECURITY,
                "not signed")
    timestampless = kit.message()
    security = security_of(timestampless)
    security.remove(security.find(f"{{{ns.WSU}}}Timestamp"))
    with pytest.raises(SecurityError) as caught:  # its Reference no longer resolves
        kit.accept(timestampless)
    assert caught.value.alert_type is AlertType.SIGNATURE


def test_sha1_signature_is_refused(kit) -> None:
    message = kit.sha1_signed(kit.envelope())
    error = kit.refused(lambda: kit.accept(message, kit.policy(require_assertion=False)), AlertType.POLICY,
                        FaultSubcode.UNSUPPORTED_ALGORITHM, "not allowed")
    assert "rsa-sha1" in error.reason


def test_not_an_envelope_is_refused(kit) -> None:
    kit.refused(lambda: kit.accept(xmlsafe.parse(b"<Envelope/>")), AlertType.POLICY, FaultSubcode.INVALID_SECURITY,
                "not a SOAP")


def test_two_security_headers_are_refused(kit) -> None:
    message = kit.message()
    security = security_of(message)
    security.addnext(copy.deepcopy(etree.Element(WSSE_SECURITY)))
    kit.refused(lambda: kit.accept(message), AlertType.POLICY, FaultSubcode.INVALID_SECURITY, "more than one")
