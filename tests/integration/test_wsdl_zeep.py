"""zeep, an independent WS-N client, loads hiem's served WSDLs over HTTP and sends contract-valid requests.

How a zeep (4.3.3) user talks to hiem, as the tests below do:

* Load the WSDL from the endpoint: ``zeep.Client(f"{base}/wsn/NotificationProducer?wsdl", plugins=[...])``.
  ``client.service`` is the SOAP 1.1 port (the first one); for SOAP 1.2 use
  ``client.bind("NotificationProducerService", "NotificationProducerSoap12Port")``.
* WS-Addressing: zeep does NOT read ``wsaw:UsingAddressing`` or the ``wsam:Addressing`` policy. It adds
  wsa:Action/MessageID/To by itself only when the portType input carries a ``wsam:Action``/``wsaw:Action``
  attribute, which the OASIS bw-2/brw-2 portTypes (imported unmodified) do not. Pass
  ``plugins=[zeep.wsa.WsAddressingPlugin()]``: it sends wsa:Action = the binding's soapAction (the WS-N
  action), a fresh wsa:MessageID and wsa:To = the port address.
* The topic of a Subscribe goes in as an lxml element: ``wsnt:TopicExpression`` is mixed content, whose
  text zeep's typed API cannot set, and ``wsnt:Filter`` is ``xsd:any``, which takes elements as they are.
  Declare the topic's prefix (``nhin``) on that element so the Concrete-dialect QName resolves.
  A Notify's ``wsnt:Topic`` has the same mixed type but is a typed element, not ``xsd:any``: pass
  ``Topic={"Dialect": ...}``, declare the prefix with ``client.set_ns_prefix("nhin", ...)`` and write the
  text in a plugin's ``egress`` (``TopicText`` below), or build the envelope yourself.
* Unsubscribe goes to the SubscriptionReference of the SubscribeResponse: its wsa:Address becomes the
  port address (``client.create_service(binding_qname, address)``), and each of its reference parameters
  (HIEM: ``nhin:SubscriptionId``) becomes a SOAP header block marked ``wsa:IsReferenceParameter="true"``
  (WS-Addressing 1.0 SOAP Binding 2.3), passed as ``_soapheaders=[element, ...]``::

      header = copy.deepcopy(response.SubscriptionReference.ReferenceParameters._value_1[0])
      header.set("{http://www.w3.org/2005/08/addressing}IsReferenceParameter", "true")
      manager = client.create_service("{urn:hiem:broker:1}SubscriptionManagerSoap11Binding", address)
      manager.Unsubscribe(_soapheaders=[header])

  A dict for ``_soapheaders`` is refused (the bindings declare no soap:header), and so is a zeep value
  of a simple-typed element such as ``client.get_element("nhin:SubscriptionId")("...")``: pass lxml.
* Pull points work the same way: in ``/wsn/PullPoint?wsdl`` the first port is the factory, so
  ``client.service.CreatePullPoint()``; GetMessages and DestroyPullPoint go to the returned EPR with
  ``client.create_service("{urn:hiem:broker:1}PullPointSoap12Binding", address)`` and its
  ``hiem:PullPointId`` as a header block (``test_zeep_pull_point`` in ``test_zeep_client.py``).
* A service WSDL serving a second portType at the same address has ports named after it
  (``PausableSubscriptionManagerSoap11Port``, ``CreatePullPointSoap11Port``...), ``FURTHER_OPERATIONS``.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import zeep
from lxml import etree
from zeep.wsa import WsAddressingPlugin

from hiem import contract, ns, xmlsafe
from hiem.contract import served_document, service_wsdl, validate_wsn

BW = "http://docs.oasis-open.org/wsn/bw-2"
SUBSCRIBE_ACTION = f"{BW}/NotificationProducer/SubscribeRequest"
UNSUBSCRIBE_ACTION = f"{BW}/SubscriptionManager/UnsubscribeRequest"
NOTIFY_ACTION = f"{BW}/NotificationConsumer/Notify"
CONCRETE = "http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete"
TOPIC = "nhin:GIPSE/Biosurveillance/InfluenzaLikeIllness"
SUBSCRIPTION_ID = "382dcdc7-8e84-9fdc-8443-48fd83bca938"
IS_REFERENCE_PARAMETER = f"{{{ns.WSA}}}IsReferenceParameter"

EXPECTED_OPERATIONS = {
    "NotificationProducer": {"Subscribe", "GetCurrentMessage"},
    "SubscriptionManager": {"Renew", "Unsubscribe"},
    "NotificationBroker": {"Notify", "Subscribe", "GetCurrentMessage", "RegisterPublisher"},
    "PullPoint": {"GetMessages", "DestroyPullPoint", "Notify"},
}
# The ports of further portTypes a service WSDL offers at the same address: port name prefix -> operations.
FURTHER_OPERATIONS = {
    "SubscriptionManager": {
        "PausableSubscriptionManager": {"Renew", "Unsubscribe", "PauseSubscription", "ResumeSubscription"},
    },
    "PullPoint": {"CreatePullPoint": {"CreatePullPoint"}},
}


@dataclass
class Recorded:
    path: str
    content_type: str
    soap_action: str | None
    envelope: etree._Element


@dataclass
class FakeHiem:
    """A WSGI app that serves the contract like hiem does and answers POSTs with canned responses."""

    base_url: str = ""
    posts: list[Recorded] = field(default_factory=list)
    gets: list[str] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO", "")
        query = environ.get("QUERY_STRING", "")
        if method == "GET":
            self.gets.append(f"{path}?{query}" if query else path)
            body: bytes | None = None
            if path.startswith("/wsn/") and query == "wsdl" and path[5:] in contract.SERVICE_WSDLS:
                body = service_wsdl(path[5:], self.base_url + path, self.base_url)
            elif path.startswith("/wsdl/"):
                body = served_document(path[6:], self.base_url)
            if body is None:
                return self._reply(start_response, "404 Not Found", "text/plain", b"not found")
            return self._reply(start_response, "200 OK", "text/xml; charset=utf-8", body)
        if method == "POST" and path.startswith("/wsn/"):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            envelope = xmlsafe.parse(environ["wsgi.input"].read(length))
            self.posts.append(
                Recorded(path, environ.get("CONTENT_TYPE", ""), environ.get("HTTP_SOAPACTION"), envelope)
            )
            return self._answer(start_response, envelope)
        return self._reply(start_response, "405 Method Not Allowed", "text/plain", b"")

    def _answer(self, start_response: Any, envelope: etree._Element) -> list[bytes]:
        soap_ns = etree.QName(envelope).namespace
        content_type = "text/xml" if soap_ns == ns.SOAP11 else "application/soap+xml"
        operation = etree.QName(body_child(envelope)).localname
        if operation == "Notify":
            return self._reply(start_response, "202 Accepted", content_type, b"")
        payload = {"Subscribe": subscribe_response(self.base_url), "Unsubscribe": UNSUBSCRIBE_RESPONSE}[
            operation
        ]
        reply = f'<s:Envelope xmlns:s="{soap_ns}"><s:Body>'.encode() + payload + b"</s:Body></s:Envelope>"
        return self._reply(start_response, "200 OK", f"{content_type}; charset=utf-8", reply)

    @staticmethod
    def _reply(start_response: Any, status: str, content_type: str, body: bytes) -> list[bytes]:
        start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]


def subscribe_response(base_url: str) -> bytes:
    return (
        f'<wsnt:SubscribeResponse xmlns:wsnt="{ns.WSNT}" xmlns:wsa="{ns.WSA}" xmlns:nhin="{ns.NHIN}">'
        f"<wsnt:SubscriptionReference><wsa:Address>{base_url}/wsn/SubscriptionManager</wsa:Address>"
        f"<wsa:ReferenceParameters><nhin:SubscriptionId>{SUBSCRIPTION_ID}</nhin:SubscriptionId>"
        "</wsa:ReferenceParameters></wsnt:SubscriptionReference>"
        "<wsnt:CurrentTime>2030-01-01T00:00:00Z</wsnt:CurrentTime>"
        "<wsnt:TerminationTime>2030-01-02T00:00:00Z</wsnt:TerminationTime>"
        "</wsnt:SubscribeResponse>"
    ).encode()


UNSUBSCRIBE_RESPONSE = f'<wsnt:UnsubscribeResponse xmlns:wsnt="{ns.WSNT}"/>'.encode()


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def hiem_server() -> Iterator[FakeHiem]:
    app = FakeHiem()
    server: WSGIServer = make_server("127.0.0.1", 0, app, handler_class=QuietHandler)
    app.base_url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield app
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def client_for(hiem_server: FakeHiem) -> Iterator[Any]:
    clients: list[zeep.Client] = []

    def make(endpoint: str, *, addressing: bool = True) -> zeep.Client:
        plugins = [WsAddressingPlugin()] if addressing else []
        client = zeep.Client(f"{hiem_server.base_url}/wsn/{endpoint}?wsdl", plugins=plugins)
        clients.append(client)
        return client

    yield make
    for client in clients:  # close the requests sessions, or their sockets warn at garbage collection
        client.transport.session.close()


def body_child(envelope: etree._Element) -> etree._Element:
    soap_ns = etree.QName(envelope).namespace
    body = envelope.find(f"{{{soap_ns}}}Body")
    assert body is not None and len(body) == 1, etree.tostring(envelope)
    return body[0]


def header_blocks(envelope: etree._Element) -> dict[str, etree._Element]:
    header = envelope.find(f"{{{etree.QName(envelope).namespace}}}Header")
    return {} if header is None else {block.tag: block for block in header}


def topic_expression() -> etree._Element:
    element = etree.Element(
        f"{{{ns.WSNT}}}TopicExpression", Dialect=CONCRETE, nsmap={"wsnt": ns.WSNT, "nhin": ns.NHIN}
    )
    element.text = TOPIC
    return element


def consumer_reference() -> dict[str, Any]:
    user_address = etree.Element(f"{{{ns.NHIN}}}UserAddress", nsmap={"nhin": ns.NHIN})
    user_address.text = "lee.morgan@carespark.com"
    return {
        "Address": "https://consumer.example.org:6151/Notify",
        "ReferenceParameters": {"_value_1": [user_address]},
    }


@pytest.mark.parametrize("endpoint", sorted(EXPECTED_OPERATIONS))
def test_zeep_loads_each_service_wsdl_with_both_soap_versions(
    endpoint: str, hiem_server: FakeHiem, client_for: Any
) -> None:
    client = client_for(endpoint)
    (service,) = client.wsdl.services.values()
    assert service.name == f"{endpoint}Service"
    operations = {endpoint: EXPECTED_OPERATIONS[endpoint], **FURTHER_OPERATIONS.get(endpoint, {})}
    ports = dict(service.ports)
    assert set(ports) == {f"{prefix}Soap{version}Port" for prefix in operations for version in ("11", "12")}
    for prefix, expected in operations.items():
        assert type(ports[f"{prefix}Soap11Port"].binding).__name__ == "Soap11Binding"
        assert type(ports[f"{prefix}Soap12Port"].binding).__name__ == "Soap12Binding"
        for version in ("11", "12"):
            port = ports[f"{prefix}Soap{version}Port"]
            assert port.binding_options["address"] == f"{hiem_server.base_url}/wsn/{endpoint}"
            assert set(port.binding._operations) == expected
    # Every import was fetched from /wsdl/ on this server, none from the internet.
    assert f"/wsn/{endpoint}?wsdl" in hiem_server.gets
    assert all(get.startswith(("/wsn/", "/wsdl/")) for get in hiem_server.gets)
    assert "/wsdl/b-2.xsd" in hiem_server.gets


def test_subscribe_over_soap12_then_unsubscribe_over_soap11_with_the_subscription_id_header(
    hiem_server: FakeHiem, client_for: Any
) -> None:
    producer = client_for("NotificationProducer").bind(
        "NotificationProducerService", "NotificationProducerSoap12Port"
    )
    response = producer.Subscribe(
        ConsumerReference=consumer_reference(),
        Filter={"_value_1": [topic_expression()]},
        InitialTerminationTime="PT24H",
    )

    subscribe = hiem_server.posts[0]
    assert subscribe.path == "/wsn/NotificationProducer"
    assert etree.QName(subscribe.envelope).namespace == ns.SOAP12
    assert subscribe.content_type.split(";")[0] == "application/soap+xml"
    assert f'action="{SUBSCRIBE_ACTION}"' in subscribe.content_type
    # zeep also sends the SOAP 1.1 SOAPAction header with SOAP 1.2 (same value): hiem must tolerate it.
    assert subscribe.soap_action in (None, f'"{SUBSCRIBE_ACTION}"')
    request = body_child(subscribe.envelope)
    assert request.tag == f"{{{ns.WSNT}}}Subscribe"
    assert validate_wsn(request) == []
    assert contract.schema("b-2.xsd").validate(request)
    (sent_topic,) = request.iter(f"{{{ns.WSNT}}}TopicExpression")
    assert sent_topic.text == TOPIC and sent_topic.get("Dialect") == CONCRETE
    assert sent_topic.nsmap.get("nhin") == ns.NHIN  # the Concrete-dialect prefix resolves
    headers = header_blocks(subscribe.envelope)
    assert headers[f"{{{ns.WSA}}}Action"].text == SUBSCRIBE_ACTION
    assert headers[f"{{{ns.WSA}}}To"].text == f"{hiem_server.base_url}/wsn/NotificationProducer"
    assert headers[f"{{{ns.WSA}}}MessageID"].text.startswith("urn:uuid:")

    reference = response.SubscriptionReference
    manager_address = reference.Address._value_1
    assert manager_address == f"{hiem_server.base_url}/wsn/SubscriptionManager"
    (subscription_id,) = reference.ReferenceParameters._value_1
    assert subscription_id.tag == f"{{{ns.NHIN}}}SubscriptionId" and subscription_id.text == SUBSCRIPTION_ID

    manager_client = client_for("SubscriptionManager")
    manager = manager_client.create_service(
        "{urn:hiem:broker:1}SubscriptionManagerSoap11Binding", manager_address
    )
    header = copy.deepcopy(subscription_id)
    header.set(IS_REFERENCE_PARAMETER, "true")
    assert manager.Unsubscribe(_soapheaders=[header]) is None  # UnsubscribeResponse has no content

    unsubscribe = hiem_server.posts[1]
    assert unsubscribe.path == "/wsn/SubscriptionManager"
    assert etree.QName(unsubscribe.envelope).namespace == ns.SOAP11
    assert unsubscribe.content_type.split(";")[0] == "text/xml"
    assert unsubscribe.soap_action == f'"{UNSUBSCRIBE_ACTION}"'
    request = body_child(unsubscribe.envelope)
    assert request.tag == f"{{{ns.WSNT}}}Unsubscribe" and len(request) == 0
    assert validate_wsn(request) == []
    headers = header_blocks(unsubscribe.envelope)
    assert headers[f"{{{ns.WSA}}}Action"].text == UNSUBSCRIBE_ACTION
    assert headers[f"{{{ns.WSA}}}To"].text == manager_address
    sent_id = headers[f"{{{ns.NHIN}}}SubscriptionId"]
    assert sent_id.text == SUBSCRIPTION_ID and sent_id.get(IS_REFERENCE_PARAMETER) == "true"
    assert validate_wsn(sent_id) == []


class TopicText(zeep.Plugin):
    """Writes the text of wsnt:Topic, which zeep cannot render itself (mixed content, see above)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def egress(self, envelope: Any, http_headers: Any, operation: Any, binding_options: Any) -> Any:
        for topic in envelope.iter(f"{{{ns.WSNT}}}Topic"):
            topic.text = self.text
        return envelope, http_headers


