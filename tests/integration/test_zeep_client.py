"""A generic WS-N client (zeep) loads the broker's served WSDL and calls Subscribe and Unsubscribe."""

from __future__ import annotations

import copy

import zeep
from lxml import etree
from zeep.wsa import WsAddressingPlugin

from hiem import ns
from tests.support import wsn


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
    wsn.call(base, "Notify", wsn.notify_body(topic="nhin:GIPSE/Biosurveillance/Fever"))
    import time

    time.sleep(1.5)
    assert consumer.received == []
    manager.ResumeSubscription(_soapheaders=[header])
    consumer.wait_for(1)
