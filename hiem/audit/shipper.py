"""Ships audit records from the database to the Audit Record Repository, in id order, none dropped.

One shipper at a time: on PostgreSQL a session-level advisory lock elects it (every worker runs the
thread; the others wait), on SQLite there is only the one embedded process. A record is marked shipped
only after the sender returned, so a repository outage means records wait, and are sent later in
order. What TLS cannot tell us (whether the receiver wrote the last frame before a connection broke) can
cause a duplicate on the receiver's side, never a gap: see hiem.audit.syslog.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Protocol

from sqlalchemy import text

from hiem.audit import (
    AuditSender,
    TlsSyslogSender,
    UdpSyslogSender,
    build_audit_message,
    event_from_json,
    format_rfc5424,
)
from hiem.audit import records as audit_records
from hiem.audit.syslog import octet_counted
from hiem.clock import utcnow
from hiem.config import AuditSettings, Settings
from hiem.errors import AuditShipError
from hiem.store.db import Database

log = logging.getLogger(__name__)

BATCH = 200
SETTLE_SECONDS = 1.0
_LOCK_KEY = 0x6869656D  # "hiem"


def make_sender(settings: AuditSettings) -> AuditSender:
    if settings.transport == "tls":
        return TlsSyslogSender(settings.host, settings.port, settings.ca_file, settings.cert_file or None,
                               settings.key_file or None)
    return UdpSyslogSender(settings.host, settings.port)


def frame(record_event: dict, transport: str, hostname: str) -> bytes:
    event = event_from_json(record_event)
    message = format_rfc5424(build_audit_message(event), hostname=hostname, procid=os.getpid(),
                             timestamp=event.occurred_at)
    return octet_counted(message) if transport == "tls" else message


class Resources(Protocol):
    """What the shipper needs of its process: the audit settings and the database (a worker's runtime)."""

    settings: Settings
    db: Database


class AuditShipper(threading.Thread):
    """Ships settled audit records in id order; with PostgreSQL one process at a time (advisory lock).

    ``resources`` is called on the shipper's own thread, the first time it runs, so a process that forks
    before starting it never shares a connection pool.
    """

    def __init__(self, resources: Callable[[], Resources], interval: float = 1.0) -> None:
        super().__init__(name="hiem-audit-shipper", daemon=True)
        self._resources = resources
        self.interval = interval
        self._stop_event = threading.Event()
        self._sender: AuditSender | None = None
        self._hostname = socket.gethostname()[:255] or "hiem"

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        rt = self._resources()
        backoff = self.interval
        while not self._stop_event.is_set():
            try:
                if rt.settings.audit.shipping:
                    self._ship_with_lock()
                backoff = self.interval
            except AuditShipError as exc:
                log.warning("audit repository unavailable (%s); records wait and are retried in %.0fs", exc, backoff)
                self._close_sender()
                backoff = min(30.0, backoff * 2)
            except Exception:
                log.exception("audit shipping failed; retrying")
                self._close_sender()
                backoff = min(30.0, backoff * 2)
            self._stop_event.wait(backoff)
        self._close_sender()

    def _ship_with_lock(self) -> None:
        rt = self._resources()
        if rt.db.dialect != "postgresql":
            self.ship_pending()
            return
        with rt.db.engine.connect() as connection:
            if not connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _LOCK_KEY}).scalar():
                return
            try:
                self.ship_pending()
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                connection.commit()

    def ship_pending(self) -> int:
        """Ship everything settled; returns how many records went out."""
        rt = self._resources()
        settings = rt.settings.audit
        shipped = 0
        while not self._stop_event.is_set():
            with rt.db.session() as session:
                records = audit_records.unshipped(session, utcnow() - timedelta(seconds=SETTLE_SECONDS), BATCH)
                if not records:
                    return shipped
                frames = [frame(r.event, settings.transport, self._hostname) for r in records]
                if self._sender is None:
                    self._sender = make_sender(settings)
                self._sender.send(frames)  # raises AuditShipError: nothing is marked, all is retried
                audit_records.mark_shipped(session, [r.id for r in records])
                shipped += len(records)
        return shipped

    def _close_sender(self) -> None:
        if self._sender is not None:
            try:
                self._sender.close()
            except Exception:
                log.debug("closing the audit sender failed", exc_info=True)
            self._sender = None
