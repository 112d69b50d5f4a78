"""How ``hiem serve`` exposes the console: on the main port, or alone on ``--ops-port`` (its own cheroot server).

Why a separate port at all: the SOAP port faces partner gateways; the console and /metrics belong on an
internal interface. With ``--ops-port`` the main port answers 404 for ``/ops`` and ``/metrics``.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hiem.config import Settings
from hiem.ops import build_ops_app
from hiem.ops.operators import DEV_OPERATOR, ensure_dev_operator
from hiem.store.db import Database

log = logging.getLogger(__name__)


@dataclass
class ConsoleMount:
    """``on_main``: the app for HiemApp to mount (None when on its own port); ``server``: that port's server."""

    on_main: Any | None
    server: Any | None = None

    def start(self) -> None:
        if self.server is not None:
            threading.Thread(target=self.server.safe_start, name="hiem-ops-http", daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


def mount_console(settings: Settings, database: Database, *, host: str, port: int, ops_host: str | None,
                  ops_port: int | None, make_server: Callable[..., Any]) -> ConsoleMount:
    """Build the console, create the dev operator in dev mode, and place it on the main or its own port."""
    app = build_ops_app(settings, database)
    scheme = "https" if settings.tls.enabled else "http"
    where = f"{scheme}://{ops_host or host}:{ops_port or port}/ops"
    if settings.dev:
        password = ensure_dev_operator(database)
        # Printed, not logged: a dev convenience that must not end up in a log shipper.
        print(f"ops console: {where}  user: {DEV_OPERATOR}  password: {password}", file=sys.stderr, flush=True)
    if not ops_port:
        log.info("ops console at %s, metrics at %s", where, where[:-len("/ops")] + "/metrics")
        return ConsoleMount(on_main=app)
    server = make_server(settings, app_=app, host=ops_host or host, port=ops_port, threads=4)
    log.info("ops console on its own port: %s (metrics at /metrics there)", where)
    return ConsoleMount(on_main=None, server=server)
