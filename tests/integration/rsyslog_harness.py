"""A real rsyslog receiving RFC 5425 syslog over TLS, for integration tests of hiem.audit.syslog.

:class:`RsyslogServer` makes a throw-away PKI with ``cryptography`` (a CA, a server certificate for
127.0.0.1/localhost, a client certificate, and an unrelated CA nobody trusts), writes an rsyslog
configuration (imtcp with the ``ossl`` stream driver, mutual TLS with ``x509/certvalid``, bound to
127.0.0.1 on a free high port, its own workDirectory, and an omfile action writing each received message
raw, one per line) and runs ``rsyslogd -n -f CONF -i PIDFILE``. It can be stopped and started again on the
same port, to test a receiver that goes away and comes back.

Needs the Debian packages ``rsyslog`` and ``rsyslog-openssl``. :func:`rsyslog_or_skip` turns their absence
into a skip, or into a failure under ``CI=true`` (CI must not silently skip the real-receiver tests).
"""

from __future__ import annotations

import datetime as dt
import glob
import ipaddress
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOST = "127.0.0.1"
INSTALL_HINT = (
    "rsyslogd with its OpenSSL stream driver is needed for the syslog-over-TLS tests: "
    "install the Debian packages rsyslog and rsyslog-openssl (apt-get install -y rsyslog rsyslog-openssl)"
)


class RsyslogUnavailable(RuntimeError):
    """rsyslogd or its ossl network stream driver is not installed."""


def find_rsyslogd() -> str:
    """Return the path of rsyslogd, or raise RsyslogUnavailable naming the packages to install."""
    path = shutil.which("rsyslogd") or next(
        (p for p in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd") if os.access(p, os.X_OK)), None
    )
    if path is None:
        raise RsyslogUnavailable(INSTALL_HINT)
    if not glob.glob("/usr/lib/*/rsyslog/lmnsd_ossl.so") + glob.glob("/usr/lib/rsyslog/lmnsd_ossl.so"):
        raise RsyslogUnavailable(INSTALL_HINT + " (rsyslogd is there, its ossl driver is not)")
    return path


def rsyslog_or_skip(tmp_path: Path, kind: type[RsyslogServer] | None = None) -> RsyslogServer:
    """A started RsyslogServer (or ``kind`` of it); without rsyslog: skip, or fail when CI=true."""
    try:
        server = (kind or RsyslogServer)(tmp_path)
    except RsyslogUnavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))
    server.start()
    return server


class RsyslogServer:
    """One rsyslogd listening for syslog over TLS on ``HOST:port``; usable as a context manager."""

    def __init__(self, tmp_path: Path) -> None:
        self._rsyslogd = find_rsyslogd()
        self.dir = Path(tmp_path) / "rsyslog"
        (self.dir / "work").mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.records_file = self.dir / "records.log"
        self.internal_log = self.dir / "rsyslogd-internal.log"
        self.output_log = self.dir / "rsyslogd-output.log"
        self.pid_file = self.dir / "rsyslogd.pid"
        self.conf_file = self.dir / "rsyslog.conf"
        self.ca_file, self.client_cert, self.client_key, self.untrusted_ca_file = _make_pki(self.dir)
        self.conf_file.write_text(self._config())
        self._proc: subprocess.Popen[bytes] | None = None

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> None:
        if self._proc is not None:
            return
        with open(self.output_log, "ab") as out:
            self._proc = subprocess.Popen(
                [self._rsyslogd, "-n", "-f", str(self.conf_file), "-i", str(self.pid_file)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise RuntimeError(f"rsyslogd exited with {code} on start:\n{self.diagnostics()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"rsyslogd did not listen on {HOST}:{self.port} in {timeout}s:\n{self.diagnostics()}")

    def stop(self, timeout: float = 15.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> RsyslogServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- what arrived ----------------------------------------------------------------------------------

    def records(self) -> list[str]:
        """Every message received so far, raw (as rsyslog's %rawmsg%), one list item per message."""
        if not self.records_file.exists():
            return []
        text = self.records_file.read_bytes().decode("utf-8", errors="replace")
        # The last piece has no newline yet while rsyslog is still writing it: leave it for the next poll.
        return [line for line in text.split("\n")[:-1] if line]

    def wait_for(self, predicate: object, timeout: float = 10.0) -> list[str]:
        """Poll :meth:`records` until ``predicate(records)`` is true; return them (or fail with a log)."""
        assert callable(predicate)
        deadline = time.monotonic() + timeout
        while True:
            found = self.records()
            if predicate(found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"rsyslog records never matched; have {found!r}\n{self.diagnostics()}")
            time.sleep(0.05)

    def diagnostics(self) -> str:
        parts = []
        for path in (self.output_log, self.internal_log):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts) or "(rsyslogd wrote nothing)"

    def _config(self) -> str:
        return f"""\
global(
    workDirectory="{self.dir / "work"}"
    maxMessageSize="64k"
    defaultNetstreamDriver="ossl"
    defaultNetstreamDriverCAFile="{self.ca_file}"
    defaultNetstreamDriverCertFile="{self.dir / "server.pem"}"
    defaultNetstreamDriverKeyFile="{self.dir / "server.key"}"
)
module(load="imtcp"
    streamDriver.name="ossl"
    streamDriver.mode="1"
    streamDriver.authMode="x509/certvalid")
template(name="hiemRawRecord" type="string" string="%rawmsg%\\n")
ruleset(name="hiemAudit") {{
    action(type="omfile" file="{self.records_file}" template="hiemRawRecord")
}}
input(type="imtcp" address="{HOST}" port="{self.port}" ruleset="hiemAudit")
# rsyslogd's own messages (errors, TLS refusals) go to a file of their own, for diagnostics.
action(type="omfile" file="{self.internal_log}")
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


# -- throw-away PKI -----------------------------------------------------------------------------------


def _make_pki(directory: Path) -> tuple[Path, Path, Path, Path]:
    """Write ca.pem, server.pem/.key, client.pem/.key and untrusted-ca.pem; return the client's paths."""
    ca_key, ca_cert = _ca("hiem test CA")
    _write(directory / "ca.pem", ca_cert)
    server_san = [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]
    _issue(directory, "server", "127.0.0.1", server_san, ExtendedKeyUsageOID.SERVER_AUTH, ca_key, ca_cert)
    _issue(directory, "client", "hiem-test-client", [], ExtendedKeyUsageOID.CLIENT_AUTH, ca_key, ca_cert)
    _write(directory / "untrusted-ca.pem", _ca("some other CA")[1])
    return (
        directory / "ca.pem",
        directory / "client.pem",
        directory / "client.key",
        directory / "untrusted-ca.pem",
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return builder.not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return key, _validity(builder).sign(key, hashes.SHA256())


def _issue(
    directory: Path,
    stem: str,
    common_name: str,
    san: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    _write(directory / f"{stem}.pem", _validity(builder).sign(ca_key, hashes.SHA256()))
    key_path = directory / f"{stem}.key"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)


def _write(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
