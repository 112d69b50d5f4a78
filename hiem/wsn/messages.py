"""WS-BaseNotification 1.3 messages: decoding requests into plain data, building the XML we send.

Decoding is deliberately strict where HIEM v2.0 §3.1 adds MUSTs to WS-N (ConsumerReference and
Filter/TopicExpression with a Dialect in Subscribe; Topic and Message in every NotificationMessage), and
lenient about whitespace, because the spec's own samples put line breaks inside element content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree

from hiem import addressing, ns, xmlsafe
from hiem.addressing import EndpointReference, EprError
from hiem.wsn import faults

WSNT = ns.WSNT
SUBSCRIBE = ns.qname(WSNT, "Subscribe")
UNSUBSCRIBE = ns.qname(WSNT, "Unsubscribe")
NOTIFY = ns.qname(WSNT, "Notify")
RENEW = ns.qname(WSNT, "Renew")

ACTION_SUBSCRIBE = "http://docs.oasis-open.org/wsn/bw-2/NotificationProducer/SubscribeRequest"
ACTION_SUBSCRIBE_RESPONSE = "http://docs.oasis-open.org/wsn/bw-2/NotificationProducer/SubscribeResponse"
ACTION_UNSUBSCRIBE = "http://docs.oasis-open.org/wsn/bw-2/SubscriptionManager/UnsubscribeRequest"
ACTION_UNSUBSCRIBE_PAUSABLE = "http://docs.oasis-open.org/wsn/bw-2/PausableSubscriptionManager/UnsubscribeRequest"
ACTION_UNSUBSCRIBE_RESPONSE = "http://docs.oasis-open.org/wsn/bw-2/SubscriptionManager/UnsubscribeResponse"
ACTION_NOTIFY = "http://docs.oasis-open.org/wsn/bw-2/NotificationConsumer/Notify"
GET_CURRENT_MESSAGE = ns.qname(WSNT, "GetCurrentMessage")
ACTION_GET_CURRENT_MESSAGE = "http://docs.oasis-open.org/wsn/bw-2/NotificationProducer/GetCurrentMessageRequest"
ACTION_GET_CURRENT_MESSAGE_RESPONSE = \
    "http://docs.oasis-open.org/wsn/bw-2/NotificationProducer/GetCurrentMessageResponse"
PAUSE = ns.qname(WSNT, "PauseSubscription")
RESUME = ns.qname(WSNT, "ResumeSubscription")
_SM = "http://docs.oasis-open.org/wsn/bw-2/SubscriptionManager/"
_PSM = "http://docs.oasis-open.org/wsn/bw-2/PausableSubscriptionManager/"
ACTIONS_RENEW = frozenset({_SM + "RenewRequest", _PSM + "RenewRequest"})
ACTION_RENEW_RESPONSE = _SM + "RenewResponse"
ACTIONS_PAUSE = frozenset({_PSM + "PauseSubscriptionRequest"})
ACTION_PAUSE_RESPONSE = _PSM + "PauseSubscriptionResponse"
ACTIONS_RESUME = frozenset({_PSM + "ResumeSubscriptionRequest"})
ACTION_RESUME_RESPONSE = _PSM + "ResumeSubscriptionResponse"
#: hiem's extension (documented in docs/extensions.md): replay a subscription's stream after a sequence number
REPLAY = ns.qname(ns.HIEM, "Replay")
ACTION_REPLAY = "urn:hiem:broker:1/SubscriptionManager/ReplayRequest"
ACTION_REPLAY_RESPONSE = "urn:hiem:broker:1/SubscriptionManager/ReplayResponse"

_KNOWN_FILTERS = {ns.qname(WSNT, "TopicExpression"), ns.qname(WSNT, "ProducerProperties"),
                  ns.qname(WSNT, "MessageContent")}


def _q(local: str) -> str:
    return ns.qname(WSNT, local)


@dataclass(frozen=True)
class TopicExpressionData:
    """A TopicExpression as received: text, Dialect URI and the element's in-scope namespaces."""

    text: str
    dialect: str | None
    nsmap: dict[str | None, str]


@dataclass(frozen=True)
class SubscribeRequest:
    consumer: EndpointReference
    topic: TopicExpressionData
    initial_termination_time: str | None = None
    policies: tuple[str, ...] = ()
    message_content: TopicExpressionData | None = None


@dataclass(frozen=True)
class NotificationMessage:
    """One wsnt:NotificationMessage of a publisher's Notify, with its wsnt:Message kept as bytes."""

    topic: TopicExpressionData
    message_xml: bytes
    producer_reference: bytes = b""


