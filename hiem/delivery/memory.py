"""A channel that records what it was given instead of sending it: for unit tests of fan-out logic."""

from __future__ import annotations

import threading

from hiem.delivery.base import DeliveryOutcome, DeliveryRequest
from hiem.errors import DeliveryError


class MemoryChannel:
    retryable_errors: tuple[type[DeliveryError], ...] = ()

    def __init__(self) -> None:
        self.sent: list[DeliveryRequest] = []
        self._lock = threading.Lock()

    def deliver(self, request: DeliveryRequest) -> DeliveryOutcome:
        with self._lock:
            self.sent.append(request)
        return DeliveryOutcome(status_code=202, elapsed_seconds=0.0)

    def close(self) -> None:
        pass
