"""The web process's side of the queue: hand a committed notification to the fan-out task."""

from __future__ import annotations


class CeleryDispatcher:
    def __init__(self, queue: str) -> None:
        self.queue = queue

    def fanout(self, notification_id: int) -> None:
        from hiem.worker.tasks import send_fanout

        send_fanout(notification_id, self.queue)

    def deliver_in_order(self, delivery_ids: list[int]) -> None:
        from hiem.worker.tasks import deliver

        deliver.delay(delivery_ids, sequential=True)
