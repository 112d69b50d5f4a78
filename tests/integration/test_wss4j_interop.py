"""Interop over real HTTP with a production-mode broker (no --dev): messages signed by Apache WSS4J 1.6
(tests/support/wss4j.py, a second WS-Security stack in a JVM) are accepted in every layout and key
reference a Java partner gateway may send, and bad ones are refused with a WS-Security fault plus one
ATNA Security Alert."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from lxml import etree

from hiem import ns
from hiem.security import DevIdentity, ensure_dev_identity, mint_assertion
from tests.conftest import Broker, start_broker
from tests.support import wsn, wss4j
from tests.support.brokers import count_security_alerts as _alerts
from tests.support.brokers import run_cli as _cli
from tests.support.consumer import RecordingConsumer
from tests.support.wss4j import require as _require_wss4j

pytestmark = pytest.mark.slow
AGENCY = "urn:oid:2.16.840.1.113883.3.1001"
NOWHERE = "http://127.0.0.1:9/consumer"  # for requests that must be refused before any delivery


@dataclass(frozen=True)
class World:
    """The broker, the IdP it pins, a holder-of-key client, a pinned sender-vouches gateway, an attacker."""

    broker: Broker
    idp: DevIdentity
    client: DevIdentity
    gateway: DevIdentity
    attacker: DevIdentity

    def assertion(self, *, sender_vouches: bool = False, issuer: DevIdentity | None = None,
                  **overrides: object) -> bytes:
        """A hiem-minted NHIN assertion: holder-of-key bound to the client, or sender-vouches."""
        issuer = issuer or self.idp
        values: dict[str, object] = dict(
            key_pem=issuer.key_pem, cert_pem=issuer.cert_pem, issuer="https://idp.example.org",
            subject_id="jane.doe@agency.example.org", organization="Example Agency", organization_id=AGENCY,
            home_community_id=AGENCY, subject_confirmation_cert_pem=None if sender_vouches else self.client.cert_pem)
        values.update(overrides)
        return mint_assertion(**values)  # type: ignore[arg-type]

    def santuario_assertion(self) -> bytes:
        """A hiem-minted holder-of-key assertion stripped of hiem's signature and signed by Santuario."""
        assertion = etree.fromstring(self.assertion())
        assertion.remove(assertion.find(f"{{{ns.DS}}}Signature"))
        return wss4j.sign_assertion(etree.tostring(assertion), key_pem=self.idp.key_pem, cert_pem=self.idp.cert_pem)

    def request(self, operation: str, body: str, *, soap: str = ns.SOAP12, layout: str = "default",
                key_ref: str = "issuer-serial", sender_vouches: bool = False, santuario: bool = False,
                assertion: bytes | None = None, signer: DevIdentity | None = None, timestamp_age: int = 0) -> bytes:
        """A WS-N request with wsa:To, wsa:Action and wsa:MessageID, signed by WSS4J (issuer-serial: its default
        key reference) with the client's key (holder-of-key) or the gateway's (sender-vouches)."""
        data = wsn.envelope(body, action=wsn.ACTIONS[operation], to=self.broker.url + _path(operation), soap=soap)
        if assertion is None:
            assertion = self.santuario_assertion() if santuario else self.assertion(sender_vouches=sender_vouches)
        signer = signer or (self.gateway if sender_vouches else self.client)
        return wss4j.sign(data, key_pem=signer.key_pem, cert_pem=signer.cert_pem, layout=layout, key_ref=key_ref,
                          assertion=assertion, timestamp_age=timestamp_age)

    def subscribe(self, consumer_url: str, **options: object) -> bytes:
        return self.request("Subscribe", wsn.subscribe_body(consumer_url), **options)  # type: ignore[arg-type]

    def post(self, operation: str, data: bytes, soap: str = ns.SOAP12) -> httpx.Response:
        return wsn.post(self.broker.url, _path(operation), data, soap=soap, action=wsn.ACTIONS[operation])


def _path(operation: str) -> str:
    return f"/wsn/{wsn.ENDPOINT_OF[operation]}"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    _require_wss4j()
    tmp = tmp_path_factory.mktemp("wss4j-interop")
    # ensure_dev_identity: RSA-2048 with a SubjectKeyIdentifier extension, as WSS4J's "ski" reference needs
    idp, client, gateway, attacker, own = (ensure_dev_identity(tmp / name, common_name=f"interop {name}")
                                           for name in ("idp", "client", "gateway", "attacker", "broker"))
    broker = start_broker("embedded", tmp / "broker", dev=False, HIEM_ALLOW_PRIVATE_CONSUMERS="1",
                          HIEM_IDP_CERTS=str(idp.cert_path), HIEM_SIGNER_CERTS=str(gateway.cert_path),
                          HIEM_SIGNING_KEY=str(own.key_path), HIEM_SIGNING_CERT=str(own.cert_path))
    try:
        _cli(broker, "authz", "allow", AGENCY, "subscribe", "nhin:GIPSE")
        _cli(broker, "authz", "allow", AGENCY, "publish", "nhin:GIPSE/Biosurveillance")
        yield World(broker, idp, client, gateway, attacker)
    finally:
        broker.stop()


