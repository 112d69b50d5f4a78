"""Ship audit messages to an Audit Record Repository: RFC 5424 messages over RFC 5425 (TLS) or RFC 5426 (UDP).

IHE ATNA Record Audit Event [ITI-20] and DICOM PS3.15 A.6/A.7 carry the A.5 XML as the MSG of an
RFC 5424 syslog message: PRI from facility 10 (security/authorization, "authpriv") and severity 5
(notice), so ``<85>`` (PS3.15 A.7); MSGID ``IHE+RFC-3881`` as ITI-20 asks (A.7 allows ``DICOM+RFC3881``;
both are accepted by repositories, which key on the XML); no STRUCTURED-DATA; MSG starts with the UTF-8
BOM that RFC 5424 §6.4 uses to mark a UTF-8 MSG. Framing over TLS is octet counting (RFC 5425 §4.3).

Senders share one small interface, :class:`AuditSender` (``send(frames)``, ``close()``), as hiem's
delivery channels do, and turn every ssl/socket/OS error into :class:`hiem.errors.AuditShipError`
(raised ``from`` the original), which the shipper task retries.

What ``send()`` returning means (read this before marking records as shipped)
-----------------------------------------------------------------------------
* RFC 5425 has no acknowledgement. ``send()`` returning means the bytes were handed to the kernel on a
  TLS connection that looked alive; it does not mean the repository wrote them. A receiver that dies
  right after can lose them, and no syslog client can tell.
* So the caller marks a record shipped only *after* ``send()`` returns, never before (send, then mark).
  A crash between the two re-sends the record later: delivery is at-least-once.
* A failure in the middle of a write (connection reset, timeout) may leave the frames before the failing
  one delivered, and the failing frame cut short (the receiver drops an incomplete octet-counted frame
  when the connection closes). The caller retries the whole batch, so those earlier frames arrive twice.
  To keep duplicates rare and bounded: :class:`TlsSyslogSender` never retries on its own after any byte
  was written; before writing on a kept-open connection it checks whether the peer has closed it (a
  syslog receiver never sends application data, so anything readable means EOF or an alert) and
  reconnects first; and callers should ship small batches. Audit repositories see each record's
  EventDateTime and ids, so an occasional duplicate is detectable; a lost record is not.
* With TLS 1.3 the server checks the client certificate after the client's handshake has finished, so
  a refused certificate would otherwise look like a working connection. After connecting, the sender
  waits up to ``confirm_timeout`` for the server's session ticket (proof that the handshake was
  accepted) or its alert (refusal, raised as AuditShipError). With TLS 1.2 a refusal fails the handshake.
* UDP (RFC 5426) gives no guarantee at all and may truncate long messages (PS3.15 A.7); use it only where
  the repository offers nothing else.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

from hiem.errors import AuditShipError, ConfigError

__all__ = [
    "AuditSender",
    "TlsSyslogSender",
    "UdpSyslogSender",
    "format_rfc5424",
    "octet_counted",
]

BOM = b"\xef\xbb\xbf"
NILVALUE = "-"
# RFC 5424 §6: HOSTNAME, APP-NAME, PROCID and MSGID are 1*N PRINTUSASCII (%d33-126).
_FIELD_LIMITS = {"hostname": 255, "app_name": 48, "procid": 128, "msgid": 32}


def format_rfc5424(
    msg: bytes,
    *,
    hostname: str | None,
    app_name: str | None = "hiem",
    procid: str | int | None,
    msgid: str | None = "IHE+RFC-3881",
    timestamp: datetime,
    facility: int = 10,
    severity: int = 5,
) -> bytes:
    """Return one RFC 5424 SYSLOG-MSG: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - BOM MSG``.

    ``timestamp`` must be timezone-aware; it is written in UTC with millisecond precision (§6.2.3).
    None or "" for a header field writes the NILVALUE ``-``. A field with characters outside
    PRINTUSASCII, or longer than §6 allows, raises ValueError (a malformed header would make the
    receiver misparse the whole message).
    """
    if not 0 <= facility <= 23 or not 0 <= severity <= 7:
        raise ValueError(f"facility must be 0-23 and severity 0-7, got {facility} and {severity}")
    if timestamp.utcoffset() is None:
        raise ValueError("the syslog timestamp must be timezone-aware")
    stamp = timestamp.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    header = " ".join(
        [
            f"<{facility * 8 + severity}>1",
            stamp,
            _header_field("hostname", hostname),
            _header_field("app_name", app_name),
            _header_field("procid", None if procid is None else str(procid)),
            _header_field("msgid", msgid),
            NILVALUE,  # STRUCTURED-DATA
        ]
    )
    body = msg if msg.startswith(BOM) else BOM + msg
    return header.encode("ascii") + b" " + body


def octet_counted(message: bytes) -> bytes:
    """RFC 5425 §4.3 framing: ``MSG-LEN SP SYSLOG-MSG``, MSG-LEN being the octet count of the message."""
    return b"%d %s" % (len(message), message)


def _header_field(name: str, value: str | None) -> str:
    if value is None or value == "":
        return NILVALUE
    if len(value) > _FIELD_LIMITS[name] or any(not 33 <= ord(ch) <= 126 for ch in value):
        raise ValueError(f"syslog {name.upper()} must be 1-{_FIELD_LIMITS[name]} printable ASCII characters")
    return value


class AuditSender(Protocol):
    """Ships complete RFC 5424 messages (from :func:`format_rfc5424`); raises AuditShipError on failure."""

    def send(self, frames: Sequence[bytes]) -> None: ...

    def close(self) -> None: ...


class TlsSyslogSender:
    """RFC 5425 syslog over TLS 1.2+ with mutual authentication, one connection kept open and reused.

    The server certificate is verified against ``ca_file`` and must match ``host`` (name or IP SAN).
    ``cert_file``/``key_file`` are the client certificate ATNA's mutual node authentication requires;
    they may be None only against a repository that does not ask for one. Each frame is sent
    octet-counted. After a failure the connection is dropped and the next ``send()`` reconnects.
    """

    def __init__(
        self,
        host: str,
        port: int,
        ca_file: str,
        cert_file: str | None,
        key_file: str | None,
        timeout: float = 10.0,
        *,
        confirm_timeout: float = 0.5,
    ) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.confirm_timeout = confirm_timeout
        self._context = _client_context(ca_file, cert_file, key_file)
        self._sock: ssl.SSLSocket | None = None
        self._lock = threading.Lock()

    def send(self, frames: Sequence[bytes]) -> None:
        payload = b"".join(octet_counted(frame) for frame in frames)
        if not payload:
            return
        with self._lock:
            try:
                if self._sock is not None and peer_closed(self._sock):
                    self._drop()
                if self._sock is None:
                    self._sock = self._connect()
                self._sock.sendall(payload)
            except (OSError, ssl.SSLError) as exc:  # socket.timeout and ConnectionError are OSErrors
                self._drop()
                raise AuditShipError(f"syslog over TLS to {self.host}:{self.port} failed: {exc}") from exc

    def close(self) -> None:
        """Close the connection, with a TLS close_notify so the receiver does not log a broken session."""
        with self._lock:
            if self._sock is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._sock.settimeout(min(self.timeout, 1.0))
                    self._sock.unwrap()
            self._drop()

    def __enter__(self) -> TlsSyslogSender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _connect(self) -> ssl.SSLSocket:
        raw = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            sock = self._context.wrap_socket(raw, server_hostname=self.host)
        except BaseException:
            raw.close()
            raise
        try:
            if sock.version() == "TLSv1.3":
                self._confirm_accepted(sock)
        except BaseException:
            sock.close()
            raise
        return sock

    def _confirm_accepted(self, sock: ssl.SSLSocket) -> None:
        """Wait for a session ticket (accepted) or an alert (raises); silence till the deadline passes."""
        deadline = time.monotonic() + self.confirm_timeout
        while (remaining := deadline - time.monotonic()) > 0:
            session = sock.session
            if session is not None and session.has_ticket:
                return
            readable, _, _ = select.select([sock], [], [], remaining)
            if not readable:
                return
            sock.setblocking(False)
            try:
                data = sock.recv(1)
            except ssl.SSLWantReadError:
                continue  # only handshake records (tickets) were read
            finally:
                sock.settimeout(self.timeout)
            if not data:
                raise ConnectionAbortedError("the server closed the connection right after the handshake")
            raise ConnectionAbortedError("the syslog server sent unexpected data")

    def _drop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def _client_context(ca_file: str, cert_file: str | None, key_file: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 5425 §4.2: TLS 1.2 at least
    try:
        context.load_verify_locations(cafile=ca_file)
        if cert_file is not None:
            context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        files = f"{ca_file}, {cert_file}, {key_file}"
        raise ConfigError(f"cannot load the audit TLS files ({files}): {exc}") from exc
    return context


def peer_closed(sock: ssl.SSLSocket) -> bool:
    """True if the receiver has closed or broken the connection (it never sends syslog data to us)."""
    if sock.pending() == 0 and not select.select([sock], [], [], 0)[0]:
        return False
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        sock.recv(1)
    except (ssl.SSLWantReadError, BlockingIOError):
        return False  # post-handshake records only (e.g. TLS 1.3 tickets): still alive
    except OSError:
        return True  # alert, reset
    finally:
        sock.settimeout(timeout)
    return True  # EOF, or data a syslog receiver should never send


class UdpSyslogSender:
    """RFC 5426 syslog over UDP: one message per datagram, no framing, no delivery guarantee."""

    def __init__(self, host: str, port: int = 514) -> None:
        self.host, self.port = host, port
        self._sock: socket.socket | None = None
        self._address: tuple[object, ...] | None = None
        self._lock = threading.Lock()

    def send(self, frames: Sequence[bytes]) -> None:
        with self._lock:
            try:
                if self._sock is None:
                    family, kind, proto, _, address = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[
                        0
                    ]
                    self._sock = socket.socket(family, kind, proto)
                    self._address = address
                for frame in frames:
                    self._sock.sendto(frame, self._address)
            except OSError as exc:  # includes socket.gaierror and EMSGSIZE for an oversized datagram
                self._drop()
                raise AuditShipError(f"syslog over UDP to {self.host}:{self.port} failed: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> UdpSyslogSender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
