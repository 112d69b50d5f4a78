"""Ships audit records from the database to the Audit Record Repository, in id order, none dropped.

One shipper at a time: on PostgreSQL a session-level advisory lock elects it (every worker runs the
thread; the others wait), on SQLite there is only the one embedded process. A record is marked shipped
only once it is confirmed: sent, and the TLS connection it went out on still up, fully acknowledged,
CONFIRM_SECONDS later (see :meth:`AuditShipper.ship_pending`). So a repository outage means records wait,
and are sent later in order; a repository that crashes while records are on their way makes them be sent
again. What TLS cannot tell us (whether the receiver wrote the last frames before a connection broke) can
cause a duplicate on the receiver's side (the same AuditMessage, byte for byte), never a gap: see
hiem.audit.syslog.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from hiem.audit import (
    AuditSender,
    TlsSyslogSender,
    UdpSyslogSender,
    build_audit_message,
    event_from_json,
    format_rfc5424,
)
from hiem.audit import records as audit_records
from hiem.audit.syslog import peer_closed
from hiem.clock import utcnow
from hiem.config import AuditSettings, Settings
from hiem.errors import AuditShipError
from hiem.store.db import Database, as_utc
from hiem.store.models import AuditRecord

log = logging.getLogger(__name__)

BATCH = 200
SETTLE_SECONDS = 1.0
#: how far ahead of the shipper's clock a record's time may be and still be waited for
CLOCK_AHEAD_SECONDS = 60.0
_LOCK_KEY = 0x6869656D  # "hiem"
#: A record sent over TLS is marked shipped once the connection it went out on is still up this long after
#: (the receiver had that long to store it): see AuditShipper.ship_pending.
CONFIRM_SECONDS = 1.0
#: At most this many records are sent and not yet confirmed: all one broken connection can make arrive twice.
UNCONFIRMED_MAX = 5 * BATCH
#: How long a batch waits at most for the writers in progress when it was read (PostgreSQL): see _next_batch.
WRITERS_WAIT_SECONDS = 10.0


def make_sender(settings: AuditSettings) -> AuditSender:
    if settings.transport == "tls":
        return ConfirmingTlsSender(settings.host, settings.port, settings.ca_file, settings.cert_file or None,
                                   settings.key_file or None)
    return UdpSyslogSender(settings.host, settings.port)


class ConfirmingTlsSender(TlsSyslogSender):
    """A TlsSyslogSender that can tell whether what it sent is still on the same live connection.

    RFC 5425 has no acknowledgement: ``send()`` returning means the kernel took the bytes. A receiver that
    crashes then (rsyslog SIGKILLed, OOM-killed, restarted) loses what it had read but not yet stored, and
    the EOF or reset it leaves on the connection is the only trace a client ever gets. So the connections
    are numbered, and :meth:`send_on` sends only on the connection earlier unconfirmed records went out on:
    ``send()`` alone would find it broken and quietly reconnect, and newer records would arrive before the
    older ones are sent again.
    """

    connections = 0
    _only_on: int | None = None

    def send_on(self, frames: Sequence[bytes], connection: int | None) -> int:
        """Send on connection number ``connection`` (None: any, connecting if need be); returns its number.

        Raises AuditShipError, sending nothing, when that connection is closed or broken."""
        self._only_on = connection
        try:
            self.send(frames)
        finally:
            self._only_on = None
        return self.connections

    def _connect(self) -> ssl.SSLSocket:
        if self._only_on is not None:  # send() translates this OSError into AuditShipError
            raise ConnectionAbortedError("the connection unconfirmed records went out on is gone")
        sock = super()._connect()
        self.connections += 1
        return sock

    def confirm(self, connection: int) -> None:
        """Raise AuditShipError unless connection number ``connection`` is still open, the receiver's TCP
        has acknowledged every byte sent on it, and the receiver has neither closed nor reset it."""
        with self._lock:
            try:
                if self._sock is None or self.connections != connection:
                    raise ConnectionAbortedError("the connection the records went out on is gone")
                deadline = time.monotonic() + self.timeout
                while _unacknowledged(self._sock):
                    if time.monotonic() > deadline:
                        raise TimeoutError("the receiver did not acknowledge what was sent")
                    time.sleep(0.01)
                if peer_closed(self._sock):
                    raise ConnectionResetError("the receiver closed the connection")
            except OSError as exc:
                self._drop()
                raise AuditShipError(f"syslog over TLS to {self.host}:{self.port}: records sent may not have "
                                     f"been stored ({exc}); they are sent again") from exc


def _unacknowledged(sock: socket.socket) -> int:
    """Bytes sent on ``sock`` that the peer's TCP has not acknowledged (Linux SIOCOUTQ); 0 if unknown."""
    try:
        import fcntl
        import termios

        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0])
    except (ImportError, AttributeError, OSError):
        return 0


