"""Barriers for negative delivery checks, instead of "sleep, then assert nothing (more) arrived".

After the action whose effect must NOT reach a consumer, publish a marker notification that WILL reach the
same consumer, wait until it arrives, then assert that the consumer got the marker and nothing it should not
have. The marker trails the unwanted notification because hiem fans out in the order it accepted
notifications (one fan-out at a time, by notification id; a fan-out first does every earlier one still
pending) and then hands its deliveries to the workers, normally before the next one's. Two strengths:

* same subscription with ``HIEM_ORDERED_DELIVERY=1``: the marker cannot even be claimed while an earlier
  delivery of that subscription is held, pending, in flight or retrying. It strictly trails, even a second
  send that is only scheduled in the database;
* otherwise (unordered delivery, or another subscription of the same consumer): a delivery of the unwanted
  notification was created and queued for the same consumer before the marker's; only concurrent sends can
  swap them, by milliseconds. A fair barrier for whatever is on its way when the marker is published, not
  for a send merely scheduled for later (check the delivery row for that).

A marker is a ``<m:Marker xmlns:m="urn:test:barrier">text</m:Marker>`` element anywhere in the message.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from lxml import etree

from tests.support import wsn
from tests.support.consumer import Received, RecordingConsumer

MARKER_NS = "urn:test:barrier"
#: a GIPSE topic no integration test publishes on: a subscription to it receives markers only
MARKER_TOPIC = "nhin:GIPSE/Biosurveillance/Gastrointestinal"


def marker_element(text: str) -> str:
    return f"<m:Marker xmlns:m='{MARKER_NS}'>{text}</m:Marker>"


def marker_of(received: Received) -> str | None:
    """The marker text a received request carries, or None (not a marker, or not XML)."""
    try:
        return etree.fromstring(received.body).findtext(f".//{{{MARKER_NS}}}Marker")
    except etree.XMLSyntaxError:
        return None


def unmarked(received: Iterable[Received]) -> list[Received]:
    """The requests that are not markers."""
    return [r for r in received if marker_of(r) is None]


def publish_marker(broker_url: str, text: str, topic: str = MARKER_TOPIC, payload: str | None = None) -> None:
    """Notify a marker on ``topic``; ``payload`` (which must contain ``marker_element(text)``) replaces the bare
    marker when the subscription needs more to match (a MessageContent filter)."""
    payload = marker_element(text) if payload is None else payload
    assert marker_element(text) in payload, payload
    response = wsn.call(broker_url, "Notify", wsn.notify_body(topic=topic, payload=payload))
    assert response.status_code == 202, response.text


def wait_for_marker(consumer: RecordingConsumer, text: str, timeout: float = 20.0) -> list[Received]:
    """Wait until the marker ``text`` has reached ``consumer``; returns everything received by then."""
    return consumer.wait_for_match(lambda r: marker_of(r) == text, timeout, f"the marker {text!r}")


@contextmanager
def marker_subscription(broker_url: str, consumer_url: str, topic: str = MARKER_TOPIC) -> Iterator[str]:
    """A second subscription of the same consumer endpoint, to a topic the test publishes nothing else on:
    the marker's way to a consumer whose own subscription must not (paused, expired, unsubscribed) or would
    bring more than the marker. Unsubscribed on exit."""
    response = wsn.call(broker_url, "Subscribe", wsn.subscribe_body(consumer_url, topic=topic))
    assert response.status_code == 200, response.text
    subscription = wsn.subscription_id(response)
    try:
        yield subscription
    finally:
        wsn.call(broker_url, "Unsubscribe", "<wsnt:Unsubscribe/>", headers=wsn.subscription_header(subscription))
