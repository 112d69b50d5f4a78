"""The web process's side of the queue: hand a committed notification to the fan-out task."""

from __future__ import annotations


class CeleryDispatcher:
    def __init__(self, queue: str) -> None:
        self.queue = queue

    def fanout(self, notification_id: int) -> None:
        from hiem.worker.celery_app import express_queue
        from hiem.worker.tasks import fanout

        fanout.apply_async((notification_id,), queue=express_queue(self.queue))

    def deliver_in_order(self, delivery_ids: list[int]) -> None:
        from hiem.worker.tasks import deliver

        deliver.delay(delivery_ids, sequential=True)
