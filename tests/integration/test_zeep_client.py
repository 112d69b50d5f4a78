"""A generic WS-N client (zeep) loads the broker's served WSDL and calls Subscribe and Unsubscribe."""

from __future__ import annotations

import copy
import time

import httpx
import pytest
import sqlalchemy as sa
import zeep
from lxml import etree
from zeep.wsa import WsAddressingPlugin

from hiem import ns
from tests.support import wsn
from tests.support.barrier import marker_of, marker_subscription, publish_marker, wait_for_marker


def test_zeep_subscribe_and_unsubscribe(module_broker, consumer):
    base = module_broker.url
    client = zeep.Client(f"{base}/wsn/NotificationProducer?wsdl", plugins=[WsAddressingPlugin()])
    producer = client.bind("NotificationProducerService", "NotificationProducerSoap12Port")
    topic = etree.Element(f"{{{ns.WSNT}}}TopicExpression", nsmap={"nhin": ns.NHIN}, Dialect=wsn.CONCRETE)
    topic.text = wsn.ILI
    response = producer.Subscribe(ConsumerReference={"Address": consumer.url}, Filter={"_value_1": [topic]})
    reference = response.SubscriptionReference
    assert reference.Address._value_1 == f"{base}/wsn/SubscriptionManager"

    assert wsn.call(base, "Notify", wsn.notify_body()).status_code == 202
    consumer.wait_for(1)

    subscription_id = copy.deepcopy(reference.ReferenceParameters._value_1[0])
    assert subscription_id.tag == f"{{{ns.NHIN}}}SubscriptionId"
    subscription_id.set(f"{{{ns.WSA}}}IsReferenceParameter", "true")
    manager_client = zeep.Client(f"{base}/wsn/SubscriptionManager?wsdl", plugins=[WsAddressingPlugin()])
    manager = manager_client.create_service("{urn:hiem:broker:1}SubscriptionManagerSoap11Binding",
                                            reference.Address._value_1)
    manager.Unsubscribe(_soapheaders=[subscription_id])

    # a second Unsubscribe is a ResourceUnknownFault, which zeep raises as a Fault
    try:
        manager.Unsubscribe(_soapheaders=[subscription_id])
    except zeep.exceptions.Fault as fault:
        assert etree.QName(fault.detail[0]).localname == "ResourceUnknownFault"
    else:
        raise AssertionError("second Unsubscribe succeeded")


def test_zeep_renew_and_get_current_message(module_broker, consumer):
    """The WS-N operations beyond HIEM's minimum that the served WSDLs declare, called by zeep."""
    base = module_broker.url
    client = zeep.Client(f"{base}/wsn/NotificationProducer?wsdl", plugins=[WsAddressingPlugin()])
    producer = client.bind("NotificationProducerService", "NotificationProducerSoap12Port")
    topic = etree.Element(f"{{{ns.WSNT}}}TopicExpression", nsmap={"nhin": ns.NHIN}, Dialect=wsn.CONCRETE)
    topic.text = "nhin:GIPSE/Biosurveillance/Respiratory"
    response = producer.Subscribe(ConsumerReference={"Address": consumer.url}, Filter={"_value_1": [topic]},
                                  InitialTerminationTime="PT1H")
    subscription_id = copy.deepcopy(response.SubscriptionReference.ReferenceParameters._value_1[0])
    subscription_id.set(f"{{{ns.WSA}}}IsReferenceParameter", "true")

    manager_client = zeep.Client(f"{base}/wsn/SubscriptionManager?wsdl", plugins=[WsAddressingPlugin()])
    manager = manager_client.create_service("{urn:hiem:broker:1}SubscriptionManagerSoap12Binding",
                                            response.SubscriptionReference.Address._value_1)
    renewed = manager.Renew(TerminationTime="PT2H", _soapheaders=[subscription_id])
    assert renewed.TerminationTime > response.TerminationTime

    wsn.call(base, "Notify", wsn.notify_body(topic="nhin:GIPSE/Biosurveillance/Respiratory",
                                             payload="<g:Count xmlns:g='urn:g'>7</g:Count>"))
    # zeep cannot put text into the mixed-content wsnt:Topic, so the Topic element is given as raw XML
    current = client.create_message(producer, "GetCurrentMessage", Topic={"Dialect": wsn.CONCRETE})
    topic_el = current.find(f".//{{{ns.WSNT}}}Topic")
    topic_el.text = "nhin:GIPSE/Biosurveillance/Respiratory"
    declared = etree.Element(topic_el.tag, nsmap={"nhin": ns.NHIN}, Dialect=wsn.CONCRETE)
    declared.text = topic_el.text
    topic_el.getparent().replace(topic_el, declared)
    answer = client.transport.post_xml(f"{base}/wsn/NotificationProducer", current, {
        "Content-Type": 'application/soap+xml; charset=utf-8; action="http://docs.oasis-open.org/wsn/bw-2/'
                        'NotificationProducer/GetCurrentMessageRequest"'})
    assert answer.status_code == 200, answer.text
    assert b">7</g:Count>" in answer.content


