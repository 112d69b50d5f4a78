"""Running the processes: ``hiem serve`` (web, plus an in-process worker in embedded mode) and
``hiem worker`` (a Celery worker with the outbox sweeper)."""

from __future__ import annotations

import logging
import threading

from waitress import create_server

from hiem.audit.trail import AuditTrail
from hiem.bootstrap import load_topic_files, open_database, topic_files
from hiem.config import Settings
from hiem.web import HiemApp
from hiem.wsn.context import ServiceContext

log = logging.getLogger(__name__)


def run_server(settings: Settings, *, host: str, port: int, threads: int = 16) -> int:
    from workers import app as celery_app
    from workers.dispatch import CeleryDispatcher

    app = celery_app.configure(settings)
    database = open_database(settings)
    for result in load_topic_files(database, topic_files(settings)):
        log.info("topics %s: %d added, %d already loaded", result.namespace, result.added, result.existing)
    ctx = ServiceContext(settings=settings, db=database, dispatcher=CeleryDispatcher(), audit=AuditTrail(settings))
    wsgi = HiemApp(ctx, broker_check=celery_app.broker_reachable)
    server = create_server(wsgi, host=host, port=port, threads=threads, ident="hiem",
                           max_request_body_size=settings.xml_limits.max_bytes + 1024,
                           clear_untrusted_proxy_headers=True)
    mode = "embedded (SQLite/in-process worker)" if settings.embedded else "distributed (web only)"
    log.info("hiem listening on http://%s:%s (%s, database %s)", host, port, mode,
             database.engine.url.render_as_string(hide_password=True))
    if not settings.embedded:
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
        return 0
    web = threading.Thread(target=server.run, name="hiem-http", daemon=True)
    web.start()
    from workers.audit_shipper import AuditShipper
    from workers.sweeper import Sweeper

    sweeper = Sweeper(settings.delivery.sweep_interval)
    sweeper.start()
    shipper = AuditShipper()
    shipper.start()
    # The Celery worker owns the main thread (it installs signal handlers); the memory transport is
    # shared by every thread of this process, so the web threads' tasks reach it.
    worker = app.Worker(pool="threads", concurrency=settings.worker_concurrency, loglevel="INFO",
                        without_heartbeat=True, without_mingle=True, without_gossip=True, quiet=True)
    try:
        worker.start()
    finally:
        sweeper.stop()
        shipper.stop()
        server.close()
    return worker.exitcode or 0


def run_worker(settings: Settings, *, concurrency: int | None, loglevel: str, sweeper: bool) -> int:
    from celery.signals import worker_ready, worker_shutdown

    from workers import app as celery_app
    from workers.audit_shipper import AuditShipper
    from workers.sweeper import Sweeper

    app = celery_app.configure(settings)
    background: list[Sweeper | AuditShipper] = []

    @worker_ready.connect(weak=False)
    def _start_background(**_: object) -> None:
        # In the worker's parent process: the sweeper and the audit shipper (PostgreSQL elects one shipper).
        if sweeper:
            background.extend([Sweeper(settings.delivery.sweep_interval), AuditShipper()])
        for thread in background:
            thread.start()

    @worker_shutdown.connect(weak=False)
    def _stop_background(**_: object) -> None:
        for thread in background:
            thread.stop()

    argv = ["worker", "--loglevel", loglevel, "-Q", settings.queue]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    app.worker_main(argv)
    return 0
