"""The web process's side of the queue: hand a committed notification to the fan-out task."""

from __future__ import annotations


class CeleryDispatcher:
    def fanout(self, notification_id: int) -> None:
        from workers.tasks import fanout

        fanout.delay(notification_id)
