"""Building the Notify a consumer receives for one delivery (HIEM v2.0 §3.1.4).

* ``wsnt:SubscriptionReference``: the same EPR as in the SubscribeResponse;
* ``wsnt:Topic`` in the subscription's dialect, naming exactly the topic published;
* ``wsnt:Message``: the publisher's element, unchanged;
* addressed per WS-Addressing: ``wsa:To`` = consumer address, ``wsa:Action`` Notify, each reference
  parameter of the ConsumerReference as a header block with ``wsa:IsReferenceParameter="true"``;
* ``wsa:MessageID`` derived from (subscription, notification): the same on every retry and redelivery, so a
  consumer can drop duplicates (delivery is at-least-once).
"""

from __future__ import annotations

from typing import Protocol

from lxml import etree

from hiem import addressing, ns
from hiem.addressing import EndpointReference
from hiem.delivery import DeliveryRequest
from hiem.delivery.context import delivery_message_id
from hiem.soap import SoapVersion, build_envelope, serialize
from hiem.store.deliveries import Claim, Replayed
from hiem.wsn import messages
from hiem.wstopics import TopicDialect, TopicPath, render_topic


class Signer(Protocol):
    def sign(self, envelope: etree._Element) -> etree._Element: ...


def sequence_header(subscription_id: str, sequence: int) -> etree._Element:
    """``<hiem:Sequence subscription="..">N</hiem:Sequence>``: per-subscription, gap-free, from 1.

    Not mustUnderstand: a consumer that does not know the header ignores it (SOAP processing rules).
    """
    element = etree.Element(ns.qname(ns.HIEM, "Sequence"), nsmap={"hiem": ns.HIEM})
    element.set("subscription", subscription_id)
    element.text = str(sequence)
    return element


def replay_response(subscription_id: str, manager_address: str, dialect_uri: str,
                    found: list[Replayed]) -> etree._Element:
    """``hiem:ReplayResponse``: one ``hiem:Replayed sequence="N"`` per notification, each holding the
    wsnt:NotificationMessage exactly as the subscriber's Notify carried it."""
    response = etree.Element(ns.qname(ns.HIEM, "ReplayResponse"), nsmap={"hiem": ns.HIEM, "wsnt": ns.WSNT})
    for item in found:
        holder = etree.SubElement(response, ns.qname(ns.HIEM, "Replayed"))
        holder.set("sequence", str(item.sequence))
        holder.append(notification_message(subscription_id, manager_address, dialect_uri, item))
    return response


def notification_message(subscription_id: str, manager_address: str, dialect_uri: str,
                         item: Replayed) -> etree._Element:
    """One wsnt:NotificationMessage exactly as the subscription's Notify carries it (replay, pull points)."""
    dialect = TopicDialect(dialect_uri)
    reference = messages.subscription_reference(manager_address, subscription_id)
    topic_text, topic_nsmap = render_topic(TopicPath(item.topic_namespace, tuple(item.topic_path.split("/"))),
                                           dialect)
    notify = messages.notify_body(subscription=reference, topic_text=topic_text, topic_nsmap=topic_nsmap,
                                  dialect=dialect.value, message_xml=item.message_xml,
                                  producer_reference=item.producer_reference)
    return notify[0]


def build_delivery(claim: Claim, signer: Signer | None = None) -> DeliveryRequest:
    version = SoapVersion.SOAP11 if claim.soap_version == "1.1" else SoapVersion.SOAP12
    dialect = TopicDialect(claim.dialect)
    topic = TopicPath(claim.topic_namespace, tuple(claim.topic_path.split("/")))
    topic_text, topic_nsmap = render_topic(topic, dialect)
    reference = messages.subscription_reference(claim.manager_address, claim.subscription_id)
    body = messages.notify_body(
        subscription=reference, topic_text=topic_text, topic_nsmap=topic_nsmap, dialect=dialect.value,
        message_xml=claim.message_xml, producer_reference=claim.producer_reference,
    )
    message_id = delivery_message_id(claim.subscription_id, claim.notification_id)
    consumer = EndpointReference(claim.consumer_address, claim.consumer_reference_parameters)
    headers = addressing.request_headers(
        to=claim.consumer_address, action=messages.ACTION_NOTIFY, message_id=message_id,
        reference_parameters=consumer.parameter_elements(),
    )
    if claim.sequence is not None:
        headers.append(sequence_header(claim.subscription_id, claim.sequence))
    envelope = build_envelope(version, headers, [body])
    if signer is not None:
        envelope = signer.sign(envelope)
    return DeliveryRequest(
        address=claim.consumer_address, body=serialize(envelope),
        headers=version.http_headers(messages.ACTION_NOTIFY), message_id=message_id,
    )
