"""Subscribe -> publish -> deliver -> unsubscribe over real HTTP, in both deployments.

Runs twice: embedded (SQLite + in-process worker) and distributed (PostgreSQL + Redis + `hiem worker`).
"""

from __future__ import annotations

from lxml import etree

from hiem import ns
from tests.support import wsn
from tests.support.barrier import marker_of, marker_subscription, publish_marker, wait_for_marker

WSA = ns.WSA


def test_subscribe_publish_deliver_unsubscribe(broker, consumer):
    # subscribe, with a reference parameter the broker must echo as a header block
    response = wsn.call(broker.url, "Subscribe", wsn.subscribe_body(
        consumer.url, refparams="<nhin:UserAddress>lee.morgan@example.org</nhin:UserAddress>"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/soap+xml")
    answer = wsn.body_element(response)
    wsn.assert_valid(answer)
    assert etree.QName(answer).localname == "SubscribeResponse"
    reference = answer.find(f"{{{ns.WSNT}}}SubscriptionReference")
    assert reference.findtext(f"{{{WSA}}}Address") == f"{broker.url}/wsn/SubscriptionManager"
    subscription = wsn.subscription_id(response)

    # publish; the broker answers once recorded (202, empty)
    published = wsn.call(broker.url, "Notify", wsn.notify_body())
    assert published.status_code == 202, published.text
    assert published.content == b""

    received = consumer.wait_for(1)[0]
    envelope = received.envelope()
    assert envelope.tag == f"{{{ns.SOAP12}}}Envelope"
    header = envelope.find(f"{{{ns.SOAP12}}}Header")
    assert header.findtext(f"{{{WSA}}}To") == consumer.url
    assert header.findtext(f"{{{WSA}}}Action") == wsn.ACTIONS["Notify"]
    assert header.findtext(f"{{{WSA}}}MessageID").startswith("urn:uuid:")
    user = header.find(f"{{{ns.NHIN}}}UserAddress")
    assert user is not None and user.text == "lee.morgan@example.org"
    assert user.get(f"{{{WSA}}}IsReferenceParameter") == "true"

    notify = envelope.find(f"{{{ns.SOAP12}}}Body")[0]
    wsn.assert_valid(notify)
    message = notify.find(f"{{{ns.WSNT}}}NotificationMessage")
    sub_ref = message.find(f"{{{ns.WSNT}}}SubscriptionReference")
    same = etree.tostring(sub_ref, method="c14n", exclusive=True) == etree.tostring(reference, method="c14n",
                                                                                   exclusive=True)
    assert same, "the Notify carries the SubscriptionReference of the SubscribeResponse"
    topic = message.find(f"{{{ns.WSNT}}}Topic")
    assert topic.get("Dialect") == wsn.CONCRETE
    prefix, path = topic.text.split(":", 1)
    assert topic.nsmap[prefix] == ns.NHIN and path == "GIPSE/Biosurveillance/InfluenzaLikeIllness"
    payload = message.find(f"{{{ns.WSNT}}}Message")[0]
    assert payload.tag == "{urn:test:gipse}Count" and payload.text == "42"

    # unsubscribe: the reference parameter as a header block; a second time is ResourceUnknownFault
    gone = wsn.call(broker.url, "Unsubscribe", "<wsnt:Unsubscribe/>",
                    headers=wsn.subscription_header(subscription))
    assert gone.status_code == 200, gone.text
    wsn.assert_valid(wsn.body_element(gone))
    again = wsn.call(broker.url, "Unsubscribe", "<wsnt:Unsubscribe/>",
                     headers=wsn.subscription_header(subscription))
    assert again.status_code == 400
    detail = wsn.fault_detail(again)
    assert detail.tag == f"{{{ns.WSRF_R}}}ResourceUnknownFault"
    wsn.assert_valid(detail)

    # nothing more is delivered after unsubscribe
    assert wsn.call(broker.url, "Notify", wsn.notify_body()).status_code == 202
    # barrier: a marker to the same consumer through a second subscription (another topic); published after
    # that Notify was accepted, its delivery is created and queued after any the Notify would have had
    with marker_subscription(broker.url, consumer.url):
        publish_marker(broker.url, "after-unsubscribe")
        wait_for_marker(consumer, "after-unsubscribe")
    assert [marker_of(r) for r in consumer.received] == [None, "after-unsubscribe"], "nothing after Unsubscribe"


def test_only_matching_subscribers_receive(broker, consumer):
    from tests.support.consumer import RecordingConsumer

    with RecordingConsumer() as other:
        assert wsn.call(broker.url, "Subscribe", wsn.subscribe_body(consumer.url)).status_code == 200
        pneumonia = "nhin:GIPSE/Biosurveillance/Pneumonia"
        assert wsn.call(broker.url, "Subscribe", wsn.subscribe_body(other.url, topic=pneumonia)).status_code == 200
        assert wsn.call(broker.url, "Notify", wsn.notify_body(topic=pneumonia)).status_code == 202
        other.wait_for(1)
        # barrier: a marker on the consumer's own subscription (its topic), published after the Pneumonia
        # Notify was accepted: fanned out after it, so queued for this consumer after any delivery it made
        publish_marker(broker.url, "ili-marker", topic=wsn.ILI)
        wait_for_marker(consumer, "ili-marker")
        assert [marker_of(r) for r in consumer.received] == ["ili-marker"], "only the marker, not the Pneumonia one"