@dataclass(frozen=True)
class NotifyRequest:
    messages: tuple[NotificationMessage, ...] = field(default_factory=tuple)


def _topic_data(element: etree._Element) -> TopicExpressionData:
    text = "".join(element.itertext()).strip()
    dialect = element.get("Dialect")
    return TopicExpressionData(text=text, dialect=dialect.strip() if dialect else None, nsmap=dict(element.nsmap))


def decode_subscribe(body: etree._Element) -> SubscribeRequest:
    consumer_el = body.find(_q("ConsumerReference"))
    if consumer_el is None:
        raise faults.SubscribeCreationFailedFault(
            "Subscribe must carry a wsnt:ConsumerReference (WS-BaseNotification 1.3 §4.2, HIEM v2.0 §3.1.2)",
            code=faults.SoapCode.SENDER)
    try:
        consumer = addressing.parse_epr(consumer_el)
    except EprError as exc:
        raise faults.SubscribeCreationFailedFault(f"invalid ConsumerReference: {exc}",
                                                  code=faults.SoapCode.SENDER) from exc
    filter_el = body.find(_q("Filter"))
    if filter_el is None:
        raise faults.SubscribeCreationFailedFault(
            "HIEM v2.0 §3.1.2 requires wsnt:Filter/wsnt:TopicExpression in Subscribe", code=faults.SoapCode.SENDER)
    children = [c for c in filter_el if isinstance(c.tag, str)]
    unknown = [c.tag for c in children if c.tag not in _KNOWN_FILTERS]
    if unknown:
        names = ", ".join(etree.QName(t).localname for t in unknown)
        raise faults.InvalidFilterFault(f"unknown filter element(s): {names}", unknown)
    if any(c.tag == _q("ProducerProperties") for c in children):
        raise faults.InvalidProducerPropertiesExpressionFault(
            "ProducerProperties filters are not supported by this broker (it has no producer properties)")
    contents = [c for c in children if c.tag == _q("MessageContent")]
    if len(contents) > 1:
        raise faults.InvalidMessageContentExpressionFault("at most one MessageContent filter per Subscribe")
    topics = [c for c in children if c.tag == _q("TopicExpression")]
    if not topics:
        raise faults.SubscribeCreationFailedFault(
            "HIEM v2.0 §3.1.2 requires wsnt:Filter/wsnt:TopicExpression in Subscribe", code=faults.SoapCode.SENDER)
    if len(topics) > 1:
        raise faults.MultipleTopicsSpecifiedFault(
            "one TopicExpression per Subscribe; use the Full dialect's '|' to name several topics")
    topic = _topic_data(topics[0])
    if not topic.dialect:
        raise faults.InvalidTopicExpressionFault(
            "TopicExpression has no Dialect attribute (required by b-2.xsd and HIEM v2.0 §3.1.2)")
    itt_el = body.find(_q("InitialTerminationTime"))
    itt = (itt_el.text or "").strip() if itt_el is not None else None
    policy_el = body.find(_q("SubscriptionPolicy"))
    policies = tuple(c.tag for c in policy_el if isinstance(c.tag, str)) if policy_el is not None else ()
    return SubscribeRequest(consumer=consumer, topic=topic, initial_termination_time=itt or None,
                            policies=policies, message_content=_topic_data(contents[0]) if contents else None)


def decode_notify(body: etree._Element) -> NotifyRequest:
    messages = []
    for index, nm in enumerate(body.findall(_q("NotificationMessage")), start=1):
        topic_el = nm.find(_q("Topic"))
        message_el = nm.find(_q("Message"))
        if topic_el is None:
            raise faults.NotifyMessageNotSupportedFault(
                f"NotificationMessage {index} has no wsnt:Topic (required by HIEM v2.0 §3.1.4)")
        if message_el is None:
            raise faults.NotifyMessageNotSupportedFault(
                f"NotificationMessage {index} has no wsnt:Message (required by HIEM v2.0 §3.1.4)")
        topic = _topic_data(topic_el)
        if not topic.dialect:
            raise faults.InvalidTopicExpressionFault(f"the Topic of NotificationMessage {index} has no Dialect")
        producer = nm.find(_q("ProducerReference"))
        messages.append(NotificationMessage(
            topic=topic,
            # The wsnt:Message element as received, content untouched (HIEM: content unchanged).
            message_xml=etree.tostring(message_el, encoding="utf-8"),
            producer_reference=etree.tostring(producer, encoding="utf-8") if producer is not None else b"",
        ))
    if not messages:
        raise faults.NotifyMessageNotSupportedFault("Notify holds no wsnt:NotificationMessage")
    return NotifyRequest(messages=tuple(messages))