def test_notify_through_the_broker_is_one_way(hiem_server: FakeHiem, client_for: Any) -> None:
    broker = client_for("NotificationBroker")
    # A Notify's Topic is a typed element, not xsd:any, so it cannot be passed as lxml: give zeep the
    # Dialect, declare the topic's prefix on the envelope, and let a plugin write the text.
    broker.set_ns_prefix("nhin", ns.NHIN)
    broker.plugins.append(TopicText(TOPIC))
    message = etree.Element("{urn:example:gipse}Report", nsmap={"g": "urn:example:gipse"})
    message.text = str(uuid.uuid4())
    subscription_id = etree.Element(f"{{{ns.NHIN}}}SubscriptionId")
    subscription_id.text = SUBSCRIPTION_ID
    result = broker.service.Notify(
        NotificationMessage=[
            {
                "SubscriptionReference": {
                    "Address": f"{hiem_server.base_url}/wsn/SubscriptionManager",
                    "ReferenceParameters": {"_value_1": [subscription_id]},
                },
                "Topic": {"Dialect": CONCRETE},
                "ProducerReference": {"Address": "https://publisher.example.org/"},
                "Message": {"_value_1": message},
            }
        ]
    )
    assert result is None  # 202 with an empty body

    (notify,) = hiem_server.posts
    assert notify.soap_action == f'"{NOTIFY_ACTION}"'
    request = body_child(notify.envelope)
    assert request.tag == f"{{{ns.WSNT}}}Notify"
    assert validate_wsn(request) == []
    (topic,) = request.iter(f"{{{ns.WSNT}}}Topic")
    assert topic.text == TOPIC and topic.get("Dialect") == CONCRETE and topic.nsmap["nhin"] == ns.NHIN
    assert request.find(f".//{{{ns.WSNT}}}Message/{{urn:example:gipse}}Report").text == message.text
    assert header_blocks(notify.envelope)[f"{{{ns.WSA}}}Action"].text == NOTIFY_ACTION


def test_zeep_sends_no_ws_addressing_headers_without_the_plugin(
    hiem_server: FakeHiem, client_for: Any
) -> None:
    # Documents the zeep 4.3.3 behaviour the module docstring describes: wsaw:UsingAddressing and
    # wsam:Addressing in the binding are ignored. If this starts failing, zeep learned to read them.
    producer = client_for("NotificationProducer", addressing=False)
    producer.service.Subscribe(
        ConsumerReference=consumer_reference(), Filter={"_value_1": [topic_expression()]}
    )
    (subscribe,) = hiem_server.posts
    assert subscribe.soap_action == f'"{SUBSCRIBE_ACTION}"'
    assert not any(etree.QName(tag).namespace == ns.WSA for tag in header_blocks(subscribe.envelope))
