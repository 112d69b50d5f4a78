"""Running the processes: ``hiem serve`` (web, plus an in-process worker in embedded mode) and
``hiem worker`` (a Celery worker with the outbox sweeper)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from hiem.app.bootstrap import load_topic_files, topic_files
from hiem.app.console import mount_console
from hiem.app.context import build_runtime, runtime_factory, service_context
from hiem.app.web import HiemApp, WsgiApp
from hiem.audit.shipper import AuditShipper
from hiem.config import Settings
from hiem.security.setup import broker_identity, make_verifier
from hiem.store.nonces import DatabaseNonceCache
from hiem.worker import celery_app, tasks
from hiem.worker import runtime as worker_runtime
from hiem.worker.dispatch import CeleryDispatcher
from hiem.worker.sweeper import Sweeper

if TYPE_CHECKING:
    from celery.worker import WorkController

log = logging.getLogger(__name__)


def run_server(settings: Settings, *, host: str, port: int, threads: int = 16, ops_host: str | None = None,
               ops_port: int | None = None) -> int:
    app = celery_app.configure(settings)
    rt = build_runtime(settings)
    database = rt.db
    for result in load_topic_files(database, topic_files(settings)):
        log.info("topics %s: %d added, %d already loaded", result.namespace, result.added, result.existing)
    # refuse to start without what production needs: trusted IdPs first, then the broker's signing key
    verifier = make_verifier(settings, DatabaseNonceCache(database))
    ctx = service_context(rt, CeleryDispatcher(settings.queue))
    console = mount_console(settings, database, host=host, port=port, ops_host=ops_host, ops_port=ops_port,
                            make_server=make_http_server)
    web_app = HiemApp(ctx, broker_check=celery_app.broker_reachable, ops=console.on_main, verifier=verifier.verify)
    server = make_http_server(settings, app_=web_app, host=host, port=port, threads=threads)
    console.start()
    mode = "embedded (SQLite/in-process worker)" if settings.embedded else "distributed (web only)"
    scheme = "https" if settings.tls.enabled else "http"
    log.info("hiem listening on %s://%s:%s (%s, database %s)", scheme, host, port, mode,
             database.engine.url.render_as_string(hide_password=True))
    if not settings.embedded:
        try:
            server.safe_start()
        finally:
            server.stop()
            console.stop()
        return 0
    web = threading.Thread(target=server.safe_start, name="hiem-http", daemon=True)
    web.start()
    worker_runtime.install(rt)  # the in-process worker shares this process's resources
    sweeper = Sweeper(settings.delivery.sweep_interval)
    sweeper.start()
    shipper = AuditShipper(worker_runtime.runtime)
    shipper.start()
    # The Celery worker owns the main thread (it installs signal handlers); the memory transport is
    # shared by every thread of this process, so the web threads' tasks reach it.
    worker = app.Worker(pool="threads", concurrency=settings.worker_concurrency, loglevel="INFO",
                        queues=[settings.queue, celery_app.express_queue(settings.queue)],
                        without_heartbeat=True, without_mingle=True, without_gossip=True, quiet=True)
    try:
        worker.start()
    finally:
        sweeper.stop()
        sweeper.join(timeout=30)  # a sweep in progress must not rebuild the runtime after it is closed
        tasks.shutdown()
        shipper.stop()
        server.stop()
        console.stop()
    return worker.exitcode or 0


def make_http_server(settings: Settings, *, app_: WsgiApp, host: str, port: int, threads: int) -> wsgi.Server:
    """cheroot's threaded WSGI server; HTTPS (with client-certificate verification) when configured."""
    server = wsgi.Server((host, port), app_, numthreads=threads, server_name="hiem", timeout=30)
    server.max_request_body_size = 0  # the SOAP edge reads at most HIEM_MAX_REQUEST_BYTES + 1 and answers a fault
    if settings.tls.enabled:
        from hiem.tls import server_context

        adapter = BuiltinSSLAdapter(settings.tls.cert_file, settings.tls.key_file)
        adapter.context = server_context(settings.tls)
        server.ssl_adapter = adapter
    return server


def run_worker(settings: Settings, *, concurrency: int | None, loglevel: str, sweeper: bool) -> int:
    from celery.signals import worker_init, worker_ready, worker_shutdown

    app = celery_app.configure(settings)
    broker_identity(settings)  # the signing key must be there before the first delivery
    worker_runtime.configure(runtime_factory(settings))
    background: list[Sweeper | AuditShipper] = []
    started: list[WorkController] = []

    @worker_init.connect(weak=False)
    def _remember_worker(sender: WorkController, **_: object) -> None:
        started.append(sender)

    @worker_ready.connect(weak=False)
    def _start_background(**_: object) -> None:
        # In the worker's parent process: the sweeper and the audit shipper (PostgreSQL elects one shipper).
        if sweeper:
            background.extend([Sweeper(settings.delivery.sweep_interval), AuditShipper(worker_runtime.runtime)])
        for thread in background:
            thread.start()

    @worker_shutdown.connect(weak=False)
    def _stop_background(**_: object) -> None:
        for thread in background:
            thread.stop()

    argv = ["worker", "--loglevel", loglevel, "-Q", f"{settings.queue},{celery_app.express_queue(settings.queue)}"]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    app.worker_main(argv)
    # worker_main returns None whatever happened; the worker's own exit code (1 after an "Unrecoverable
    # error") is what `celery worker` would exit with, and a supervisor (systemd, docker) must see it to restart
    if not started:
        return 1  # Celery returned without ever starting a worker: nothing was consumed
    code = started[-1].exitcode
    return code if isinstance(code, int) else (0 if code is None else 1)
