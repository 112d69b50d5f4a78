"""SOAP over HTTP(S) push delivery with urllib3: pooled keep-alive connections, strict timeouts, no redirects.

Why urllib3 and not httpx: httpx's sync client spent about three times urllib3's CPU per POST, and its
pool lock was the most contended lock in the delivering process (docs/performance.md).

Error translation, one exception per meaning: timeouts -> DeliveryTimeout; connect/network/TLS errors ->
ConsumerUnreachable; 5xx, 408, 429 -> ConsumerUnavailable (with Retry-After); other 4xx ->
ConsumerRejected; a 3xx is a rejection too, because following redirects would let a consumer point the
broker at an address the outbound policy never checked. A SOAP fault is judged by its code, whatever the
status: Receiver (SOAP 1.2) or Server (SOAP 1.1) means "try again later" -> ConsumerBusy; Sender/Client,
VersionMismatch and MustUnderstand blame the message -> ConsumerFault (final).
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationParseError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from hiem import ns, xmlsafe
from hiem.config import DeliverySettings
from hiem.delivery.base import DeliveryOutcome, DeliveryRequest
from hiem.errors import (
    ConsumerBusy,
    ConsumerFault,
    ConsumerRejected,
    ConsumerUnavailable,
    ConsumerUnreachable,
    DeliveryTimeout,
    XmlRejected,
)

_RETRYABLE_STATUS = {408, 429}
_DEFAULT_PORTS = {"http": 80, "https": 443}
#: a kept-alive connection idle longer than this is not reused: a NAT, firewall or consumer may have
#: dropped it without a FIN, and with no retries a stale connection would cost an attempt (httpx's
#: default keep-alive expiry is 5 s)
IDLE_EXPIRY_SECONDS = 4.0
#: consumer routes (address, port, scheme, verified name) with a connection pool kept
MAX_ROUTES = 1000


class _ExpiringConnections:
    """Pool mixin: close a connection that sat idle longer than :data:`IDLE_EXPIRY_SECONDS` before reuse
    (urllib3 reconnects a closed connection on its next request)."""

    def _get_conn(self, timeout: float | None = None):  # type: ignore[no-untyped-def]
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        idle_since = getattr(conn, "_hiem_idle_since", None)
        if idle_since is not None and time.monotonic() - idle_since > IDLE_EXPIRY_SECONDS:
            conn.close()
        return conn

    def _put_conn(self, conn) -> None:  # type: ignore[no-untyped-def]
        if conn is not None:
            conn._hiem_idle_since = time.monotonic()
        super()._put_conn(conn)  # type: ignore[misc]


class _HTTPPool(_ExpiringConnections, urllib3.HTTPConnectionPool):
    pass


class _HTTPSPool(_ExpiringConnections, urllib3.HTTPSConnectionPool):
    pass


class SoapHttpChannel:
    def __init__(self, settings: DeliverySettings, *, max_connections: int = 100) -> None:
        from hiem.tls import delivery_context

        self._pools = urllib3.PoolManager(
            num_pools=MAX_ROUTES, maxsize=max_connections, block=False, retries=False,
            timeout=urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout),
            ssl_context=delivery_context(settings),
        )
        self._pools.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        # Pools already looked up, by route: a plain dict read needs no lock, where every PoolManager lookup
        # takes its lock and rebuilds its key (the sender threads queued on it). Filled on a miss only;
        # cleared when the manager's own LRU could have closed one of them.
        self._routes: dict[tuple[str, int, str, str | None], urllib3.HTTPConnectionPool] = {}
        self._max_routes = MAX_ROUTES - 1  # fewer than the manager keeps, so it never evicts one of these

    def deliver(self, request: DeliveryRequest) -> DeliveryOutcome:
        started = time.monotonic()
        try:
            pool, path, headers = self._route(request)
            response = pool.urlopen("POST", path, body=request.body, headers=headers, redirect=False,
                                    retries=False, assert_same_host=False, preload_content=True)
        except (LocationParseError, ValueError) as exc:
            raise ConsumerRejected(f"invalid consumer address: {exc}") from exc
        except NewConnectionError as exc:  # before ConnectTimeoutError: urllib3 derives it from that
            raise ConsumerUnreachable(f"{type(exc).__name__}: {exc}") from exc
        except (ConnectTimeoutError, ReadTimeoutError) as exc:
            raise DeliveryTimeout(f"timeout: {type(exc).__name__}") from exc
        except (ProtocolError, HTTPError, OSError) as exc:
            raise ConsumerUnreachable(f"{type(exc).__name__}: {exc}") from exc
        elapsed = time.monotonic() - started
        status = response.status
        if 200 <= status < 300:
            return DeliveryOutcome(status_code=status, elapsed_seconds=elapsed)
        content = response.data or b""
        snippet = content[:200].decode("utf-8", "replace")
        retry_after = _retry_after(response.headers.get("Retry-After"))
        fault = soap_fault_code(content)
        if fault is not None:
            raise _fault_error(fault, status, retry_after)
        if status >= 500 or status in _RETRYABLE_STATUS:
            raise ConsumerUnavailable(f"HTTP {status}", status_code=status, retry_after=retry_after)
        raise ConsumerRejected(f"HTTP {status}: {snippet}", status_code=status)

    def _route(self, request: DeliveryRequest) -> tuple[urllib3.HTTPConnectionPool, str, dict[str, str]]:
        """The connection pool and request target for a delivery.

        With ``connect_to`` (the address the outbound policy checked), the connection goes to that IP and
        nowhere else, while the Host header, the TLS server name (SNI) and certificate verification stay
        on the original host name: a DNS answer that changes between check and connect cannot redirect it.
        """
        parts = urlsplit(request.address)
        scheme, host = parts.scheme.lower(), parts.hostname
        if scheme not in _DEFAULT_PORTS or not host:
            raise ValueError(f"{request.address!r} is not an http(s) URL with a host")
        port = parts.port or _DEFAULT_PORTS[scheme]
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"User-Agent": "hiem-broker", **request.headers}
        if not request.connect_to:
            return self._pool(host, port, scheme, None), path, headers
        name = f"[{host}]" if ":" in host else host  # an IPv6 literal keeps its brackets in Host
        headers["Host"] = name if port == _DEFAULT_PORTS[scheme] else f"{name}:{port}"
        name_to_verify = host.rstrip(".")  # "example.org." names the same host; certificates never end in "."
        return self._pool(request.connect_to, port, scheme, name_to_verify if scheme == "https" else None), \
            path, headers

    def _pool(self, host: str, port: int, scheme: str, verify_name: str | None) -> urllib3.HTTPConnectionPool:
        key = (host, port, scheme, verify_name)
        pool = self._routes.get(key)
        if pool is None:
            if len(self._routes) >= self._max_routes:
                # before the manager's lookup: a new route may make it evict (and close) one of these
                self._routes.clear()
            extra = {"server_hostname": verify_name, "assert_hostname": verify_name} if verify_name else None
            pool = self._pools.connection_from_host(host, port, scheme, pool_kwargs=extra)
            self._routes[key] = pool
        return pool

    def close(self) -> None:
        self._routes.clear()
        self._pools.clear()


#: the answers a broker reads, not documents it keeps: small limits
_FAULT_LIMITS = xmlsafe.XmlLimits(max_bytes=65_536, max_depth=32, max_elements=500)
_RETRY_LATER = {"Receiver", "Server"}
MUST_UNDERSTAND_REASON = (
    "the consumer does not process WS-Security: it answered a MustUnderstand fault, and HIEM requires every "
    "Notify to carry a signed wsse:Security header marked mustUnderstand. The consumer must support "
    "WS-Security (or subscribe through a channel that does not need it); then redeliver")


def soap_fault_code(content: bytes) -> tuple[str, str] | None:
    """(local name of the SOAP fault code, reason text) when ``content`` is a SOAP 1.1/1.2 Fault envelope.

    SOAP 1.2 puts the code in ``Fault/Code/Value`` (a QName); SOAP 1.1 in ``faultcode``, where dotted
    refinements such as ``Server.Busy`` keep the meaning of their first part.
    """
    if b"Fault" not in content[:8192]:
        return None
    try:
        envelope = xmlsafe.parse(content, _FAULT_LIMITS)
    except XmlRejected:
        return None
    if envelope.tag == ns.qname(ns.SOAP12, "Envelope"):
        fault = envelope.find(f"{{{ns.SOAP12}}}Body/{{{ns.SOAP12}}}Fault")
        code = fault.findtext(f"{{{ns.SOAP12}}}Code/{{{ns.SOAP12}}}Value") if fault is not None else None
        reason = fault.findtext(f"{{{ns.SOAP12}}}Reason/{{{ns.SOAP12}}}Text") if fault is not None else None
    elif envelope.tag == ns.qname(ns.SOAP11, "Envelope"):
        fault = envelope.find(f"{{{ns.SOAP11}}}Body/{{{ns.SOAP11}}}Fault")
        code = fault.findtext("faultcode") if fault is not None else None
        reason = fault.findtext("faultstring") if fault is not None else None
    else:
        return None
    if fault is None:
        return None
    local = (code or "").strip().rpartition(":")[2].split(".", 1)[0]
    return local, " ".join((reason or "").split())[:200]


def _fault_error(fault: tuple[str, str], status: int, retry_after: float | None) -> ConsumerBusy | ConsumerFault:
    code, reason = fault
    if code in _RETRY_LATER:
        return ConsumerBusy(f"HTTP {status} SOAP {code} fault (retried): {reason}", status_code=status,
                            retry_after=retry_after)
    if code == "MustUnderstand":
        return ConsumerFault(f"HTTP {status}: {MUST_UNDERSTAND_REASON}. The consumer said: {reason}",
                             status_code=status)
    return ConsumerFault(f"HTTP {status} SOAP {code or 'unknown'} fault: {reason}", status_code=status)


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