def _subscribed(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert etree.QName(wsn.body_element(response)).localname == "SubscribeResponse", response.text


@pytest.mark.parametrize("soap", [ns.SOAP12, ns.SOAP11], ids=["soap12", "soap11"])
def test_wss4j_default_signed_subscribe_and_notify_reach_the_consumer(world: World, consumer: RecordingConsumer,
                                                                      soap: str) -> None:
    _subscribed(world.post("Subscribe", world.subscribe(consumer.url, soap=soap), soap))
    published = world.post("Notify", world.request("Notify", wsn.notify_body(), soap=soap), soap)
    assert published.status_code == 202, published.text
    assert b"urn:test:gipse" in consumer.wait_for(1)[0].body  # the published payload, delivered


ACCEPTED: dict[str, dict[str, object]] = {
    "layout transforms-only": {"layout": "transforms-only"},
    "layout none": {"layout": "none"},
    "key_ref samlid": {"key_ref": "samlid"},
    "key_ref bst": {"key_ref": "bst"},
    "key_ref ski": {"key_ref": "ski"},
    "key_ref thumbprint": {"key_ref": "thumbprint"},
    "sender-vouches, issuer-serial": {"sender_vouches": True},
    "sender-vouches, bst": {"sender_vouches": True, "key_ref": "bst"},
    "Santuario-signed assertion": {"santuario": True},
    "Santuario-signed assertion, samlid": {"santuario": True, "key_ref": "samlid"},
}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_wss4j_signed_subscribe_is_accepted(world: World, consumer: RecordingConsumer, case: str) -> None:
    _subscribed(world.post("Subscribe", world.subscribe(consumer.url, **ACCEPTED[case])))


def _tampered(signed: bytes) -> bytes:
    assert signed.count(b"InfluenzaLikeIllness") == 1  # the topic, in the signed Body only
    return signed.replace(b"InfluenzaLikeIllness", b"InfluenzaLikeIllnesz")


def _wrapped(signed: bytes, hide_in: str, keep_id: bool = False) -> bytes:
    """XML signature wrapping: the signed Body moved (intact, so its digest still matches) into a header
    ("wrapper") or into wsse:Security ("security"); a forged Body, with a different consumer, in its place."""
    envelope = etree.fromstring(signed)
    header, body = envelope.find(f"{{{ns.SOAP12}}}Header"), envelope.find(f"{{{ns.SOAP12}}}Body")
    forged = copy.deepcopy(body)
    forged.find(f".//{{{ns.WSA}}}Address").text = "http://127.0.0.1:9/forged"
    if not keep_id:
        del forged.attrib[f"{{{ns.WSU}}}Id"]
    hiding_place = (etree.SubElement(header, "{urn:example:attacker}Wrapper") if hide_in == "wrapper"
                    else header.find(f"{{{ns.WSSE}}}Security"))
    hiding_place.append(body)
    envelope.append(forged)
    return etree.tostring(envelope)


# case: (the WS-Security fault subcode expected, the request)
REFUSED: dict[str, tuple[str, Callable[[World], bytes]]] = {
    "tampered body": ("FailedCheck", lambda w: _tampered(w.subscribe(NOWHERE))),
    # made an hour ago: Created/Expires an hour back, signed as they are (MessageExpired, WS-Security §12)
    "expired timestamp": ("MessageExpired", lambda w: w.subscribe(NOWHERE, timestamp_age=3600)),
    "expired assertion": ("InvalidSecurityToken", lambda w: w.subscribe(NOWHERE, assertion=w.assertion(
        not_before=datetime.now(UTC) - timedelta(hours=2), lifetime_seconds=600))),
    "assertion from an untrusted IdP": ("FailedAuthentication",
                                        lambda w: w.subscribe(NOWHERE, assertion=w.assertion(issuer=w.attacker))),
    "sender-vouches signed by an unpinned key": ("FailedAuthentication", lambda w: w.subscribe(
        NOWHERE, sender_vouches=True, signer=w.attacker, key_ref="bst")),
    "wrapping, signed Body moved into a header": ("FailedCheck",
                                                  lambda w: _wrapped(w.subscribe(NOWHERE), "wrapper")),
    "wrapping, signed Body moved into wsse:Security": ("FailedCheck",
                                                       lambda w: _wrapped(w.subscribe(NOWHERE), "security")),
    "wrapping, forged Body with the signed Body's wsu:Id": (
        "InvalidSecurity", lambda w: _wrapped(w.subscribe(NOWHERE), "wrapper", keep_id=True)),
}


def _assert_refused_with_alert(world: World, data: bytes, subcode: str) -> None:
    before = _alerts(world.broker)
    response = world.post("Subscribe", data)
    assert response.status_code == 400, response.text
    fault = wsn.body_element(response)
    assert etree.QName(fault).localname == "Fault", response.text
    code = f"{{{ns.SOAP12}}}Code"
    assert _resolve(fault.find(f"{code}/{{{ns.SOAP12}}}Value")) == f"{{{ns.SOAP12}}}Sender", response.text
    value = fault.find(f"{code}/{{{ns.SOAP12}}}Subcode/{{{ns.SOAP12}}}Value")
    assert _resolve(value) == f"{{{ns.WSSE}}}{subcode}", response.text
    assert _alerts(world.broker) == before + 1


def _resolve(value: etree._Element) -> str:
    """A fault code's QName text (prefix:local) as a Clark name."""
    prefix, _, local = (value.text or "").strip().rpartition(":")
    return f"{{{value.nsmap[prefix or None]}}}{local}"


@pytest.mark.parametrize("case", list(REFUSED))
def test_bad_wss4j_message_is_refused_and_audited(world: World, case: str) -> None:
    subcode, build = REFUSED[case]
    _assert_refused_with_alert(world, build(world), subcode)


def test_replayed_wss4j_message_is_refused_and_audited(world: World, consumer: RecordingConsumer) -> None:
    data = world.subscribe(consumer.url)
    _subscribed(world.post("Subscribe", data))
    _assert_refused_with_alert(world, data, "InvalidSecurity")
