"""Production mode (no --dev) over real HTTP: SAML assertions and WS-Security signatures on every message,
refusals as faults plus ATNA Security Alerts, authorization by organization, signed outgoing Notify,
and SSRF refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from hiem import ns
from hiem.security import (
    EnvelopeSigner,
    EnvelopeVerifier,
    MemoryNonceCache,
    SecurityPolicy,
    ensure_dev_identity,
    mint_assertion,
    wrap_with_assertion,
)
from tests.conftest import Broker, start_broker
from tests.support import wsn
from tests.support.brokers import count_security_alerts as _alerts
from tests.support.brokers import run_cli as _cli

pytestmark = pytest.mark.slow
AGENCY = "urn:oid:2.16.840.1.113883.3.1001"
OTHER = "urn:oid:2.16.840.1.113883.3.2002"


class Party:
    """An identity provider plus a client holding a key the IdP vouches for (holder-of-key)."""

    def __init__(self, tmp: Path, name: str, organization_id: str) -> None:
        self.idp = ensure_dev_identity(tmp / f"{name}-idp", common_name=f"{name} IdP")
        self.client = ensure_dev_identity(tmp / f"{name}-client", common_name=f"{name} client")
        self.organization_id = organization_id

    def assertion(self, **overrides: object) -> bytes:
        values: dict[str, object] = dict(
            key_pem=self.idp.key_pem, cert_pem=self.idp.cert_pem, issuer="https://idp.example.org",
            subject_id="jane.doe@agency.example.org", organization="Example Agency",
            organization_id=self.organization_id, home_community_id=self.organization_id,
            subject_confirmation_cert_pem=self.client.cert_pem)
        values.update(overrides)
        return mint_assertion(**values)  # type: ignore[arg-type]

    def sign(self, data: bytes, assertion: bytes | None = None) -> bytes:
        envelope = etree.fromstring(data)
        signer = EnvelopeSigner(self.client.key_pem, self.client.cert_pem)
        wrap_with_assertion(envelope, assertion or self.assertion(), signer)
        return etree.tostring(envelope)


def _request(operation: str, body: str, headers: str = "") -> bytes:
    return wsn.envelope(body, action=wsn.ACTIONS[operation], headers=headers)


def _post(broker: Broker, operation: str, data: bytes):  # type: ignore[no-untyped-def]
    return wsn.post(broker.url, f"/wsn/{wsn.ENDPOINT_OF[operation]}", data, action=wsn.ACTIONS[operation])


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("security")
    agency, other = Party(tmp, "agency", AGENCY), Party(tmp, "other", OTHER)
    broker_id = ensure_dev_identity(tmp / "broker", common_name="hiem broker")
    env = {"HIEM_IDP_CERTS": f"{agency.idp.cert_path},{other.idp.cert_path}",
           "HIEM_SIGNING_KEY": str(broker_id.key_path), "HIEM_SIGNING_CERT": str(broker_id.cert_path)}
    running = start_broker("embedded", tmp / "prod", dev=False, HIEM_ALLOW_PRIVATE_CONSUMERS="1", **env)
    strict = start_broker("embedded", tmp / "strict", dev=False, **env)
    try:
        for target in (running, strict):
            _cli(target, "authz", "allow", AGENCY, "subscribe", "nhin:GIPSE")
            _cli(target, "authz", "allow", AGENCY, "publish", "nhin:GIPSE/Biosurveillance")
            _cli(target, "authz", "allow", OTHER, "subscribe", "nhin:GIPSE")
        yield running, strict, agency, other, broker_id
    finally:
        running.stop()
        strict.stop()


def test_signed_messages_flow_and_the_consumer_verifies_the_broker(world, consumer):
    broker, _, agency, _, broker_id = world
    response = _post(broker, "Subscribe", agency.sign(_request("Subscribe", wsn.subscribe_body(consumer.url))))
    assert response.status_code == 200, response.text
    published = _post(broker, "Notify", agency.sign(_request("Notify", wsn.notify_body())))
    assert published.status_code == 202, published.text
    envelope = consumer.wait_for(1)[0].envelope()
    policy = SecurityPolicy(trusted_idp_certs=(broker_id.cert_pem,), trusted_signer_certs=(broker_id.cert_pem,))
    result = EnvelopeVerifier(policy, MemoryNonceCache()).verify(envelope)
    assert result.authenticated
    assert ns.qname(ns.SOAP12, "Body") in result.signed_parts
    assert result.organization_id == "urn:oid:2.16.840.1.113883.3.0"


def _refusals(agency: Party, other_idp_key: bytes, consumer_url: str) -> dict[str, bytes]:
    body = wsn.subscribe_body(consumer_url)
    now = datetime.now(UTC)
    forged = agency.assertion(key_pem=other_idp_key)  # signed by a key no configured IdP holds
    tampered = agency.sign(_request("Subscribe", body)).replace(b"InfluenzaLikeIllness", b"Pneumonia")
    return {
        "unsigned, no assertion": _request("Subscribe", body),
        "forged assertion": agency.sign(_request("Subscribe", body), forged),
        "expired assertion": agency.sign(_request("Subscribe", body), agency.assertion(
            not_before=now - timedelta(hours=2), lifetime_seconds=600)),
        "not yet valid assertion": agency.sign(_request("Subscribe", body), agency.assertion(
            not_before=now + timedelta(hours=1))),
        "wrong issuer certificate": agency.sign(_request("Subscribe", body), agency.assertion(
            key_pem=agency.client.key_pem, cert_pem=agency.client.cert_pem)),
        "tampered body": tampered,
        "assertion only, message unsigned": etree.tostring(wrap_with_assertion(
            etree.fromstring(_request("Subscribe", body)), agency.assertion(), None)),
    }


@pytest.mark.parametrize("case", ["unsigned, no assertion", "forged assertion", "expired assertion",
                                  "not yet valid assertion", "wrong issuer certificate", "tampered body",
                                  "assertion only, message unsigned"])
def test_bad_security_is_refused_and_audited(world, consumer, case):
    broker, _, agency, other, _ = world
    before = _alerts(broker)
    response = _post(broker, "Subscribe", _refusals(agency, other.idp.key_pem, consumer.url)[case])
    assert response.status_code == 400, response.text
    fault = wsn.body_element(response)
    assert fault.findtext(f"{{{ns.SOAP12}}}Code/{{{ns.SOAP12}}}Value") == "s:Sender"
    subcode = fault.find(f"{{{ns.SOAP12}}}Code/{{{ns.SOAP12}}}Subcode/{{{ns.SOAP12}}}Value")
    prefix = subcode.text.split(":")[0]
    assert subcode.nsmap[prefix] == ns.WSSE
    assert _alerts(broker) == before + 1


def test_replayed_message_is_refused(world, consumer):
    broker, _, agency, _, _ = world
    data = agency.sign(_request("Subscribe", wsn.subscribe_body(consumer.url)))
    assert _post(broker, "Subscribe", data).status_code == 200
    again = _post(broker, "Subscribe", data)
    assert again.status_code == 400 and "already received" in again.text


def test_authorization_by_organization(world, consumer):
    broker, _, agency, other, _ = world
    before = _alerts(broker)
    not_allowed = _post(broker, "Notify", other.sign(_request("Notify", wsn.notify_body())))
    assert not_allowed.status_code == 400, not_allowed.text
    outside = wsn.subscribe_body(consumer.url, topic="nhin:DeidentifiedPopulationHealthData/Biosurveillance/Influenza")
    refused = _post(broker, "Subscribe", agency.sign(_request("Subscribe", outside)))
    assert etree.QName(wsn.fault_detail(refused)).localname == "SubscribeCreationFailedFault"
    subscription = wsn.subscription_id(_post(broker, "Subscribe", agency.sign(_request(
        "Subscribe", wsn.subscribe_body(consumer.url)))))
    foreign = _post(broker, "Unsubscribe", other.sign(_request(
        "Unsubscribe", "<wsnt:Unsubscribe/>", wsn.subscription_header(subscription))))
    assert etree.QName(wsn.fault_detail(foreign)).localname == "UnableToDestroySubscriptionFault"
    own = _post(broker, "Unsubscribe", agency.sign(_request(
        "Unsubscribe", "<wsnt:Unsubscribe/>", wsn.subscription_header(subscription))))
    assert own.status_code == 200, own.text
    assert _alerts(broker) == before + 3


@pytest.mark.parametrize("address", ["http://127.0.0.1:9000/c", "http://[::1]:9000/c",
                                     "http://169.254.169.254/latest/meta-data", "http://10.1.2.3/c",
                                     "http://localhost:9000/c", "http://192.168.0.10/c"])
def test_ssrf_addresses_are_refused_outside_dev_mode(world, address):
    _, strict, agency, _, _ = world
    response = _post(strict, "Subscribe", agency.sign(_request("Subscribe", wsn.subscribe_body(address))))
    detail = wsn.fault_detail(response)
    assert etree.QName(detail).localname == "SubscribeCreationFailedFault"
    assert "refused" in detail.findtext(f"{{{ns.WSRF_BF}}}Description")


def test_production_mode_refuses_to_start_without_trusted_idps(tmp_path):
    from tests.support.processes import HiemProcess, hiem_env

    env = hiem_env(HIEM_DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")
    proc = HiemProcess(["serve", "--port", "1"], env, tmp_path / "log").start()
    try:
        assert proc.proc is not None
        assert proc.proc.wait(60) == 2
        assert "HIEM_IDP_CERTS" in proc.output()
    finally:
        proc.stop()