@dataclass
class _Sent:
    """One batch sent and not yet confirmed: when, on which connection (ConfirmingTlsSender), which ids."""

    at: float
    connection: int | None
    ids: list[int]


def _unsent(session: Session, after: int | None, upto: int | None, limit: int) -> list[AuditRecord]:
    """The oldest records not shipped, past ``after`` (sent, waiting for confirmation) and up to ``upto``."""
    query = select(AuditRecord).where(AuditRecord.shipped_at.is_(None))
    if after is not None:
        query = query.where(AuditRecord.id > after)
    if upto is not None:
        query = query.where(AuditRecord.id <= upto)
    return list(session.scalars(query.order_by(AuditRecord.id).limit(limit)))


def _settled(records: list[AuditRecord], settle_before: datetime) -> list[AuditRecord]:
    """``records`` up to (without) the first one written after ``settle_before``: a watermark, not a filter.

    A record stamped further ahead than any real settling (a writer whose clock runs fast) counts as
    settled: waiting for it would stop shipping for as long as that clock is ahead."""
    ahead = settle_before + timedelta(seconds=SETTLE_SECONDS + CLOCK_AHEAD_SECONDS)
    for index, record in enumerate(records):
        if settle_before <= as_utc(record.created_at) < ahead:
            return records[:index]
    return records


