"""WS-BaseNotification 1.3 / HIEM v2.0 conformance over real HTTP: the spec samples, both SOAP versions,
every fault the issue names, and the three WS-Topics dialects. Every response is schema-validated."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from hiem import ns
from tests.conftest import Broker, start_broker
from tests.support import wsn
from tests.support.barrier import marker_of, publish_marker, wait_for_marker

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "hiem-samples"
WSNT = ns.WSNT


def _fault_name(response) -> str:
    detail = wsn.fault_detail(response)
    wsn.assert_valid(detail)
    assert detail.find(f"{{{ns.WSRF_BF}}}Timestamp") is not None
    assert detail.findtext(f"{{{ns.WSRF_BF}}}Description")
    return etree.QName(detail).localname


# -- the HIEM v2.0 Appendix A samples, accepted as they are -------------------------------------------------
def test_spec_samples_are_accepted(module_broker, consumer):
    url = module_broker.url
    subscribe = (SAMPLES / "subscribe.xml").read_bytes().replace(b"CONSUMER-ADDRESS", consumer.url.encode())
    response = wsn.post(url, "/wsn/NotificationProducer", subscribe)
    assert response.status_code == 200, response.text
    wsn.assert_valid(wsn.body_element(response))
    subscription = wsn.subscription_id(response)

    notify = wsn.post(url, "/wsn/NotificationBroker", (SAMPLES / "notify.xml").read_bytes())
    assert notify.status_code == 202, notify.text
    received = consumer.wait_for(1)[0].envelope()
    message = received.find(f".//{{{WSNT}}}Message")
    assert any(isinstance(c, etree._Comment) for c in message), "the publisher's content is passed unchanged"
    header_param = received.find(f".//{{{ns.NHIN}}}UserAddress")
    assert header_param.text == "lee.morgan@carespark.com"

    unsubscribe = (SAMPLES / "unsubscribe.xml").read_bytes().replace(b"SAMPLE-SUBSCRIPTION-ID",
                                                                       subscription.encode())
    response = wsn.post(url, "/wsn/SubscriptionManager", unsubscribe)
    assert response.status_code == 200, response.text
    assert etree.QName(wsn.body_element(response)).localname == "UnsubscribeResponse"


def test_soap11_is_answered_in_soap11(module_broker, consumer):
    response = wsn.call(module_broker.url, "Subscribe", wsn.subscribe_body(consumer.url), soap=wsn.SOAP11)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    assert etree.fromstring(response.content).tag == f"{{{ns.SOAP11}}}Envelope"
    subscription = wsn.subscription_id(response)
    # Unsubscribe by the /wsn/SubscriptionManager/{id} address form, SOAP 1.1
    gone = wsn.call(module_broker.url, "Unsubscribe", "<wsnt:Unsubscribe/>", soap=wsn.SOAP11,
                    path_suffix=f"/{subscription}")
    assert gone.status_code == 200, gone.text
    again = wsn.call(module_broker.url, "Unsubscribe", "<wsnt:Unsubscribe/>", soap=wsn.SOAP11,
                     path_suffix=f"/{subscription}")
    assert again.status_code == 500  # SOAP 1.1 HTTP binding: every fault is a 500
    fault = wsn.body_element(again)
    assert fault.findtext("faultcode") == "soapenv:Client"
    assert _fault_name(again) == "ResourceUnknownFault"


def test_unsubscribe_accepts_reference_parameter_without_marker(module_broker, consumer):
    subscription = wsn.subscription_id(wsn.call(module_broker.url, "Subscribe", wsn.subscribe_body(consumer.url)))
    response = wsn.call(module_broker.url, "Unsubscribe", "<wsnt:Unsubscribe/>",
                        headers=wsn.subscription_header(subscription, mark=False))
    assert response.status_code == 200, response.text


def test_response_addressing_headers(module_broker, consumer):
    data = wsn.envelope(wsn.subscribe_body(consumer.url), action=wsn.ACTIONS["Subscribe"])
    request_id = etree.fromstring(data).findtext(f".//{{{ns.WSA}}}MessageID")
    response = wsn.post(module_broker.url, "/wsn/NotificationProducer", data)
    header = etree.fromstring(response.content).find(f"{{{ns.SOAP12}}}Header")
    assert header.findtext(f"{{{ns.WSA}}}Action") == \
        "http://docs.oasis-open.org/wsn/bw-2/NotificationProducer/SubscribeResponse"
    assert header.findtext(f"{{{ns.WSA}}}RelatesTo") == request_id


# -- every fault the core issue names ---------------------------------------------------------------------
FAULT_CASES = {
    "TopicNotSupportedFault": wsn.subscribe_body("http://127.0.0.1:9/c", topic="nhin:GIPSE/NoSuchSyndrome"),
    "InvalidTopicExpressionFault": wsn.subscribe_body("http://127.0.0.1:9/c", topic="nhin:GIPSE//Bio"),
    "TopicExpressionDialectUnknownFault": wsn.subscribe_body("http://127.0.0.1:9/c",
                                                             dialect="urn:example:no-such-dialect"),
    "InvalidFilterFault": wsn.subscribe_body("http://127.0.0.1:9/c",
                                             extra_filter="<x:Bogus xmlns:x='urn:x'>1</x:Bogus>"),
    "SubscribeCreationFailedFault": wsn.subscribe_body("ftp://127.0.0.1/c"),
    "UnacceptableInitialTerminationTimeFault": wsn.subscribe_body(
        "http://127.0.0.1:9/c",
        extra="<wsnt:InitialTerminationTime>2001-01-01T00:00:00Z</wsnt:InitialTerminationTime>"),
    "MultipleTopicsSpecifiedFault": wsn.subscribe_body(
        "http://127.0.0.1:9/c", extra_filter=f"<wsnt:TopicExpression Dialect='{wsn.CONCRETE}'>{wsn.ILI}"
                                            "</wsnt:TopicExpression>"),
    "UnsupportedPolicyRequestFault": wsn.subscribe_body(
        "http://127.0.0.1:9/c", extra="<wsnt:SubscriptionPolicy><wsnt:UseRaw/></wsnt:SubscriptionPolicy>"),
}


@pytest.mark.parametrize("expected", sorted(FAULT_CASES))
def test_subscribe_faults(module_broker, expected):
    response = wsn.call(module_broker.url, "Subscribe", FAULT_CASES[expected])
    assert response.status_code in (400, 500), response.text
    assert _fault_name(response) == expected


def test_invalid_filter_fault_lists_the_unknown_filter(module_broker):
    response = wsn.call(module_broker.url, "Subscribe", FAULT_CASES["InvalidFilterFault"])
    detail = wsn.fault_detail(response)
    unknown = detail.find(f"{{{WSNT}}}UnknownFilter")
    prefix, local = unknown.text.split(":")
    assert (unknown.nsmap[prefix], local) == ("urn:x", "Bogus")


def test_resource_unknown_for_never_existing_subscription(module_broker):
    response = wsn.call(module_broker.url, "Unsubscribe", "<wsnt:Unsubscribe/>",
                        headers=wsn.subscription_header("no-such-id"))
    assert _fault_name(response) == "ResourceUnknownFault"


def test_notify_faults(module_broker):
    unknown_topic = wsn.call(module_broker.url, "Notify", wsn.notify_body(topic="nhin:GIPSE/Nope"))
    assert _fault_name(unknown_topic) == "TopicNotSupportedFault"
    no_topic = wsn.call(module_broker.url, "Notify",
                        "<wsnt:Notify><wsnt:NotificationMessage><wsnt:Message><x xmlns='urn:x'/></wsnt:Message>"
                        "</wsnt:NotificationMessage></wsnt:Notify>")
    assert _fault_name(no_topic) == "NotifyMessageNotSupportedFault"
    wildcard = wsn.call(module_broker.url, "Notify", wsn.notify_body(topic="nhin:GIPSE//*", dialect=wsn.FULL))
    assert _fault_name(wildcard) == "InvalidTopicExpressionFault"


def test_unable_to_destroy_subscription_when_storage_refuses(tmp_path, consumer):
    """UnableToDestroySubscriptionFault: the subscription exists, but the store refuses the change.

    A trigger in the broker's own SQLite file makes every UPDATE of subscriptions fail, the way a
    read-only replica or a storage fault would.
    """
    import sqlite3

    from tests.conftest import start_broker

    running = start_broker("embedded", tmp_path)
    try:
        subscription = wsn.subscription_id(wsn.call(running.url, "Subscribe", wsn.subscribe_body(consumer.url)))
        with sqlite3.connect(tmp_path / "hiem.db") as connection:
            connection.execute("CREATE TRIGGER refuse BEFORE UPDATE ON subscriptions "
                               "BEGIN SELECT RAISE(ABORT, 'storage refuses changes'); END")
        response = wsn.call(running.url, "Unsubscribe", "<wsnt:Unsubscribe/>",
                            headers=wsn.subscription_header(subscription))
        assert response.status_code == 500
        assert _fault_name(response) == "UnableToDestroySubscriptionFault"
    finally:
        running.stop()


# -- SOAP-level faults ---------------------------------------------------------------------------------------
def test_unknown_action_is_a_sender_fault(module_broker, consumer):
    data = wsn.envelope(wsn.subscribe_body(consumer.url), action="urn:example:bogus-action")
    response = wsn.post(module_broker.url, "/wsn/NotificationProducer", data)
    assert response.status_code == 400
    fault = wsn.body_element(response)
    code = fault.find(f"{{{ns.SOAP12}}}Code")
    assert code.findtext(f"{{{ns.SOAP12}}}Value") == "s:Sender"
    subcode = code.find(f"{{{ns.SOAP12}}}Subcode/{{{ns.SOAP12}}}Value")
    prefix, local = subcode.text.split(":")
    assert (subcode.nsmap[prefix], local) == (ns.WSA, "ActionNotSupported")


@pytest.mark.parametrize("payload", [b"<not-soap/>", b"<s:Envelope xmlns:s='http://www.w3.org/2003/05/soap-envelope'>"
                                     b"<s:Body/></s:Envelope>", b"garbage"])
def test_malformed_envelopes_are_sender_faults(module_broker, payload):
    response = wsn.post(module_broker.url, "/wsn/NotificationBroker", payload)
    assert response.status_code == 400
    fault = wsn.body_element(response)
    assert fault.find(f"{{{ns.SOAP12}}}Code/{{{ns.SOAP12}}}Value").text == "s:Sender"
    assert "Traceback" not in response.text


def test_operation_at_the_wrong_endpoint(module_broker):
    data = wsn.envelope(wsn.notify_body(), action=None)
    response = wsn.post(module_broker.url, "/wsn/NotificationProducer", data)
    assert response.status_code == 400
    assert "not an operation" in response.text


# -- WS-Topics 1.3 dialects, positive and negative -----------------------------------------------------------
DIALECT_CASES = [
    # (dialect, expression, published topic, delivered?)
    (wsn.CONCRETE, "nhin:GIPSE/Biosurveillance/Pneumonia", "nhin:GIPSE/Biosurveillance/Pneumonia", True),
    (wsn.CONCRETE, "nhin:GIPSE/Biosurveillance", "nhin:GIPSE/Biosurveillance/Pneumonia", False),
    (wsn.SIMPLE, "nhin:GIPSE", "nhin:GIPSE", True),
    (wsn.SIMPLE, "nhin:GIPSE", "nhin:GIPSE/Biosurveillance/Pneumonia", False),
    (wsn.FULL, "nhin:GIPSE//.", "nhin:GIPSE/Biosurveillance/Fever", True),
    (wsn.FULL, "nhin:GIPSE/Biosurveillance/*", "nhin:GIPSE/Biosurveillance/Rash", True),
    (wsn.FULL, "nhin:GIPSE/Biosurveillance/*", "nhin:DeidentifiedPopulationHealthData/Biosurveillance/Influenza",
     False),
    (wsn.FULL, "nhin:DeidentifiedPopulationHealthData//Influenza|nhin:GIPSE/Biosurveillance/Fever",
     "nhin:DeidentifiedPopulationHealthData/Biosurveillance/Influenza", True),
]
#: for each case not delivered, a topic its subscription does match: where the barrier's marker is published
MATCHING_TOPIC = {
    (wsn.CONCRETE, "nhin:GIPSE/Biosurveillance"): "nhin:GIPSE/Biosurveillance",
    (wsn.SIMPLE, "nhin:GIPSE"): "nhin:GIPSE",
    (wsn.FULL, "nhin:GIPSE/Biosurveillance/*"): "nhin:GIPSE/Biosurveillance/Rash",
}


@pytest.fixture(scope="module")
def ordered_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """An embedded broker with per-subscription ordered delivery, for the negative dialect cases' barrier."""
    running = start_broker("embedded", tmp_path_factory.mktemp("ordered"), HIEM_ORDERED_DELIVERY="1")
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize(("dialect", "expression", "published", "delivered"), DIALECT_CASES)
def test_dialects_over_http(ordered_broker, consumer, dialect, expression, published, delivered):
    url = ordered_broker.url
    response = wsn.call(url, "Subscribe", wsn.subscribe_body(consumer.url, topic=expression, dialect=dialect))
    assert response.status_code == 200, response.text
    subscription = wsn.subscription_id(response)
    try:
        assert wsn.call(url, "Notify", wsn.notify_body(topic=published)).status_code == 202
        if delivered:
            envelope = consumer.wait_for(1)[0].envelope()
            topic = envelope.find(f".//{{{WSNT}}}Topic")
            assert topic.get("Dialect") == dialect, "the Notify uses the subscription's dialect"
            prefix, path = topic.text.split(":", 1)
            assert topic.nsmap[prefix] == ns.NHIN and f"nhin:{path}" == published
            wsn.assert_valid(envelope.find(f"{{{ns.SOAP12}}}Body")[0])
        else:
            # barrier: a marker on a topic this subscription matches; ordered delivery on the same subscription
            # holds it back while a delivery of the earlier Notify would still be pending or in flight
            publish_marker(url, "dialect", topic=MATCHING_TOPIC[(dialect, expression)])
            wait_for_marker(consumer, "dialect")
            assert [marker_of(r) for r in consumer.received] == ["dialect"], "only the marker, not the Notify"
    finally:
        wsn.call(url, "Unsubscribe", "<wsnt:Unsubscribe/>", headers=wsn.subscription_header(subscription))


