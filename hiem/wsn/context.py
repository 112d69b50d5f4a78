"""What the WS-N role handlers share: settings, the database and the way to hand work to the workers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from hiem.config import Settings
from hiem.store.db import Database


class Dispatcher(Protocol):
    """Hands committed work to the workers. Losing a call is allowed: the sweeper re-enqueues."""

    def fanout(self, notification_id: int) -> None: ...


@dataclass(frozen=True)
class ServiceContext:
    settings: Settings
    db: Database
    dispatcher: Dispatcher

    def base_url(self, request_base_url: str) -> str:
        return self.settings.public_url or request_base_url
