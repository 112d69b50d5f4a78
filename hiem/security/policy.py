"""What the broker demands of an inbound message: one frozen object, strict by default.

HIEM v2.0 §3.1.1 requires every Subscribe, Unsubscribe and Notify to carry SAML assertions about the
user or system behind it (NHIN Authorization Framework), so the default policy requires a signed
assertion *and* a WS-Security message signature. ``--dev`` does not scatter ``if dev:`` checks through
the code: it builds a different policy with :meth:`SecurityPolicy.dev`.

Options (all keyword, all with defaults):

``require_assertion`` (True)
    A saml2:Assertion must be in wsse:Security.
``require_signature`` (True)
    A ds:Signature in wsse:Security must cover the Body, the wsu:Timestamp (then required) and every
    WS-Addressing header.
``trusted_idp_certs`` (())
    PEM certificates of the identity providers whose assertions are believed. Pinned: the signing
    certificate must be byte-for-byte one of these; a CA chain is not enough.
``trusted_signer_certs`` (())
    PEM certificates allowed to sign messages on their own (wsse:BinarySecurityToken), e.g. a partner
    gateway using sender-vouches. ``trusted_idp_certs`` are accepted as signers too.
``clock_skew_seconds`` (120)
    Tolerance applied to every time comparison (Timestamp, Conditions, SubjectConfirmationData).
``audience`` (None)
    This broker's audience URI; checked against AudienceRestriction when both are present.
``max_assertion_lifetime_seconds`` (8 h)
    Longest NotBefore (or IssueInstant) .. NotOnOrAfter span accepted; NotOnOrAfter is required.
``freshness_window_seconds`` (600)
    How long after its wsu:Created a message is accepted; MessageIDs are remembered for that long.
``signature_algorithms`` / ``digest_algorithms``
    Allowed XML-DSig algorithm URIs. Defaults leave out SHA-1 (and HMAC, which needs a shared
    secret hiem never has); listing a SHA-1 URI explicitly is an interop opt-in, not a default.
``subject_confirmation_methods``
    SAML 2.0 confirmation methods accepted: holder-of-key and sender-vouches (NHIN Authorization
    Framework). Bearer is left out: a bearer assertion is not bound to the message that carries it.
``verify_if_present`` (True)
    When nothing is required (dev), a Security header that *is* present is still verified in full.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from signxml.algorithms import DigestAlgorithm, SignatureMethod

HOLDER_OF_KEY = "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key"
SENDER_VOUCHES = "urn:oasis:names:tc:SAML:2.0:cm:sender-vouches"
BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"

DEFAULT_SIGNATURE_ALGORITHMS = frozenset(
    method.value
    for method in (
        SignatureMethod.RSA_SHA256, SignatureMethod.RSA_SHA384, SignatureMethod.RSA_SHA512,
        SignatureMethod.ECDSA_SHA256, SignatureMethod.ECDSA_SHA384, SignatureMethod.ECDSA_SHA512,
        SignatureMethod.SHA256_RSA_MGF1, SignatureMethod.SHA384_RSA_MGF1, SignatureMethod.SHA512_RSA_MGF1,
    )
)
DEFAULT_DIGEST_ALGORITHMS = frozenset(
    digest.value for digest in (DigestAlgorithm.SHA256, DigestAlgorithm.SHA384, DigestAlgorithm.SHA512)
)
DEFAULT_CONFIRMATION_METHODS = frozenset({HOLDER_OF_KEY, SENDER_VOUCHES})
_ONE_YEAR = 366 * 24 * 3600


@dataclass(frozen=True)
class SecurityPolicy:
    """The checks an inbound message must pass (see the module docstring for every option)."""

    require_assertion: bool = True
    require_signature: bool = True
    trusted_idp_certs: tuple[bytes, ...] = ()
    trusted_signer_certs: tuple[bytes, ...] = ()
    clock_skew_seconds: float = 120
    audience: str | None = None
    max_assertion_lifetime_seconds: float = 8 * 3600
    freshness_window_seconds: float = 600
    signature_algorithms: frozenset[str] = DEFAULT_SIGNATURE_ALGORITHMS
    digest_algorithms: frozenset[str] = DEFAULT_DIGEST_ALGORITHMS
    subject_confirmation_methods: frozenset[str] = DEFAULT_CONFIRMATION_METHODS
    verify_if_present: bool = True
    _certs: dict[str, tuple[x509.Certificate, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("clock_skew_seconds", "max_assertion_lifetime_seconds", "freshness_window_seconds"):
            if not 0 <= getattr(self, name) <= _ONE_YEAR:
                raise ValueError(f"SecurityPolicy.{name} must be between 0 and one year (in seconds)")
        for uri in self.signature_algorithms:
            method = _known(SignatureMethod, uri, "signature_algorithms")
            if method.name.startswith("HMAC"):
                raise ValueError("SecurityPolicy.signature_algorithms: HMAC needs a shared secret; not supported")
        for uri in self.digest_algorithms:
            _known(DigestAlgorithm, uri, "digest_algorithms")
        unknown = self.subject_confirmation_methods - {HOLDER_OF_KEY, SENDER_VOUCHES, BEARER}
        if unknown:
            raise ValueError(f"SecurityPolicy.subject_confirmation_methods: unknown method(s) {sorted(unknown)}")
        # Parse the pinned certificates once, here, so a bad PEM fails at start-up, not per message.
        object.__setattr__(self, "_certs", {
            "idp": _load_all(self.trusted_idp_certs, "trusted_idp_certs"),
            "signer": _load_all(self.trusted_signer_certs, "trusted_signer_certs"),
        })

    @classmethod
    def dev(cls, **overrides: Any) -> SecurityPolicy:
        """Dev mode: nothing required, but whatever security a message does carry is still verified."""
        values: dict[str, Any] = {"require_assertion": False, "require_signature": False}
        values.update(overrides)
        return cls(**values)

    @property
    def idp_certificates(self) -> tuple[x509.Certificate, ...]:
        return self._certs["idp"]

    @property
    def signer_certificates(self) -> tuple[x509.Certificate, ...]:
        """Certificates allowed to sign a message: the signer pins plus the IdP pins."""
        return self._certs["signer"] + self._certs["idp"]


def _known(enum: Any, uri: str, option: str) -> Any:
    try:
        return enum(uri)
    except ValueError as exc:
        raise ValueError(f"SecurityPolicy.{option}: unknown algorithm URI {uri!r}") from exc


def _load_all(pems: tuple[bytes, ...], option: str) -> tuple[x509.Certificate, ...]:
    if isinstance(pems, bytes | str):
        raise TypeError(f"SecurityPolicy.{option} is a tuple of PEM certificates, not one PEM")
    certs: list[x509.Certificate] = []
    for index, pem in enumerate(pems):
        try:
            certs.extend(x509.load_pem_x509_certificates(pem))
        except ValueError as exc:
            raise ValueError(f"SecurityPolicy.{option}[{index}] is not a PEM certificate") from exc
    return tuple(certs)
