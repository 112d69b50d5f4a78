"""WS-Security and SAML for HIEM v2.0 §3.1.1: verify what comes in, sign what goes out.

The package follows signxml's split by role: ``verifying`` (inbound checks, composed as a
list of small check objects), ``signing`` (outbound), a private shared base (``_processor``), and
``policy`` (one frozen SecurityPolicy; ``SecurityPolicy.dev()`` instead of ``if dev:``). ``nonces``
holds the seam for remembering accepted IDs, ``devkeys`` a self-signed identity and NHIN-shaped SAML
assertions for development and tests.

Typical use at the SOAP edge::

    verifier = EnvelopeVerifier(policy, MemoryNonceCache())
    try:
        result = verifier.verify(envelope)      # SecurityResult: who, on whose behalf, what was signed
    except SecurityError as exc:                # exc.reason, exc.subcode (wsse QName), exc.alert_type
        ...
"""

from __future__ import annotations

from hiem.security.devkeys import (
    AssertionMinter,
    DevIdentity,
    ensure_dev_identity,
    mint_assertion,
    wrap_with_assertion,
)
from hiem.security.errors import AlertType, FaultSubcode, SecurityError
from hiem.security.nonces import MemoryNonceCache, NonceCache
from hiem.security.policy import SecurityPolicy
from hiem.security.signing import EnvelopeSigner
from hiem.security.verifying import EnvelopeVerifier, SecurityResult

__all__ = [
    "AlertType",
    "AssertionMinter",
    "DevIdentity",
    "EnvelopeSigner",
    "EnvelopeVerifier",
    "FaultSubcode",
    "MemoryNonceCache",
    "NonceCache",
    "SecurityError",
    "SecurityPolicy",
    "SecurityResult",
    "ensure_dev_identity",
    "mint_assertion",
    "wrap_with_assertion",
]
