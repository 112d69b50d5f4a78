"""Building and posting the WS-N messages a client would send, and checking what comes back."""

from __future__ import annotations

import uuid

import httpx
from lxml import etree

from hiem import contract, ns

SOAP12 = ns.SOAP12
SOAP11 = ns.SOAP11
CONCRETE = "http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete"
SIMPLE = "http://docs.oasis-open.org/wsn/t-1/TopicExpression/Simple"
FULL = "http://docs.oasis-open.org/wsn/t-1/TopicExpression/Full"
ILI = "nhin:GIPSE/Biosurveillance/InfluenzaLikeIllness"
ACTIONS = {
    "Subscribe": "http://docs.oasis-open.org/wsn/bw-2/NotificationProducer/SubscribeRequest",
    "Unsubscribe": "http://docs.oasis-open.org/wsn/bw-2/SubscriptionManager/UnsubscribeRequest",
    "Notify": "http://docs.oasis-open.org/wsn/bw-2/NotificationConsumer/Notify",
}
ENDPOINT_OF = {"Subscribe": "NotificationProducer", "Unsubscribe": "SubscriptionManager",
               "Notify": "NotificationBroker"}


def envelope(body: str, *, action: str | None, to: str = "", headers: str = "", soap: str = SOAP12) -> bytes:
    addressing = ""
    if action:
        addressing = (f"<wsa:Action>{action}</wsa:Action><wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID>"
                      + (f"<wsa:To>{to}</wsa:To>" if to else ""))
    return (f'<s:Envelope xmlns:s="{soap}" xmlns:wsa="{ns.WSA}" xmlns:wsnt="{ns.WSNT}" xmlns:nhin="{ns.NHIN}">'
            f"<s:Header>{addressing}{headers}</s:Header><s:Body>{body}</s:Body></s:Envelope>").encode()


def subscribe_body(consumer: str, topic: str = ILI, dialect: str = CONCRETE, refparams: str = "",
                   extra_filter: str = "", extra: str = "") -> str:
    params = f"<wsa:ReferenceParameters>{refparams}</wsa:ReferenceParameters>" if refparams else ""
    dialect_attr = f' Dialect="{dialect}"' if dialect else ""
    return (f"<wsnt:Subscribe><wsnt:ConsumerReference><wsa:Address>{consumer}</wsa:Address>{params}"
            f"</wsnt:ConsumerReference><wsnt:Filter><wsnt:TopicExpression{dialect_attr}>{topic}"
            f"</wsnt:TopicExpression>{extra_filter}</wsnt:Filter>{extra}</wsnt:Subscribe>")


def notify_body(topic: str = ILI, payload: str = "<gipse:Count xmlns:gipse='urn:test:gipse'>42</gipse:Count>",
                dialect: str = CONCRETE) -> str:
    return (f"<wsnt:Notify><wsnt:NotificationMessage><wsnt:Topic Dialect=\"{dialect}\">{topic}</wsnt:Topic>"
            f"<wsnt:Message>{payload}</wsnt:Message></wsnt:NotificationMessage></wsnt:Notify>")


def post(base_url: str, path: str, data: bytes, soap: str = SOAP12, action: str | None = None) -> httpx.Response:
    if soap == SOAP12:
        ctype = "application/soap+xml; charset=utf-8" + (f'; action="{action}"' if action else "")
        headers = {"Content-Type": ctype}
    else:
        headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{action or ""}"'}
    return httpx.post(f"{base_url}{path}", content=data, headers=headers, timeout=30)


def call(base_url: str, operation: str, body: str, *, soap: str = SOAP12, headers: str = "",
         path_suffix: str = "") -> httpx.Response:
    path = f"/wsn/{ENDPOINT_OF[operation]}{path_suffix}"
    data = envelope(body, action=ACTIONS[operation], to=f"{base_url}{path}", headers=headers, soap=soap)
    return post(base_url, path, data, soap, ACTIONS[operation])


def body_element(response: httpx.Response) -> etree._Element:
    root = etree.fromstring(response.content)
    soap = root.tag[1:].split("}")[0]
    return next(c for c in root.find(f"{{{soap}}}Body") if isinstance(c.tag, str))


def assert_valid(element: etree._Element) -> None:
    errors = contract.validate_wsn(element)
    assert not errors, errors


def fault_detail(response: httpx.Response) -> etree._Element:
    """The WS-N fault element from a SOAP 1.1 or 1.2 fault (asserting it is one)."""
    fault = body_element(response)
    assert etree.QName(fault).localname == "Fault", response.text
    detail = fault.find(f"{{{ns.SOAP12}}}Detail")
    if detail is None:
        detail = fault.find("detail")
    assert detail is not None, response.text
    return next(c for c in detail if isinstance(c.tag, str))


def subscription_id(response: httpx.Response) -> str:
    element = body_element(response)
    node = element.find(f".//{{{ns.NHIN}}}SubscriptionId")
    assert node is not None, response.text
    return node.text.strip()


def subscription_header(subscription: str, mark: bool = True) -> str:
    attr = ' wsa:IsReferenceParameter="true"' if mark else ""
    return f"<nhin:SubscriptionId{attr}>{subscription}</nhin:SubscriptionId>"
