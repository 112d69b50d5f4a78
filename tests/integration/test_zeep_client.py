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
