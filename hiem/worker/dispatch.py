"""The web process's side of the queue: hand a committed notification to the fan-out task."""

from __future__ import annotations


class CeleryDispatcher:
    def fanout(self, notification_id: int) -> None:
        from hiem.worker.tasks import fanout

        fanout.delay(notification_id)

    def deliver_in_order(self, delivery_ids: list[int]) -> None:
        from hiem.worker.tasks import deliver

        deliver.delay(delivery_ids, sequential=True)
