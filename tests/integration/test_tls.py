"""Mutual TLS on `hiem serve`: a client without a trusted certificate cannot talk to the broker; one with
a certificate from the configured client CA can (and Subscribe works over HTTPS)."""

from __future__ import annotations

import ssl

import httpx
import pytest

from tests.support import wsn
from tests.support.pki import TestPki
from tests.support.processes import HiemProcess, free_port, hiem_env, wait_healthy


@pytest.fixture
def tls_broker(tmp_path):
    pki = TestPki(tmp_path / "pki")
    server = pki.issue("hiem-server", server=True)
    client = pki.issue("agency-client", server=False)
    rogue = TestPki(tmp_path / "rogue", "rogue CA").issue("rogue-client", server=False)
    port = free_port()
    env = hiem_env(HIEM_DATABASE_URL=f"sqlite:///{tmp_path / 'hiem.db'}", HIEM_TLS_CERT=str(server.cert),
                   HIEM_TLS_KEY=str(server.key), HIEM_TLS_CLIENT_CA=str(pki.ca_file))
    proc = HiemProcess(["serve", "--dev", "--port", str(port)], env, tmp_path / "web.log").start()
    url = f"https://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, verify=_context(pki, client))
        yield url, pki, client, rogue
    finally:
        proc.stop()


def _context(pki: TestPki, client=None) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    return context


def _refused(url: str, context: ssl.SSLContext) -> bool:
    try:
        httpx.get(f"{url}/healthz", timeout=5, verify=context)
    except (httpx.TransportError, ssl.SSLError):
        return True
    return False


def test_client_certificate_required(tls_broker, consumer):
    url, pki, client, rogue = tls_broker
    assert _refused(url, _context(pki)), "no client certificate"
    assert _refused(url, _context(pki, rogue)), "certificate from an untrusted CA"
    with httpx.Client(verify=_context(pki, client)) as trusted:
        assert trusted.get(f"{url}/healthz").status_code == 200
        data = wsn.envelope(wsn.subscribe_body(consumer.url), action=wsn.ACTIONS["Subscribe"])
        response = trusted.post(f"{url}/wsn/NotificationProducer", content=data,
                                headers={"Content-Type": "application/soap+xml; charset=utf-8"})
        assert response.status_code == 200, response.text
        assert f"{url}/wsn/SubscriptionManager" in response.text, "EPRs carry the https address"