def subscription_reference(manager_address: str, subscription_id: str) -> EndpointReference:
    """The SubscriptionReference EPR: the manager's address plus ``nhin:SubscriptionId`` (HIEM §3.1.2)."""
    holder = etree.Element(ns.qname(ns.WSA, "ReferenceParameters"), nsmap={"wsa": ns.WSA, "nhin": ns.NHIN})
    etree.SubElement(holder, ns.qname(ns.NHIN, "SubscriptionId")).text = subscription_id
    return EndpointReference(address=manager_address, reference_parameters=etree.tostring(holder))


def _dt(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def subscribe_response(reference: EndpointReference, now: datetime,
                       termination: datetime | None) -> etree._Element:
    response = etree.Element(_q("SubscribeResponse"), nsmap={"wsnt": WSNT, "wsa": ns.WSA})
    response.append(addressing.epr_element(_q("SubscriptionReference"), reference))
    etree.SubElement(response, _q("CurrentTime")).text = _dt(now)
    termination_el = etree.SubElement(response, _q("TerminationTime"))
    if termination is None:
        # b-2.xsd: TerminationTime is nillable; nil means the subscription has no scheduled end.
        termination_el.set(ns.qname(ns.XSI, "nil"), "true")
    else:
        termination_el.text = _dt(termination)
    return response


def unsubscribe_response() -> etree._Element:
    return etree.Element(_q("UnsubscribeResponse"), nsmap={"wsnt": WSNT})


def decode_renew(body: etree._Element) -> str | None:
    """The requested TerminationTime text; None when xsi:nil (no scheduled end)."""
    element = body.find(_q("TerminationTime"))
    if element is None:
        raise faults.UnacceptableTerminationTimeFault("Renew must carry wsnt:TerminationTime", _now())
    if element.get(ns.qname(ns.XSI, "nil")) in {"true", "1"}:
        return None
    return (element.text or "").strip()


def renew_response(termination: datetime | None, now: datetime) -> etree._Element:
    response = etree.Element(_q("RenewResponse"), nsmap={"wsnt": WSNT})
    termination_el = etree.SubElement(response, _q("TerminationTime"))
    if termination is None:
        termination_el.set(ns.qname(ns.XSI, "nil"), "true")
    else:
        termination_el.text = _dt(termination)
    etree.SubElement(response, _q("CurrentTime")).text = _dt(now)
    return response


def empty_response(local: str) -> etree._Element:
    return etree.Element(_q(local), nsmap={"wsnt": WSNT})


def decode_get_current_message(body: etree._Element) -> TopicExpressionData:
    topic = body.find(_q("Topic"))
    if topic is None:
        raise faults.InvalidTopicExpressionFault("GetCurrentMessage must carry wsnt:Topic")
    data = _topic_data(topic)
    if not data.dialect:
        raise faults.InvalidTopicExpressionFault("the Topic of GetCurrentMessage has no Dialect")
    return data


def get_current_message_response(message_xml: bytes) -> etree._Element:
    """GetCurrentMessageResponse holds the message content itself (the wsnt:Message's child)."""
    response = etree.Element(_q("GetCurrentMessageResponse"), nsmap={"wsnt": WSNT})
    message = xmlsafe.parse(message_xml)
    for child in message:
        if isinstance(child.tag, str):
            response.append(child)
            break
    return response


def _now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


def notify_body(*, subscription: EndpointReference, topic_text: str, topic_nsmap: dict[str, str],
                dialect: str, message_xml: bytes, producer_reference: bytes = b"") -> etree._Element:
    """The wsnt:Notify a consumer gets (HIEM §3.1.4): SubscriptionReference, Topic in the subscription's
    dialect, ProducerReference when the publisher gave one, and the publisher's wsnt:Message unchanged."""
    notify = etree.Element(_q("Notify"), nsmap={"wsnt": WSNT, "wsa": ns.WSA})
    nm = etree.SubElement(notify, _q("NotificationMessage"))
    nm.append(addressing.epr_element(_q("SubscriptionReference"), subscription))
    topic = etree.SubElement(nm, _q("Topic"), nsmap={p: u for p, u in topic_nsmap.items() if p})
    topic.set("Dialect", dialect)
    topic.text = topic_text
    if producer_reference:
        nm.append(xmlsafe.parse(producer_reference))
    nm.append(xmlsafe.parse(message_xml))
    return notify
