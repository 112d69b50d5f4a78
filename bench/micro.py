"""In-process measurements of single steps with hiem's own functions (CPU time of the measuring thread):
the cost of signing a Notify.

The broker signs every outgoing Notify (a fresh system SAML assertion signed with its key, then the
envelope: hiem.security.setup.BrokerSigner). There is no switch to turn that off in a running broker, so
its cost is measured here, per message, as build_delivery with and without the signer; and the inbound
side (verifying a signed message, what the SOAP edge does outside dev mode) likewise.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lxml import etree

from bench import load

#: CPU time of this thread, not wall time: other jobs on a shared machine do not inflate it
clock = time.thread_time


def _per_call(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    timings = []
    for _ in range(repeats):
        started = clock()
        fn()
        timings.append(clock() - started)
    return round(1000 * statistics.median(timings), 3)


def signing(tmp: Path, repeats: int = 40) -> dict[str, Any]:
    try:
        from hiem.config import load_settings
        from hiem.security import MemoryNonceCache
        from hiem.security.setup import BrokerSigner, broker_identity, make_verifier
        from hiem.wsn.outgoing import build_delivery
    except ImportError as exc:
        return {"measured": False, "reason": f"hiem has no outbound signing ({exc})"}
    settings = load_settings({"HIEM_DEV": "1", "HIEM_DEV_DIR": str(tmp / "dev-identity")})
    signer = BrokerSigner(settings, broker_identity(settings))
    claim = load.make_claim("http://127.0.0.1:9/notify")
    unsigned = build_delivery(claim)
    signed = build_delivery(claim, signer)
    result: dict[str, Any] = {
        "measured": True,
        "build_unsigned_ms": _per_call(lambda: build_delivery(claim), repeats * 5),
        "build_signed_ms": _per_call(lambda: build_delivery(claim, signer), repeats),
        "unsigned_bytes": len(unsigned.body), "signed_bytes": len(signed.body),
    }
    result["signing_ms"] = round(result["build_signed_ms"] - result["build_unsigned_ms"], 3)
    # minting the broker's system assertion: once per validity window now, shown for scale
    minter = signer._minter
    result["mint_assertion_ms"] = _per_call(minter.mint, repeats)
    result["signed_per_core_per_second"] = round(1000 / result["build_signed_ms"], 1)
    result.update(signing_ceiling(signer, result["build_signed_ms"], repeats * 5))
    try:
        verifier_for = lambda: make_verifier(settings, MemoryNonceCache())  # noqa: E731
        bodies = [build_delivery(claim, signer).body for _ in range(repeats + 1)]
        verifier_for().verify(etree.fromstring(bodies.pop()))
        timings = []
        for body in bodies:
            verifier = verifier_for()
            started = clock()
            verifier.verify(etree.fromstring(body))
            timings.append(clock() - started)
        result["verify_inbound_ms"] = round(1000 * statistics.median(timings), 3)
    except Exception as exc:  # the inbound API may differ; the outbound figure stands alone
        result["verify_inbound_ms"] = None
        result["verify_error"] = repr(exc)[:300]
    return result


#: private-key operations per delivered Notify: the envelope's signature (the assertion is minted once per window)
PRIVATE_KEY_OPERATIONS_PER_NOTIFY = 1


def signing_ceiling(signer: Any, build_signed_ms: float, repeats: int) -> dict[str, Any]:
    """The most Notifies per second this machine could sign with every core doing nothing else.

    Two bounds, both independent of how the rest of the broker is built: the bare private-key operations
    (``cryptography``, the broker's own key, a SHA-256 digest to sign) and building plus signing the whole
    message. Compared with baseline (a) they say how far fan-out can go while every message is signed.
    """
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding

    from hiem.security._processor import load_signing_key

    key = load_signing_key(signer.identity.key_pem)
    digest = b"\x5a" * 32
    if isinstance(key, ec.EllipticCurvePrivateKey):
        operation = lambda: key.sign(digest, ec.ECDSA(hashes.SHA256()))  # noqa: E731
        kind = f"EC {key.curve.name}"
    else:
        operation = lambda: key.sign(digest, padding.PKCS1v15(), hashes.SHA256())  # noqa: E731
        kind = f"RSA-{key.key_size}"
    op_ms = _per_call(operation, repeats)
    cores = os.cpu_count() or 1
    return {
        "key": kind, "private_key_op_ms": op_ms, "private_key_ops_per_notify": PRIVATE_KEY_OPERATIONS_PER_NOTIFY,
        "cores": cores,
        "ceiling_private_key_ops_per_second": round(cores * 1000 / (PRIVATE_KEY_OPERATIONS_PER_NOTIFY * op_ms), 1),
        "ceiling_signed_build_per_second": round(cores * 1000 / build_signed_ms, 1),
    }
