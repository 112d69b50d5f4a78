"""TLS settings in one place: the server context of ``hiem serve`` and the client context for deliveries.

Both refuse anything older than TLS 1.2. The server asks for and verifies client certificates when a
client CA is configured (NHIN mutual authentication); the delivery client verifies consumers against the
configured CA bundle (or the system store) and presents the broker's client certificate when given.
"""

from __future__ import annotations

import ssl

from hiem.config import DeliverySettings, TlsSettings


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.cert_file, settings.key_file)
    if settings.client_ca_file:
        context.load_verify_locations(settings.client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def delivery_context(settings: DeliverySettings) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.client_cert_file:
        context.load_cert_chain(settings.client_cert_file, settings.client_key_file or None)
    return context
