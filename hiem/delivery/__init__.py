"""Delivery channels behind one seam, picked by the consumer address scheme (like kombu's aliases)."""

from __future__ import annotations

from hiem.config import DeliverySettings
from hiem.delivery.base import DeliveryChannel, DeliveryOutcome, DeliveryRequest
from hiem.errors import ConsumerRejected

CHANNEL_ALIASES = {"http": "soap_http", "https": "soap_http"}

__all__ = ["CHANNEL_ALIASES", "DeliveryChannel", "DeliveryOutcome", "DeliveryRequest", "channel_name_for"]


def channel_name_for(address: str) -> str:
    scheme = address.split(":", 1)[0].lower() if ":" in address else ""
    try:
        return CHANNEL_ALIASES[scheme]
    except KeyError:
        raise ConsumerRejected(f"no delivery channel for address scheme {scheme!r}") from None


def make_channel(name: str, settings: DeliverySettings) -> DeliveryChannel:
    if name == "soap_http":
        from hiem.delivery.soap_http import SoapHttpChannel

        return SoapHttpChannel(settings)
    raise KeyError(name)
