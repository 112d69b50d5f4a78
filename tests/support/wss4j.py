"""Apache WSS4J as an independent signer for tests: a second WS-Security stack, in another process.

hiem verifies inbound WS-Security with its own code; testing that code only against envelopes that hiem
(or its Python libraries) signed would let a shared misreading pass unnoticed. This module runs
``wss4j/Wss4jSign.java`` on Debian's WSS4J 1.6 and Santuario jars in a real JVM, so tests can feed the
broker what a Java partner gateway sends. It is a test helper only: nothing under ``hiem/`` imports it.

Needs the Debian packages ``libwss4j-java libxml-security-java`` and a JDK (``default-jdk-headless``);
``available()`` says what is missing.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

__all__ = ["ALIAS", "PASSWORD", "Wss4jError", "available", "keystore", "sign", "sign_assertion"]

JAVA_DIR = Path("/usr/share/java")
REQUIRED_JARS = ("wss4j.jar", "xmlsec.jar", "commons-logging.jar", "slf4j-api.jar")
OPTIONAL_JARS = ("commons-codec.jar", "slf4j-nop.jar")  # slf4j-nop keeps Santuario's SLF4J quiet
SOURCE = Path(__file__).with_name("wss4j") / "Wss4jSign.java"
MAIN_CLASS = "Wss4jSign"
PASSWORD = "hiem-wss4j"
ALIAS = "signer"
TIMEOUT = 120.0
LAYOUTS = ("default", "transforms-only", "none")
KEY_REFS = ("bst", "issuer-serial", "ski", "thumbprint", "samlid")
INSTALL_HINT = "apt-get install libwss4j-java libxml-security-java default-jdk-headless"


class Wss4jError(RuntimeError):
    """The Java signer is unavailable, failed to compile, or refused its input (stderr included)."""


def require() -> None:
    """Skip the calling test when WSS4J cannot run here, saying why; under ``CI=true`` fail instead."""
    reason = available()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def available() -> str | None:
    """None when WSS4J can run here, else the reason (what to install)."""
    missing = [jar for jar in REQUIRED_JARS if not (JAVA_DIR / jar).is_file()]
    tools = [tool for tool in ("java", "javac") if shutil.which(tool) is None]
    if not missing and not tools:
        return None
    what = [f"{JAVA_DIR}/{jar}" for jar in missing] + [f"`{tool}` (a JDK)" for tool in tools]
    return f"WSS4J signer unavailable, missing {', '.join(what)}: {INSTALL_HINT}"


def _jars() -> list[str]:
    return [str(JAVA_DIR / jar) for jar in (*REQUIRED_JARS, *OPTIONAL_JARS) if (JAVA_DIR / jar).is_file()]


@functools.cache
def _classes() -> Path:
    """The compiled signer, built once per source version and shared by all processes (xdist workers)."""
    reason = available()
    if reason:
        raise Wss4jError(reason)
    classpath = os.pathsep.join(_jars())
    digest = hashlib.sha256(SOURCE.read_bytes() + classpath.encode()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"hiem-wss4j-{digest}"
    if (cache / f"{MAIN_CLASS}.class").is_file():
        return cache
    build = Path(tempfile.mkdtemp(prefix="hiem-wss4j-build-"))
    try:
        result = subprocess.run(["javac", "-nowarn", "-encoding", "UTF-8", "-cp", classpath, "-d", str(build),
                                 str(SOURCE)], capture_output=True, text=True, timeout=TIMEOUT, check=False)
        if result.returncode != 0:
            raise Wss4jError(f"javac failed on {SOURCE}:\n{result.stderr}")
        with contextlib.suppress(OSError):  # another worker won the race: its copy is the same
            os.replace(build, cache)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    if not (cache / f"{MAIN_CLASS}.class").is_file():
        raise Wss4jError(f"compiled classes missing from {cache}")
    return cache


def keystore(key_pem: bytes, cert_pem: bytes, directory: Path) -> Path:
    """A PKCS#12 with the key and certificate under ``ALIAS``, protected by ``PASSWORD``."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("the WSS4J signer signs with RSA-SHA256: give it an RSA key")
    cert = x509.load_pem_x509_certificate(cert_pem)
    data = pkcs12.serialize_key_and_certificates(ALIAS.encode(), key, cert, None,
                                                 serialization.BestAvailableEncryption(PASSWORD.encode()))
    path = directory / f"wss4j-{hashlib.sha256(cert_pem).hexdigest()[:12]}.p12"
    path.write_bytes(data)
    return path


def _run(args: list[str], stdin: bytes, key_pem: bytes, cert_pem: bytes, directory: Path) -> bytes:
    store = keystore(key_pem, cert_pem, directory)
    command = ["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx256m",
               "-cp", os.pathsep.join([*_jars(), str(_classes())]), MAIN_CLASS,
               "--keystore", str(store), "--password", PASSWORD, "--alias", ALIAS, *args]
    try:
        result = subprocess.run(command, input=stdin, capture_output=True, timeout=TIMEOUT, check=False)
    except subprocess.TimeoutExpired as exc:
        raise Wss4jError(f"WSS4J signer timed out after {TIMEOUT:.0f} s") from exc
    if result.returncode != 0:
        raise Wss4jError(f"WSS4J signer exited {result.returncode}:\n{result.stderr.decode(errors='replace')}")
    return result.stdout


def sign(envelope: bytes, *, key_pem: bytes, cert_pem: bytes, layout: str = "default", key_ref: str = "bst",
         assertion: bytes | None = None, timestamp_age: int = 0) -> bytes:
    """``envelope`` (SOAP 1.1 or 1.2) with a WSS4J wsse:Security header: Timestamp and a signature over the
    Body, the Timestamp and every WS-Addressing header. ``assertion`` (a signed saml2:Assertion) goes into
    the header unsigned by the message signature; ``key_ref="samlid"`` points the KeyInfo at it.
    ``timestamp_age``: the Timestamp's instants moved that many seconds back before signing (an expired
    message, validly signed)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    if key_ref not in KEY_REFS:
        raise ValueError(f"key_ref must be one of {KEY_REFS}, not {key_ref!r}")
    with tempfile.TemporaryDirectory(prefix="hiem-wss4j-") as tmp:
        directory = Path(tmp)
        args = ["--layout", layout, "--key-ref", key_ref, "--timestamp-age", str(timestamp_age)]
        if assertion is not None:
            path = directory / "assertion.xml"
            path.write_bytes(assertion)
            args += ["--assertion", str(path)]
        return _run(args, envelope, key_pem, cert_pem, directory)


def sign_assertion(assertion: bytes, *, key_pem: bytes, cert_pem: bytes) -> bytes:
    """``assertion`` (an unsigned saml2:Assertion) signed by Santuario as SAML 2.0 core 5.4 says:
    enveloped ds:Signature after saml2:Issuer, exc-c14n, RSA-SHA256, the certificate in KeyInfo."""
    with tempfile.TemporaryDirectory(prefix="hiem-wss4j-") as tmp:
        return _run(["--sign-assertion"], assertion, key_pem, cert_pem, Path(tmp))
