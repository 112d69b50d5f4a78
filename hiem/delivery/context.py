"""What the sending pipeline needs from the process it runs in, and nothing more.

The worker's runtime satisfies it; the pipeline never sees the runtime itself, so delivery does not
depend on the worker (or on how the Notify is built: WS-N lives above this layer and is reached
through :meth:`DeliveryContext.build`).
"""

from __future__ import annotations

import uuid
from typing import Protocol

from hiem.audit.trail import AuditTrail
from hiem.config import Settings
from hiem.delivery.base import DeliveryChannel, DeliveryRequest
from hiem.store.db import Database
from hiem.store.deliveries import Claim


class DeliveryContext(Protocol):
    settings: Settings
    db: Database
    audit: AuditTrail

    def channel(self, name: str) -> DeliveryChannel:
        """The process's channel of that name (one connection pool per channel, shared by senders)."""
        ...

    def build(self, claim: Claim) -> DeliveryRequest:
        """The message for one delivery, addressed and signed, ready for its channel."""
        ...


_MESSAGE_ID_NAMESPACE = uuid.UUID("6f1c7a52-5d0e-4c39-9a43-3f7f6f0b7a10")


def delivery_message_id(subscription_id: str, notification_id: int) -> str:
    """The wsa:MessageID of a delivery: the same on every retry and redelivery, so consumers can de-duplicate."""
    return f"urn:uuid:{uuid.uuid5(_MESSAGE_ID_NAMESPACE, f'{subscription_id}/{notification_id}')}"
