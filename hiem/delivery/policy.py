"""Which consumer addresses the broker will send to (checked at Subscribe and again before delivery).

Outside dev mode a consumer must be an http(s) URL whose host is, and resolves only to, public unicast
addresses: loopback, private, link-local (cloud metadata lives at 169.254.169.254), multicast, reserved
and unspecified ranges are refused, so a subscriber cannot turn the broker against its own network (SSRF).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from hiem.config import Settings


class AddressNotAllowed(ValueError):
    """The address is refused by the outbound policy (or cannot be checked: see :class:`HostNotResolved`)."""


class HostNotResolved(AddressNotAllowed):
    """The consumer's host name did not resolve, so it cannot be checked.

    At Subscribe that refuses the subscription like any other unusable address; at delivery it is a
    retryable failure, since DNS failures are often temporary (``EAI_AGAIN``) and a policy refusal is not.
    """


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return _is_public(ip.ipv4_mapped)
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def resolve_checked(address: str, allow_private: bool) -> list[str]:
    """Check an address and return the IPs its host resolves to (all of which passed the check)."""
    parts = urlsplit(address)
    if parts.scheme.lower() not in {"http", "https"}:
        raise AddressNotAllowed(f"consumer address scheme {parts.scheme!r} is not http or https")
    host = parts.hostname
    if not host:
        raise AddressNotAllowed("consumer address has no host")
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise AddressNotAllowed("consumer address has an invalid port") from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        if allow_private:
            return []
        raise HostNotResolved(f"consumer host {host!r} does not resolve: {exc}") from None
    ips = sorted({info[4][0] for info in infos})
    if not allow_private:
        for ip in ips:
            if not _is_public(ipaddress.ip_address(ip.split("%", 1)[0])):
                raise AddressNotAllowed(f"consumer host {host!r} resolves to non-public address {ip}")
    return ips


def check_consumer_address(address: str, settings: Settings) -> None:
    """Subscribe-time check: AddressNotAllowed (HostNotResolved included) when deliveries could not go there."""
    parts = urlsplit(address)
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        raise AddressNotAllowed(f"consumer address {address!r} is not an absolute http(s) URL")
    if not settings.delivery.allow_private_addresses:
        resolve_checked(address, allow_private=False)
