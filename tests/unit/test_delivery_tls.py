"""Outgoing deliveries over HTTPS: the consumer's certificate is verified against HIEM_DELIVERY_CA, and the
broker presents its client certificate (HIEM_DELIVERY_CLIENT_CERT/_KEY) to consumers that require one."""

from __future__ import annotations

import ssl

import pytest

from hiem.config import DeliverySettings
from hiem.delivery.base import DeliveryRequest
from hiem.delivery.soap_http import SoapHttpChannel
from hiem.errors import ConsumerUnreachable
from tests.support.consumer import RecordingConsumer
from tests.support.pki import TestPki


@pytest.fixture
def tls_consumer(tmp_path):
    pki = TestPki(tmp_path / "pki")
    server = pki.issue("consumer", server=True)
    consumer = RecordingConsumer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(server.cert, server.key)
    context.load_verify_locations(pki.ca_file)
    context.verify_mode = ssl.CERT_REQUIRED  # the consumer insists on a client certificate
    consumer._server.socket = context.wrap_socket(consumer._server.socket, server_side=True)
    with consumer:
        yield consumer, pki


def _deliver(settings: DeliverySettings, port: int) -> int:
    channel = SoapHttpChannel(settings)
    try:
        return channel.deliver(DeliveryRequest(address=f"https://localhost:{port}/notify", body=b"<x/>")).status_code
    finally:
        channel.close()


def test_verified_consumer_and_client_certificate(tls_consumer):
    consumer, pki = tls_consumer
    broker = pki.issue("broker", server=False)
    settings = DeliverySettings(ca_file=str(pki.ca_file), client_cert_file=str(broker.cert),
                                client_key_file=str(broker.key))
    assert _deliver(settings, consumer.port) == 202
    assert len(consumer.received) == 1


def test_untrusted_consumer_certificate_is_refused(tls_consumer, tmp_path):
    consumer, pki = tls_consumer
    other = TestPki(tmp_path / "other", "other CA")
    broker = pki.issue("broker", server=False)
    settings = DeliverySettings(ca_file=str(other.ca_file), client_cert_file=str(broker.cert),
                                client_key_file=str(broker.key))
    with pytest.raises(ConsumerUnreachable):
        _deliver(settings, consumer.port)
    assert consumer.received == []


def test_consumer_requiring_a_client_certificate_refuses_a_broker_without_one(tls_consumer):
    consumer, pki = tls_consumer
    with pytest.raises(ConsumerUnreachable):
        _deliver(DeliverySettings(ca_file=str(pki.ca_file)), consumer.port)
    assert consumer.received == []


def test_pinned_https_delivery_verifies_the_certificate_for_the_host_name_not_the_ip(tls_consumer):
    """DNS pinning (connect_to) keeps SNI and certificate verification on the address's host name."""
    consumer, pki = tls_consumer
    broker = pki.issue("broker", server=False)
    settings = DeliverySettings(ca_file=str(pki.ca_file), client_cert_file=str(broker.cert),
                                client_key_file=str(broker.key))
    channel = SoapHttpChannel(settings)
    try:
        outcome = channel.deliver(DeliveryRequest(address=f"https://localhost:{consumer.port}/notify", body=b"<x/>",
                                                  connect_to="127.0.0.1"))
        assert outcome.status_code == 202
        assert consumer.received[-1].headers["Host"] == f"localhost:{consumer.port}"
        with pytest.raises(ConsumerUnreachable, match=r"(?i)certificate|hostname"):
            channel.deliver(DeliveryRequest(address=f"https://consumer.invalid:{consumer.port}/notify",
                                            body=b"<x/>", connect_to="127.0.0.1"))
    finally:
        channel.close()
    assert len(consumer.received) == 1, "the certificate that does not name the host got nothing"


def test_a_route_is_looked_up_in_the_pool_manager_once(tls_consumer):
    """The sender threads read their pool from a dict: PoolManager (and its lock) only on a route's first use."""
    consumer, pki = tls_consumer
    broker = pki.issue("broker", server=False)
    channel = SoapHttpChannel(DeliverySettings(ca_file=str(pki.ca_file), client_cert_file=str(broker.cert),
                                               client_key_file=str(broker.key)))
    lookups = []
    real = channel._pools.connection_from_host
    channel._pools.connection_from_host = lambda *a, **k: lookups.append(a) or real(*a, **k)  # type: ignore[method-assign]
    try:
        for _ in range(3):
            channel.deliver(DeliveryRequest(address=f"https://localhost:{consumer.port}/notify", body=b"<x/>",
                                            connect_to="127.0.0.1"))
    finally:
        channel.close()
    assert len(consumer.received) == 3 and len(lookups) == 1
