"""EnvelopeSigner: what it adds, and that a consumer trusting the broker's certificate verifies it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from lxml import etree

from hiem import ns
from hiem.security import EnvelopeSigner, SecurityError, SecurityPolicy, mint_assertion
from hiem.security.devkeys import self_signed_identity

SECURITY = f"{{{ns.WSSE}}}Security"


def broker_assertion(identity, **overrides) -> bytes:  # type: ignore[no-untyped-def]
    """The broker's own system assertion (HIEM v2.0 §3.1.3): self-issued, holder-of-key on its own cert."""
    values = {
        "key_pem": identity.key_pem, "cert_pem": identity.cert_pem, "issuer": "CN=hiem broker,O=Example HIO",
        "subject_id": "UID=hiem-admin,O=Example HIO", "organization": "Example HIO",
        "organization_id": "urn:oid:2.16.840.1.113883.3.42", "home_community_id": "urn:oid:2.16.840.1.113883.3.42",
        "subject_confirmation_cert_pem": identity.cert_pem,
    }
    values.update(overrides)
    return mint_assertion(**values)


def consumer_policy(identity) -> SecurityPolicy:  # type: ignore[no-untyped-def]
    return SecurityPolicy(trusted_idp_certs=(identity.cert_pem,))


@pytest.mark.parametrize(("version", "must_understand"), [(ns.SOAP11, "1"), (ns.SOAP12, "true")])
def test_consumer_verifies_the_brokers_signature(kit, version: str, must_understand: str) -> None:
    broker = kit.gateway
    signer = EnvelopeSigner(broker.key_pem, broker.cert_pem, broker_assertion(broker))
    envelope = signer.sign(kit.envelope(version))
    security = envelope.find(f"{{{version}}}Header/{SECURITY}")
    assert security is not None
    assert security.get(f"{{{version}}}mustUnderstand") == must_understand
    assert [etree.QName(child).localname for child in security] == [
        "Timestamp", "BinarySecurityToken", "Assertion", "Signature"]
    result = kit.accept(kit.wire(envelope), consumer_policy(broker))
    assert result.authenticated
    assert result.role == "224608005" and result.purpose_of_use == "OPERATIONS"
    assert f"{{{version}}}Body" in result.signed_parts
    assert {f"{{{ns.WSA}}}To", f"{{{ns.WSA}}}Action", f"{{{ns.WSA}}}MessageID",
            f"{{{ns.WSU}}}Timestamp"} <= result.signed_parts


