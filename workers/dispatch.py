"""The web process's side of the queue: hand a committed notification to the fan-out task."""

from __future__ import annotations


class CeleryDispatcher:
    def fanout(self, notification_id: int) -> None:
        from workers.tasks import fanout

        fanout.delay(notification_id)

    def deliver_in_order(self, delivery_ids: list[int]) -> None:
        from workers.tasks import deliver

        deliver.delay(delivery_ids, sequential=True)
