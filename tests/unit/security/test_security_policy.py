"""SecurityPolicy defaults, dev mode, validation; SecurityError; the package's public names."""

from __future__ import annotations

import inspect

import pytest

import hiem.security
from hiem.errors import HiemError
from hiem.security import AlertType, FaultSubcode, SecurityError, SecurityPolicy
from hiem.security.policy import BEARER, HOLDER_OF_KEY, SENDER_VOUCHES

RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"


def test_defaults_are_strict() -> None:
    policy = SecurityPolicy()
    assert policy.require_assertion and policy.require_signature and policy.verify_if_present
    assert policy.trusted_idp_certs == () and policy.trusted_signer_certs == ()
    assert policy.clock_skew_seconds == 120 and policy.freshness_window_seconds == 600
    assert policy.max_assertion_lifetime_seconds == 8 * 3600
    assert not any("sha1" in uri for uri in policy.signature_algorithms | policy.digest_algorithms)
    assert not any("hmac" in uri for uri in policy.signature_algorithms)
    assert policy.subject_confirmation_methods == {HOLDER_OF_KEY, SENDER_VOUCHES}


def test_dev_requires_nothing_but_still_verifies_what_is_present(kit) -> None:
    dev = SecurityPolicy.dev(trusted_idp_certs=(kit.idp.cert_pem,))
    assert not dev.require_assertion and not dev.require_signature and dev.verify_if_present
    assert dev.idp_certificates and dev.signature_algorithms == SecurityPolicy().signature_algorithms


def test_pinned_certificates_are_parsed_once(kit) -> None:
    policy = kit.policy()
    assert len(policy.idp_certificates) == 1
    assert len(policy.signer_certificates) == 2  # the signer pins plus the IdP pins


def test_sha1_is_an_explicit_opt_in_only() -> None:
    legacy = SecurityPolicy(signature_algorithms=frozenset({RSA_SHA1}), digest_algorithms=frozenset({SHA1}))
    assert RSA_SHA1 in legacy.signature_algorithms


@pytest.mark.parametrize(("overrides", "message"), [
    ({"trusted_idp_certs": (b"not a certificate",)}, "trusted_idp_certs\\[0\\]"),
    ({"signature_algorithms": frozenset({"urn:unknown"})}, "unknown algorithm"),
    ({"signature_algorithms": frozenset({"http://www.w3.org/2001/04/xmldsig-more#hmac-sha256"})}, "HMAC"),
    ({"digest_algorithms": frozenset({"urn:unknown"})}, "unknown algorithm"),
    ({"clock_skew_seconds": -1}, "between 0 and one year"),
    ({"freshness_window_seconds": 1e12}, "between 0 and one year"),
    ({"subject_confirmation_methods": frozenset({"urn:bogus"})}, "unknown method"),
])
def test_bad_options_fail_at_construction(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SecurityPolicy(**overrides)


def test_a_single_pem_instead_of_a_tuple_is_a_type_error(kit) -> None:
    with pytest.raises(TypeError):
        SecurityPolicy(trusted_idp_certs=kit.idp.cert_pem)


def test_bearer_can_be_accepted_explicitly() -> None:
    assert BEARER in SecurityPolicy(subject_confirmation_methods=frozenset({BEARER})).subject_confirmation_methods


def test_security_error_carries_reason_alert_type_and_wsse_subcode() -> None:
    error = SecurityError.replay("seen before")
    assert isinstance(error, HiemError)
    assert (error.reason, error.alert_type, error.subcode) == ("seen before", "replay", FaultSubcode.INVALID_SECURITY)
    assert FaultSubcode.FAILED_CHECK == "{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd}FailedCheck"
    assert {alert.value for alert in AlertType} == {"authentication", "signature", "replay", "expired", "policy"}
    assert "seen before" in repr(error)


EXPECTED = {
    "AlertType", "AssertionMinter", "DevIdentity", "EnvelopeSigner", "EnvelopeVerifier", "FaultSubcode",
    "MemoryNonceCache", "NonceCache", "SecurityError", "SecurityPolicy", "SecurityResult", "ensure_dev_identity",
    "mint_assertion", "wrap_with_assertion",
}


def test_all_is_the_public_api() -> None:
    assert set(hiem.security.__all__) == EXPECTED and len(hiem.security.__all__) == len(EXPECTED)
    public = {name for name, value in vars(hiem.security).items()
              if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"}
    assert public == EXPECTED