def test_zeep_pause_and_resume(module_broker, consumer):
    """PauseSubscription/ResumeSubscription through the PausableSubscriptionManager binding of the served WSDL."""
    base = module_broker.url
    response = wsn.call(base, "Subscribe", wsn.subscribe_body(consumer.url, topic="nhin:GIPSE/Biosurveillance/Fever"))
    header = etree.fromstring(wsn.subscription_header(wsn.subscription_id(response)).replace(
        "<nhin:SubscriptionId", f"<nhin:SubscriptionId xmlns:nhin='{ns.NHIN}' xmlns:wsa='{ns.WSA}'"))
    client = zeep.Client(f"{base}/wsn/SubscriptionManager?wsdl", plugins=[WsAddressingPlugin()])
    manager = client.bind("SubscriptionManagerService", "PausableSubscriptionManagerSoap12Port")
    manager.PauseSubscription(_soapheaders=[header])
    assert wsn.call(base, "Notify", wsn.notify_body(topic="nhin:GIPSE/Biosurveillance/Fever")).status_code == 202
    # barrier: a marker through a second, active subscription of the same consumer (another topic), published
    # after the Fever Notify was accepted: had the paused subscription been sent it, that came first
    with marker_subscription(base, consumer.url):
        publish_marker(base, "while-paused")
        wait_for_marker(consumer, "while-paused")
    assert [marker_of(r) for r in consumer.received] == ["while-paused"], "nothing for the paused subscription"
    manager.ResumeSubscription(_soapheaders=[header])
    received = consumer.wait_for(2)
    assert [marker_of(r) for r in received] == ["while-paused", None], "the held Notify, after the resume"


def test_pull_point_wsdl_is_served(module_broker):
    base = module_broker.url
    # at the endpoint, behind a pull point's own path, and among the imported documents
    for url in (f"{base}/wsn/PullPoint?wsdl", f"{base}/wsn/PullPoint/some-pull-point?wsdl",
                f"{base}/wsdl/PullPoint.wsdl"):
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200, url
        assert response.headers["content-type"].startswith("text/xml")
        root = etree.fromstring(response.content)
        (service,) = root.findall("{http://schemas.xmlsoap.org/wsdl/}service")
        assert service.get("name") == "PullPointService"
        addresses = {element.get("location") for element in service.iter()
                     if etree.QName(element).localname == "address"}
        assert addresses == {f"{base}/wsn/PullPoint"}, url


def _stored(database_url: str, pull_point_id: str) -> int:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(
                "SELECT count(*) FROM deliveries d JOIN subscriptions s ON s.id = d.subscription_id "
                "WHERE s.pull_point_id = :id AND d.state = 'stored'"), {"id": pull_point_id}).scalar_one()
    finally:
        engine.dispose()


