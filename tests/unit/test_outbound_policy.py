"""SSRF protection: which consumer addresses the broker refuses outside dev mode, and no redirects."""

from __future__ import annotations

import pytest

from hiem.config import DeliverySettings, Settings
from hiem.delivery.base import DeliveryRequest
from hiem.delivery.policy import AddressNotAllowed, HostNotResolved, check_consumer_address, resolve_checked
from hiem.delivery.soap_http import SoapHttpChannel
from hiem.errors import ConsumerRejected
from tests.support.consumer import RecordingConsumer

REFUSED = [
    "http://127.0.0.1/c", "http://127.1.2.3:8080/c", "http://[::1]/c", "http://169.254.169.254/latest/meta-data",
    "http://10.0.0.5/c", "http://172.16.3.4/c", "http://192.168.1.1/c", "http://localhost:9000/c",
    "http://0.0.0.0/c", "http://[::ffff:127.0.0.1]/c", "http://[fe80::1]/c", "http://224.0.0.1/c",
    "http://100.64.0.1/c",  # carrier-grade NAT, not global
    "ftp://example.org/c", "file:///etc/passwd", "gopher://127.0.0.1/",
]


@pytest.mark.parametrize("address", REFUSED)
def test_refused_outside_dev_mode(address):
    with pytest.raises(AddressNotAllowed):
        resolve_checked(address, allow_private=False)
    with pytest.raises(AddressNotAllowed):
        check_consumer_address(address, Settings())


def test_a_host_that_does_not_resolve_is_its_own_kind_of_refusal():
    # RFC 6761: .invalid never resolves. At delivery this is retryable (DNS failures are often temporary);
    # a policy refusal is final.
    with pytest.raises(HostNotResolved, match="does not resolve"):
        resolve_checked("https://consumer.example.invalid/notify", allow_private=False)


def test_delivery_retries_an_unresolved_host_but_not_a_refused_address():
    from types import SimpleNamespace

    from hiem.config import load_settings
    from hiem.delivery.attempts import send
    from tests.unit.test_sending import claim

    # production settings (private addresses refused); send() decides both cases before it needs more
    # of the runtime than its settings
    rt = SimpleNamespace(settings=load_settings({}))
    unresolved = send(rt, claim(1, "https://consumer.example.invalid/notify"), "https://consumer.example.invalid")
    refused = send(rt, claim(2, "http://127.0.0.1:9/notify"), "http://127.0.0.1:9")
    assert unresolved.error is not None and unresolved.error.retryable
    assert refused.error is not None and not refused.error.retryable


def test_public_literal_address_is_allowed():
    assert resolve_checked("https://93.184.216.34:8443/notify", allow_private=False) == ["93.184.216.34"]


def test_dev_mode_allows_loopback():
    assert resolve_checked("http://127.0.0.1:9/c", allow_private=True) == ["127.0.0.1"]
    check_consumer_address("http://127.0.0.1:9/c", Settings().with_dev())


def test_redirects_are_not_followed():
    """A consumer answering 302 to a loopback target gets a final rejection; the target is never contacted."""
    with RecordingConsumer() as target, RecordingConsumer(
            lambda body: (302, {"Location": target.url}, b"")) as redirecting:
        channel = SoapHttpChannel(DeliverySettings())
        try:
            with pytest.raises(ConsumerRejected):
                channel.deliver(DeliveryRequest(address=redirecting.url, body=b"<x/>"))
        finally:
            channel.close()
        assert len(redirecting.received) == 1
        assert target.received == []


def test_connection_is_pinned_to_the_checked_address():
    """The POST goes to ``connect_to`` whatever the host name says, with the original Host header."""
    with RecordingConsumer() as consumer:
        channel = SoapHttpChannel(DeliverySettings())
        try:
            address = f"http://consumer.invalid:{consumer.port}/notify"
            channel.deliver(DeliveryRequest(address=address, body=b"<x/>", connect_to="127.0.0.1"))
        finally:
            channel.close()
        assert consumer.received[0].headers["Host"] == f"consumer.invalid:{consumer.port}"


def test_deliveries_say_who_sends_them():
    with RecordingConsumer() as consumer:
        channel = SoapHttpChannel(DeliverySettings())
        try:
            channel.deliver(DeliveryRequest(address=consumer.url, body=b"<x/>"))
            channel.deliver(DeliveryRequest(address=consumer.url, body=b"<x/>", connect_to="127.0.0.1"))
        finally:
            channel.close()
        assert [r.headers["User-Agent"] for r in consumer.received] == ["hiem-broker", "hiem-broker"]
