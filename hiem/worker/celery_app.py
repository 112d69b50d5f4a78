"""The Celery application, configured from hiem's settings.

Durability settings, and why (the measurements are in docs/delivery.md):

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a task whose worker dies is redelivered;
* ``visibility_timeout`` = HIEM_VISIBILITY_TIMEOUT and a 1 s unacked-restore interval: after a whole
  worker dies, its unacknowledged messages come back within seconds instead of ~100 s;
* ``worker_prefetch_multiplier = 1``: a busy worker does not hoard messages another could run.

None of this is trusted alone: the database is the source of truth and the sweeper re-enqueues anything
that a lost message left behind. Tasks are idempotent (conditional claims), so duplicates are harmless.
"""

from __future__ import annotations

from celery import Celery

from hiem.config import Settings
from hiem.worker.redis_transport import TRANSPORT as GUARDED_REDIS_TRANSPORT

EMBEDDED_BROKER = "memory://"

#: Unconfigured until a process starts: :func:`configure` is called by ``hiem serve``/``hiem worker``
#: (and ``hiem status``) with the settings they read, never at import.
app = Celery("hiem", include=["hiem.worker.tasks"])


def configure(settings: Settings) -> Celery:
    app.conf.update(
        broker_url=settings.broker_url or EMBEDDED_BROKER,
        # redis:// gets kombu's transport with the guard that keeps the worker alive when Redis dies mid-task
        # (hiem/worker/redis_transport.py); other schemes keep kombu's choice (kombu enables TLS for rediss://
        # only when the transport is named by the URL's scheme)
        broker_transport=GUARDED_REDIS_TRANSPORT if settings.broker_url.startswith("redis://") else None,
        broker_connection_retry_on_startup=True,
        broker_transport_options={
            "visibility_timeout": max(5, int(settings.delivery.visibility_timeout)),
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
            # the in-memory transport of embedded mode polls: once a second by default, far too slow
            **({"polling_interval": 0.05} if not settings.broker_url else {}),
        },
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_default_queue=settings.queue,
        task_serializer="json",
        accept_content=["json"],
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=not settings.embedded,
        broker_heartbeat=0,
    )
    return app


def express_queue(queue: str) -> str:
    """The queue's express lane, for fan-out tasks. Workers take from both lanes in turn, so a notification's
    fan-out never waits behind a large fan-out's thousands of deliveries (and a fan-out of at most
    ``tasks.EXPRESS_DELIVERIES`` is then sent by the process that ran it)."""
    return f"{queue}.express"


def broker_reachable(timeout: float = 2.0) -> bool:
    """Whether the configured broker accepts a connection now (the embedded one always does)."""
    if app.conf.broker_url == EMBEDDED_BROKER:
        return True
    with app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=timeout)
    return True
