"""EnvelopeVerifier: replay protection, and what the dev policy lets through and what it still refuses."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hiem.security import AlertType, FaultSubcode, SecurityError, SecurityPolicy

# --- replay ----------------------------------------------------------------------------------------------------


def test_a_holder_of_key_assertion_may_ride_on_a_new_signed_message(kit) -> None:
    assertion = kit.assertion()
    verifier = kit.verifier()
    verifier.verify(kit.message(assertion))
    assert verifier.verify(kit.message(assertion)).authenticated  # its own Timestamp, MessageID, signature


def test_the_same_message_again_is_refused_whatever_its_assertion(kit) -> None:
    message = kit.message(kit.assertion())
    verifier = kit.verifier()
    verifier.verify(message)
    kit.refused(lambda: verifier.verify(kit.wire(message)), AlertType.REPLAY, FaultSubcode.INVALID_SECURITY,
                "already received")


def test_a_one_time_use_assertion_is_refused_on_a_second_message(kit) -> None:
    assertion = kit.assertion(one_time_use=True)
    verifier = kit.verifier()
    verifier.verify(kit.message(assertion))
    kit.refused(lambda: verifier.verify(kit.message(assertion)), AlertType.REPLAY, FaultSubcode.INVALID_SECURITY,
                "already used")


def test_same_message_id_twice_is_refused(kit) -> None:
    verifier = kit.verifier()
    verifier.verify(kit.message(message_id="urn:uuid:11111111-2222-3333-4444-555555555555"))
    second = kit.message(message_id="urn:uuid:11111111-2222-3333-4444-555555555555")  # new assertion, same ID
    kit.refused(lambda: verifier.verify(second), AlertType.REPLAY, FaultSubcode.INVALID_SECURITY, "already received")


def test_the_same_message_id_from_two_signers_is_two_messages(kit) -> None:
    verifier = kit.verifier(kit.policy(require_assertion=False))
    verifier.verify(kit.signed_without_assertion(kit.gateway, message_id="urn:uuid:shared"))
    verifier.verify(kit.signed_without_assertion(kit.idp, message_id="urn:uuid:shared"))


def test_a_forged_copy_does_not_use_up_the_genuine_assertion(kit) -> None:
    assertion = kit.assertion()
    verifier = kit.verifier()
    forged = kit.message(assertion, signer=kit.attacker)
    with pytest.raises(SecurityError):
        verifier.verify(forged)
    assert verifier.verify(kit.message(assertion)).authenticated


# --- dev policy ------------------------------------------------------------------------------------------------


def test_dev_policy_accepts_a_message_without_security_unauthenticated(kit) -> None:
    result = kit.accept(kit.envelope(), SecurityPolicy.dev())
    assert not result.authenticated
    assert result.signed_parts == frozenset() and result.subject_id is None


def test_dev_policy_still_refuses_a_bad_assertion_when_present(kit) -> None:
    forged = kit.message(kit.assertion(issuer_identity=kit.attacker))
    kit.refused(lambda: kit.accept(forged, SecurityPolicy.dev(trusted_idp_certs=(kit.idp.cert_pem,))),
                AlertType.AUTHENTICATION, FaultSubcode.FAILED_AUTHENTICATION, "not trusted")
    kit.refused(lambda: kit.accept(forged, SecurityPolicy.dev()), AlertType.AUTHENTICATION,
                FaultSubcode.FAILED_AUTHENTICATION, "no identity provider")


def test_dev_policy_verifies_a_good_message_fully(kit) -> None:
    result = kit.accept(kit.message(), SecurityPolicy.dev(trusted_idp_certs=(kit.idp.cert_pem,)))
    assert result.authenticated and result.subject_name == "Jane Doe"


def test_dev_policy_without_verify_if_present_ignores_the_header(kit) -> None:
    forged = kit.message(kit.assertion(issuer_identity=kit.attacker))
    result = kit.accept(forged, SecurityPolicy.dev(verify_if_present=False))
    assert not result.authenticated and result.issuer is None


def test_naive_clock_is_taken_as_utc(kit) -> None:
    naive_now = datetime.now(UTC).replace(tzinfo=None)
    assert kit.accept(kit.message(), now=lambda: naive_now).authenticated