def test_zeep_pull_point(module_broker):
    """CreatePullPoint, GetMessages and DestroyPullPoint through the served PullPoint WSDL, the pull point
    subscribed through the NotificationProducer WSDL: the path a consumer without an inbound port takes."""
    base = module_broker.url
    client = zeep.Client(f"{base}/wsn/PullPoint?wsdl", plugins=[WsAddressingPlugin()])
    producer_client = zeep.Client(f"{base}/wsn/NotificationProducer?wsdl", plugins=[WsAddressingPlugin()])
    try:
        # the factory is the WSDL's first port, so client.service is CreatePullPoint over SOAP 1.1
        created = client.service.CreatePullPoint()
        address = created.PullPoint.Address._value_1
        assert address == f"{base}/wsn/PullPoint"
        (pull_point_id,) = created.PullPoint.ReferenceParameters._value_1
        assert pull_point_id.tag == f"{{{ns.HIEM}}}PullPointId"

        topic = etree.Element(f"{{{ns.WSNT}}}TopicExpression", nsmap={"nhin": ns.NHIN}, Dialect=wsn.CONCRETE)
        topic.text = "nhin:GIPSE/Biosurveillance/Hemorrhagic"
        producer = producer_client.bind("NotificationProducerService", "NotificationProducerSoap12Port")
        producer.Subscribe(ConsumerReference={"Address": address,
                                              "ReferenceParameters": {"_value_1": [copy.deepcopy(pull_point_id)]}},
                           Filter={"_value_1": [topic]})
        for count in range(2):
            assert wsn.call(base, "Notify", wsn.notify_body(
                topic=topic.text, payload=f"<g:Count xmlns:g='urn:g'>{count}</g:Count>")).status_code == 202
        deadline = time.monotonic() + 20
        while _stored(module_broker.env["HIEM_DATABASE_URL"], pull_point_id.text) < 2:
            assert time.monotonic() < deadline, "the notifications never reached the pull point"
            time.sleep(0.2)

        # each request goes to the EPR's address with its reference parameter as a header block
        header = copy.deepcopy(pull_point_id)
        header.set(f"{{{ns.WSA}}}IsReferenceParameter", "true")
        pull_point = client.create_service("{urn:hiem:broker:1}PullPointSoap12Binding", address)
        got = pull_point.GetMessages(MaximumNumber=10, _soapheaders=[header])
        assert [m.Message._value_1.text for m in got.NotificationMessage] == ["0", "1"]
        for message in got.NotificationMessage:  # as a pushed Notify would carry it (zeep drops the Topic text)
            assert message.SubscriptionReference.Address._value_1 == f"{base}/wsn/SubscriptionManager"
            assert message.Topic.Dialect == wsn.CONCRETE
        assert pull_point.GetMessages(MaximumNumber=10, _soapheaders=[header]).NotificationMessage == []

        # Notify is bound (WS-I BP R2718) but refused: pull points are filled by subscriptions only
        payload = etree.Element("{urn:g}Count", nsmap={"g": "urn:g"})
        with pytest.raises(zeep.exceptions.Fault) as refused:
            pull_point.Notify(NotificationMessage=[{"Message": {"_value_1": payload}}], _soapheaders=[header])
        assert [etree.QName(code).localname for code in refused.value.subcodes] == ["ActionNotSupported"]

        soap11 = client.create_service("{urn:hiem:broker:1}PullPointSoap11Binding", address)
        soap11.DestroyPullPoint(_soapheaders=[header])
        with pytest.raises(zeep.exceptions.Fault) as raised:
            pull_point.GetMessages(MaximumNumber=10, _soapheaders=[header])
        assert etree.QName(raised.value.detail[0]).localname == "ResourceUnknownFault"
    finally:  # close the requests sessions, or their sockets warn at garbage collection
        client.transport.session.close()
        producer_client.transport.session.close()