# The transactions that may still commit audit records: an INSERT takes its RowExclusiveLock on the table
# before it draws an id from the sequence, and holds it until the transaction ends.
_WRITERS = text("SELECT virtualtransaction FROM pg_locks WHERE locktype = 'relation' AND mode = 'RowExclusiveLock' "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND relation = CAST('audit_records' AS regclass)")


def syslog_message(record_event: dict, hostname: str) -> bytes:
    """One record as an RFC 5424 message; the TLS sender adds RFC 5425's octet count, and over UDP the
    datagram is the message itself."""
    event = event_from_json(record_event)
    return format_rfc5424(build_audit_message(event), hostname=hostname, procid=os.getpid(),
                          timestamp=event.occurred_at)


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
        """Ship everything settled; returns how many records went out (confirmed and marked shipped).

        Why records are not marked as soon as ``send()`` returns: that only means the kernel took the bytes.
        An rsyslog SIGKILLed (or restarted) a few milliseconds later has read them off the socket but not
        stored them, and records marked then were lost for good (tests/integration/test_audit_outage.py
        lost 17 of 1001 that way). So batches are sent back to back, and each is marked once its TLS
        connection is still the same one, fully acknowledged and not closed, CONFIRM_SECONDS after it went
        out (ConfirmingTlsSender.confirm); while some are unconfirmed, the next batch goes only on that same
        connection (ConfirmingTlsSender.send_on). A connection that broke sooner raises AuditShipError:
        nothing unconfirmed is marked, and the next attempt sends it again from the oldest unshipped record,
        in id order; the receiver sees what it had already stored twice, the same AuditMessage byte for
        byte. At most UNCONFIRMED_MAX records are outstanding. UDP gives no guarantee to wait for: marked at
        once.
        """
        rt = self._resources()
        settings = rt.settings.audit
        shipped = 0
        unconfirmed: list[_Sent] = []
        while not self._stop_event.is_set():
            ids, frames = self._next_batch(rt, unconfirmed[-1].ids[-1] if unconfirmed else None)
            if not ids:
                break
            while unconfirmed and sum(len(sent.ids) for sent in unconfirmed) + len(ids) > UNCONFIRMED_MAX:
                shipped += self._confirm(rt, unconfirmed, 1)
            if self._sender is None:
                self._sender = make_sender(settings)
            # AuditShipError from here on: nothing unconfirmed is marked, and all of it is sent again
            if isinstance(self._sender, ConfirmingTlsSender):
                held = unconfirmed[-1].connection if unconfirmed else None
                connection: int | None = self._sender.send_on(frames, held)
            else:
                self._sender.send(frames)
                connection = None
            unconfirmed.append(_Sent(time.monotonic(), connection, ids))
            shipped += self._confirm(rt, unconfirmed)
        return shipped + self._confirm(rt, unconfirmed, len(unconfirmed))

    def _next_batch(self, rt: Resources, after: int | None) -> tuple[list[int], list[bytes]]:
        """The next records to send (ids and frames), in id order, that no smaller id can still overtake.

        Two ways a smaller id could go out after a larger one (tests/integration/test_audit_outage.py saw
        record 497 arrive after 498 under load):
        * ``created_at`` is stamped before the INSERT draws its id, so two writers can stamp in one order and
          draw ids in the other. Filtering on ``created_at < settle_before`` then left the smaller id out
          of a batch that sent the larger: settling is a watermark now, the batch stops at the first record
          not yet SETTLE_SECONDS old.
        * A transaction can commit a smaller id after another committed a larger one, however long the
          settling. On PostgreSQL the batch waits until the transactions writing audit records when it was
          read have ended (they hold a RowExclusiveLock on the table from before they draw an id), then is
          read again up to its last id, so a smaller id committed meanwhile goes out first. On SQLite one
          writer at a time commits ids in order.
        """
        settle_before = utcnow() - timedelta(seconds=SETTLE_SECONDS)
        writers: set[str] = set()
        with rt.db.session() as session:
            records = _settled(_unsent(session, after, None, BATCH), settle_before)
            if not records or rt.db.dialect != "postgresql":
                return [r.id for r in records], [syslog_message(r.event, self._hostname) for r in records]
            writers = set(session.scalars(_WRITERS))
        if writers:
            deadline = time.monotonic() + WRITERS_WAIT_SECONDS
            with rt.db.session() as session:
                while writers & set(session.scalars(_WRITERS)):
                    if time.monotonic() > deadline:
                        log.warning("audit records: a writer's transaction is open for over %.0fs; shipping "
                                    "without waiting for it (a record it commits later goes out of order)",
                                    WRITERS_WAIT_SECONDS)
                        break
                    time.sleep(0.005)
        # read again even when no writer was seen: one may have committed a smaller id between the two reads
        with rt.db.session() as session:
            records = _unsent(session, after, records[-1].id, BATCH)
        return [r.id for r in records], [syslog_message(r.event, self._hostname) for r in records]

    def _confirm(self, rt: Resources, unconfirmed: list[_Sent], count: int | None = None) -> int:
        """Mark shipped the first ``count`` batches of ``unconfirmed`` (after waiting until the last of them
        is CONFIRM_SECONDS old), or with None those already that old; returns how many records."""
        confirm = getattr(self._sender, "confirm", None)
        now = time.monotonic()
        if confirm is None:  # UDP: nothing to wait for
            count = len(unconfirmed)
        elif count is None:
            count = sum(1 for sent in unconfirmed if now - sent.at >= CONFIRM_SECONDS)
        if not count:
            return 0
        if confirm is not None:
            time.sleep(max(0.0, unconfirmed[count - 1].at + CONFIRM_SECONDS - now))
            confirm(unconfirmed[count - 1].connection)  # raises AuditShipError: nothing is marked
        ids = [record_id for sent in unconfirmed[:count] for record_id in sent.ids]
        with rt.db.session() as session:
            audit_records.mark_shipped(session, ids)
        del unconfirmed[:count]
        return len(ids)

    def _close_sender(self) -> None:
        if self._sender is not None:
            try:
                self._sender.close()
            except Exception:
                log.debug("closing the audit sender failed", exc_info=True)
            self._sender = None
