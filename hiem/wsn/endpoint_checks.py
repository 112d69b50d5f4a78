"""Control notifications: the endpoint check before a subscription becomes active, and heartbeats.

Both are ordinary signed WS-N Notify messages on topics reserved in hiem's namespace
(``hiem:EndpointCheck``, ``hiem:Heartbeat``, rendered in the subscription's own dialect) so a consumer
needs nothing special to receive them, and can tell silence from breakage: a subscriber that asked for
heartbeats (``<hiem:Heartbeat interval="PT60S"/>`` as an extension element of wsnt:Subscribe) hears from
the broker at least that often. They are sent once, directly, with no retry: a failed heartbeat is the
information. See docs/extensions.md.
"""

from __future__ import annotations

import uuid
from typing import Any

from lxml import etree

from hiem import addressing, ns
from hiem.addressing import EndpointReference
from hiem.config import DeliverySettings
from hiem.delivery import DeliveryRequest
from hiem.delivery.soap_http import SoapHttpChannel
from hiem.soap import SoapVersion, build_envelope, serialize
from hiem.wsn import messages
from hiem.wstopics import TopicDialect, TopicPath, render_topic

HEARTBEAT = ns.qname(ns.HIEM, "Heartbeat")


def control_request(*, topic_local: str, subscription_id: str, manager_address: str, consumer: EndpointReference,
                    dialect_uri: str, soap_version: str, signer: Any = None, connect_to: str | None = None
                    ) -> DeliveryRequest:
    version = SoapVersion.SOAP11 if soap_version == "1.1" else SoapVersion.SOAP12
    dialect = TopicDialect(dialect_uri)
    topic_text, topic_nsmap = render_topic(TopicPath(ns.HIEM, (topic_local,)), dialect, "hiem")
    payload = etree.Element(ns.qname(ns.WSNT, "Message"), nsmap={"wsnt": ns.WSNT})
    etree.SubElement(payload, ns.qname(ns.HIEM, topic_local), nsmap={"hiem": ns.HIEM})
    body = messages.notify_body(
        subscription=messages.subscription_reference(manager_address, subscription_id), topic_text=topic_text,
        topic_nsmap=topic_nsmap, dialect=dialect.value, message_xml=etree.tostring(payload))
    message_id = f"urn:uuid:{uuid.uuid4()}"
    headers = addressing.request_headers(to=consumer.address, action=messages.ACTION_NOTIFY, message_id=message_id,
                                         reference_parameters=consumer.parameter_elements())
    envelope = build_envelope(version, headers, [body])
    if signer is not None:
        envelope = signer.sign(envelope)
    return DeliveryRequest(address=consumer.address, body=serialize(envelope),
                           headers=version.http_headers(messages.ACTION_NOTIFY), message_id=message_id,
                           connect_to=connect_to)


def send_once(request: DeliveryRequest, settings: DeliverySettings) -> None:
    """Send one control Notify now; raises hiem.errors.DeliveryError when the consumer does not take it."""
    channel = SoapHttpChannel(settings, max_connections=1)
    try:
        channel.deliver(request)
    finally:
        channel.close()


def heartbeat_interval(body: etree._Element, minimum: float) -> float | None:
    """The interval a Subscribe asks for with ``hiem:Heartbeat interval="xs:duration"`` (None: none asked)."""
    from hiem.durations import parse_duration
    from hiem.wsn import faults

    element = body.find(HEARTBEAT)
    if element is None:
        return None
    try:
        seconds = parse_duration((element.get("interval") or "").strip()).total_seconds()
    except ValueError:
        raise faults.SubscribeCreationFailedFault("hiem:Heartbeat needs an xs:duration interval",
                                                  code=faults.SoapCode.SENDER) from None
    if seconds < minimum:
        raise faults.SubscribeCreationFailedFault(f"hiem:Heartbeat interval must be at least {minimum:g} seconds",
                                                  code=faults.SoapCode.SENDER)
    return seconds
