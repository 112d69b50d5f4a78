"""SOAP over HTTP(S) push delivery with httpx: pooled keep-alive connections, strict timeouts, no redirects.

Error translation (STYLE.md §7): timeouts -> DeliveryTimeout; connect/network errors -> ConsumerUnreachable;
5xx, 408, 429 -> ConsumerUnavailable (with Retry-After); a SOAP fault body -> ConsumerFault; other 4xx ->
ConsumerRejected; a 3xx is a rejection too, because following redirects would let a consumer point the
broker at an address the outbound policy never checked.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit, urlunsplit

import httpx

from hiem.config import DeliverySettings
from hiem.delivery.base import DeliveryOutcome, DeliveryRequest
from hiem.errors import (
    ConsumerFault,
    ConsumerRejected,
    ConsumerUnavailable,
    ConsumerUnreachable,
    DeliveryTimeout,
)

_RETRYABLE_STATUS = {408, 429}


class SoapHttpChannel:
    def __init__(self, settings: DeliverySettings, *, max_connections: int = 100) -> None:
        from hiem.tls import delivery_context

        self._client = httpx.Client(
            verify=delivery_context(settings),
            timeout=httpx.Timeout(settings.read_timeout, connect=settings.connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            follow_redirects=False,
            headers={"User-Agent": "hiem-broker"},
        )

    def deliver(self, request: DeliveryRequest) -> DeliveryOutcome:
        started = time.monotonic()
        url, headers, extensions = _pinned(request)
        try:
            response = self._client.post(url, content=request.body, headers=headers, extensions=extensions)
        except httpx.TimeoutException as exc:
            raise DeliveryTimeout(f"timeout: {type(exc).__name__}") from exc
        except (httpx.NetworkError, httpx.ProtocolError, httpx.ProxyError) as exc:
            raise ConsumerUnreachable(f"{type(exc).__name__}: {exc}") from exc
        except httpx.InvalidURL as exc:
            raise ConsumerRejected(f"invalid consumer address: {exc}") from exc
        elapsed = time.monotonic() - started
        status = response.status_code
        if 200 <= status < 300:
            return DeliveryOutcome(status_code=status, elapsed_seconds=elapsed)
        snippet = response.content[:200].decode("utf-8", "replace")
        if status >= 500 or status in _RETRYABLE_STATUS:
            if status == 500 and b"Fault" in response.content[:4096] and b"Envelope" in response.content[:512]:
                raise ConsumerFault(f"HTTP 500 SOAP fault: {snippet}", status_code=status)
            raise ConsumerUnavailable(f"HTTP {status}", status_code=status,
                                      retry_after=_retry_after(response.headers.get("Retry-After")))
        if b"Fault" in response.content[:4096] and b"Envelope" in response.content[:512]:
            raise ConsumerFault(f"HTTP {status} SOAP fault: {snippet}", status_code=status)
        raise ConsumerRejected(f"HTTP {status}: {snippet}", status_code=status)

    def close(self) -> None:
        self._client.close()


def _pinned(request: DeliveryRequest) -> tuple[str, dict[str, str], dict[str, str]]:
    """Point the URL at the checked IP, keeping the Host header and the TLS server name (SNI and
    certificate verification) on the original host name."""
    if not request.connect_to:
        return request.address, request.headers, {}
    parts = urlsplit(request.address)
    host = parts.hostname or ""
    ip = f"[{request.connect_to}]" if ":" in request.connect_to else request.connect_to
    netloc = f"{ip}:{parts.port}" if parts.port else ip
    host_header = f"{host}:{parts.port}" if parts.port else host
    url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return url, {**request.headers, "Host": host_header}, extensions


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