@pytest.mark.parametrize(("dialect", "expression"), [
    (wsn.SIMPLE, "nhin:GIPSE/Biosurveillance"),
    (wsn.CONCRETE, "nhin:GIPSE/*"),
    (wsn.CONCRETE, "undeclared:GIPSE"),
    (wsn.FULL, "nhin:GIPSE///x"),
])
def test_invalid_expressions_per_dialect(module_broker, dialect, expression):
    response = wsn.call(module_broker.url, "Subscribe",
                        wsn.subscribe_body("http://127.0.0.1:9/c", topic=expression, dialect=dialect))
    assert _fault_name(response) == "InvalidTopicExpressionFault"


def test_default_namespace_resolves_unprefixed_topics(module_broker, consumer):
    body = (f"<wsnt:Subscribe><wsnt:ConsumerReference><wsa:Address>{consumer.url}</wsa:Address>"
            f"</wsnt:ConsumerReference><wsnt:Filter><wsnt:TopicExpression xmlns='{ns.NHIN}' "
            f"Dialect='{wsn.CONCRETE}'>GIPSE/Biosurveillance/Rash</wsnt:TopicExpression></wsnt:Filter>"
            "</wsnt:Subscribe>")
    assert wsn.call(module_broker.url, "Subscribe", body).status_code == 200