def test_signature_uses_exclusive_c14n_rsa_sha256_and_sha256_digests(kit) -> None:
    envelope = EnvelopeSigner(kit.gateway.key_pem, kit.gateway.cert_pem).sign(kit.envelope())
    signature = envelope.find(f".//{SECURITY}/{{{ns.DS}}}Signature")
    algorithms = {element.get("Algorithm") for element in signature.iter() if element.get("Algorithm")}
    assert algorithms == {"http://www.w3.org/2001/10/xml-exc-c14n#",
                          "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                          "http://www.w3.org/2001/04/xmlenc#sha256"}
    reference = signature.find(f"{{{ns.DS}}}KeyInfo/{{{ns.WSSE}}}SecurityTokenReference/{{{ns.WSSE}}}Reference")
    token = envelope.find(f".//{{{ns.WSSE}}}BinarySecurityToken")
    assert reference.get("URI") == "#" + token.get(f"{{{ns.WSU}}}Id")


def test_envelope_without_a_header_gets_one(kit) -> None:
    signer = EnvelopeSigner(kit.gateway.key_pem, kit.gateway.cert_pem)
    envelope = signer.sign(kit.envelope(ns.SOAP11, with_header=False))
    assert etree.QName(envelope[0]).localname == "Header"
    result = kit.accept(kit.wire(envelope), kit.policy(require_assertion=False))
    assert result.signed_parts == {f"{{{ns.SOAP11}}}Body", f"{{{ns.WSU}}}Timestamp"}


def test_message_signed_without_an_assertion_authenticates_a_pinned_signer(kit) -> None:
    result = kit.accept(kit.signed_without_assertion(), kit.policy(require_assertion=False))
    assert result.authenticated and result.assertion_id is None
    assert "gateway test identity" in (result.signer_subject or "")


def test_timestamp_lasts_lifetime_seconds(kit) -> None:
    envelope = EnvelopeSigner(kit.gateway.key_pem, kit.gateway.cert_pem, lifetime_seconds=60).sign(kit.envelope())
    created = envelope.find(f".//{{{ns.WSU}}}Created").text
    expires = envelope.find(f".//{{{ns.WSU}}}Expires").text
    parse = lambda text: datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: E731
    assert parse(expires) - parse(created) == timedelta(seconds=60)


def test_ecdsa_p256_keys_sign_with_ecdsa_sha256(kit) -> None:
    key_pem, cert_pem = self_signed_identity("ec broker", elliptic=True, days=1)
    identity = type("Identity", (), {"key_pem": key_pem, "cert_pem": cert_pem})()
    envelope = EnvelopeSigner(key_pem, cert_pem, broker_assertion(identity)).sign(kit.envelope())
    method = envelope.find(f".//{SECURITY}/{{{ns.DS}}}Signature//{{{ns.DS}}}SignatureMethod")
    assert method.get("Algorithm") == "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
    assert kit.accept(kit.wire(envelope), SecurityPolicy(trusted_idp_certs=(cert_pem,))).authenticated


@pytest.mark.parametrize("elliptic", [False, True], ids=["rsa-2048", "ec-p256"])
def test_message_signature_verifies_with_libxmlsec1(kit, elliptic: bool) -> None:
    """An implementation other than hiem's (and signxml's) checks the message signature hiem computes
    itself: libxmlsec1 canonicalizes each reference in its own way and must find the same digests."""
    import xmlsec

    key_pem, cert_pem = self_signed_identity("xmlsec check", elliptic=elliptic, days=1)
    envelope = kit.wire(EnvelopeSigner(key_pem, cert_pem).sign(kit.envelope(ns.SOAP12)))
    _verify_with_libxmlsec1(envelope, cert_pem)  # raises xmlsec.VerificationError on any mismatch
    envelope.find(f"{{{ns.SOAP12}}}Body").append(etree.Element("{urn:test}Added"))
    with pytest.raises(xmlsec.Error):
        _verify_with_libxmlsec1(envelope, cert_pem)


def _verify_with_libxmlsec1(envelope: etree._Element, cert_pem: bytes) -> None:
    import xmlsec

    context = xmlsec.SignatureContext()
    for element in envelope.iter():
        if isinstance(element.tag, str) and element.get(f"{{{ns.WSU}}}Id"):
            context.register_id(element, "Id", ns.WSU)
    context.key = xmlsec.Key.from_memory(cert_pem, xmlsec.constants.KeyDataFormatCertPem)
    context.verify(envelope.find(f".//{SECURITY}/{{{ns.DS}}}Signature"))


def test_signer_refuses_a_key_that_is_not_the_certificates(kit) -> None:
    with pytest.raises(ValueError, match="does not belong"):
        EnvelopeSigner(kit.attacker.key_pem, kit.gateway.cert_pem)


def test_signer_refuses_something_that_is_not_an_assertion(kit) -> None:
    with pytest.raises(ValueError, match="not a saml2:Assertion"):
        EnvelopeSigner(kit.gateway.key_pem, kit.gateway.cert_pem, b"<x/>")


def test_signing_twice_is_refused(kit) -> None:
    signer = EnvelopeSigner(kit.gateway.key_pem, kit.gateway.cert_pem)
    envelope = signer.sign(kit.envelope())
    with pytest.raises(ValueError, match="already signed"):
        signer.sign(envelope)


def test_existing_wsu_ids_are_reused(kit) -> None:
    envelope = kit.envelope()
    body = envelope.find(f"{{{ns.SOAP12}}}Body")
    body.set(f"{{{ns.WSU}}}Id", "body-1")
    EnvelopeSigner(kit.gateway.key_pem, kit.gateway.cert_pem).sign(envelope)
    uris = [r.get("URI") for r in envelope.iter(f"{{{ns.DS}}}Reference")]
    assert "#body-1" in uris


def test_broker_signer_mints_one_assertion_per_window_that_a_consumer_accepts_on_every_message(kit) -> None:
    from datetime import UTC

    from hiem.config import load_settings
    from hiem.security import MemoryNonceCache
    from hiem.security.setup import BrokerIdentity, BrokerSigner

    broker = kit.gateway
    settings = load_settings({"HIEM_DEV": "1", "HIEM_ASSERTION_LIFETIME": "120"})
    signer = BrokerSigner(settings, BrokerIdentity(broker.key_pem, broker.cert_pem))
    consumer = kit.verifier(consumer_policy(broker), cache=MemoryNonceCache())  # one nonce cache for all
    seen = set()
    for index in range(3):
        envelope = kit.wire(signer.sign(kit.envelope(ns.SOAP12)))
        assertion = envelope.find(f".//{SECURITY}/{{{ns.SAML2}}}Assertion")
        seen.add(assertion.get("ID"))
        result = consumer.verify(envelope)
        assert result.authenticated and result.role == "224608005", index
    assert len(seen) == 1, "holder-of-key without OneTimeUse: one assertion rides on every message of its window"
    assert assertion.find(f"{{{ns.SAML2}}}Conditions/{{{ns.SAML2}}}OneTimeUse") is None
    now = datetime.now(UTC)
    near_expiry = now + timedelta(seconds=120 * (1 - BrokerSigner.RENEW_AT) + 1)  # the configured window
    assert signer.assertion(now).get("ID") in seen
    assert signer.assertion(now + timedelta(seconds=60)).get("ID") in seen
    assert signer.assertion(near_expiry).get("ID") not in seen, "minted again before the old one expires"


def test_one_broker_signer_shared_by_many_threads_signs_every_message_validly(kit) -> None:
    """Sender threads share one BrokerSigner; libxmlsec1 signs with the GIL released, so the threads really
    do sign at the same time. Every message must still verify, each with its own signature and MessageID."""
    from concurrent.futures import ThreadPoolExecutor

    from hiem.config import load_settings
    from hiem.security import MemoryNonceCache
    from hiem.security.setup import BrokerIdentity, BrokerSigner

    broker = kit.gateway
    signer = BrokerSigner(load_settings({"HIEM_DEV": "1"}), BrokerIdentity(broker.key_pem, broker.cert_pem))
    with ThreadPoolExecutor(max_workers=8) as pool:
        signed = list(pool.map(lambda index: etree.tostring(signer.sign(kit.envelope(ns.SOAP12))), range(120)))
    consumer = kit.verifier(consumer_policy(broker), cache=MemoryNonceCache())
    signature_values = set()
    for body in signed:
        envelope = kit.wire(etree.fromstring(body))
        assert consumer.verify(envelope).authenticated  # the nonce cache refuses a repeated message
        signature_values.add(envelope.findtext(f".//{SECURITY}/{{{ns.DS}}}Signature/{{{ns.DS}}}SignatureValue"))
    assert len(signature_values) == len(signed)


def _outgoing_notify(kit, broker) -> bytes:  # type: ignore[no-untyped-def]
    """The Notify hiem builds for one delivery (reference parameter, hiem:Sequence), signed as the broker signs."""
    from datetime import UTC

    from hiem.store.deliveries import Claim
    from hiem.wsn.outgoing import build_delivery

    parameters = (b'<wsa:ReferenceParameters xmlns:wsa="http://www.w3.org/2005/08/addressing">'
                  b'<nhin:UserAddress xmlns:nhin="http://www.hhs.gov/healthit/nhin">agency-7</nhin:UserAddress>'
                  b"</wsa:ReferenceParameters>")
    claim = Claim(delivery_id=1, attempt=1, notification_id=41, subscription_id="sub-1",
                  consumer_address="https://agency.example.org/notify", consumer_reference_parameters=parameters,
                  manager_address="https://hiem.example.org/wsn/SubscriptionManager",
                  dialect="http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete", soap_version="1.2",
                  sequence=7, topic_namespace="http://www.hhs.gov/healthit/nhin",
                  topic_path="GIPSE/Biosurveillance/InfluenzaLikeIllness",
                  message_xml=b'<r:Report xmlns:r="urn:example:gipse"/>', producer_reference=b"",
                  created_at=datetime.now(UTC))
    signer = EnvelopeSigner(broker.key_pem, broker.cert_pem, broker_assertion(broker))
    return build_delivery(claim, signer).body


def test_outgoing_notify_signature_covers_every_header_hiem_adds(kit) -> None:
    broker = kit.gateway
    message = kit.wire(etree.fromstring(_outgoing_notify(kit, broker)))
    header = message.find(f"{{{ns.SOAP12}}}Header")
    added = {child.tag for child in header if child.tag != SECURITY}
    assert {f"{{{ns.HIEM}}}Sequence", "{http://www.hhs.gov/healthit/nhin}UserAddress"} <= added
    result = kit.accept(message, consumer_policy(broker))
    assert added <= result.signed_parts


@pytest.mark.parametrize(("tag", "value"), [(f"{{{ns.HIEM}}}Sequence", "8"),
                                            ("{http://www.hhs.gov/healthit/nhin}UserAddress", "agency-8")])
def test_changing_a_reference_parameter_or_the_sequence_breaks_the_signature(kit, tag, value) -> None:
    broker = kit.gateway
    message = kit.wire(etree.fromstring(_outgoing_notify(kit, broker)))
    message.find(f"{{{ns.SOAP12}}}Header/{tag}").text = value
    with pytest.raises(SecurityError, match="digest mismatch"):
        kit.accept(message, consumer_policy(broker))


def test_outgoing_assertion_is_valid_saml_with_hl7_ce_types(kit) -> None:
    from tests.support.saml_schema import resolved_xsi_types, schema_errors

    message = etree.fromstring(_outgoing_notify(kit, kit.gateway))
    assertion = message.find(f".//{SECURITY}/{{{ns.SAML2}}}Assertion")
    assert schema_errors(assertion) == []
    types = resolved_xsi_types(assertion)
    assert types["{urn:hl7-org:v3}Role"] == types["{urn:hl7-org:v3}PurposeOfUse"] == "{urn:hl7-org:v3}CE"
