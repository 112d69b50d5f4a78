"""Signed console sessions and CSRF tokens: what is accepted, and everything that is not."""

from __future__ import annotations

import time

import pytest

from hiem.ops.sessions import Session, SessionSigner, password_fingerprint

SIGNER = SessionSigner(b"k" * 32, 3600)


def test_round_trip() -> None:
    session = SIGNER.login("alice", "$argon2id$hash")
    loaded = SIGNER.loads(SIGNER.dumps(session))
    assert loaded == Session(session.nonce, "alice", password_fingerprint("$argon2id$hash"), int(session.expires))
    assert loaded is not None and loaded.authenticated


def test_anonymous_sessions_are_not_logged_in_and_differ() -> None:
    first, second = SIGNER.anonymous(), SIGNER.anonymous()
    assert not first.authenticated and first.nonce != second.nonce


@pytest.mark.parametrize("mangle", [
    lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"),   # MAC altered
    lambda v: "e30" + v[v.index("."):],                             # payload swapped ({})
    lambda v: v.replace(".", ""),                                   # no MAC
    lambda v: v + ".x",                                             # extra part
    lambda v: "",
    lambda v: "not base64!.@@@",
])
def test_tampered_cookies_are_rejected(mangle) -> None:  # type: ignore[no-untyped-def]
    assert SIGNER.loads(mangle(SIGNER.dumps(SIGNER.login("alice", "h")))) is None


def test_another_key_does_not_verify() -> None:
    other = SessionSigner(b"o" * 32, 3600)
    assert other.loads(SIGNER.dumps(SIGNER.login("alice", "h"))) is None


def test_expired_sessions_are_rejected() -> None:
    short = SessionSigner(b"k" * 32, -1)
    assert short.loads(short.dumps(short.login("alice", "h"))) is None
    assert SIGNER.loads(SIGNER.dumps(Session("n", "alice", "f", time.time() - 1))) is None


def test_csrf_token_is_bound_to_the_session_nonce() -> None:
    session = SIGNER.anonymous()
    token = SIGNER.csrf_token(session)
    assert SIGNER.check_csrf(session, token)
    assert not SIGNER.check_csrf(SIGNER.anonymous(), token), "another session's token"
    assert not SIGNER.check_csrf(session, None) and not SIGNER.check_csrf(session, "")
    assert not SIGNER.check_csrf(None, token)
    assert not SessionSigner(b"o" * 32, 60).check_csrf(session, token), "another key"


def test_fingerprint_changes_with_the_hash_and_hides_it() -> None:
    assert password_fingerprint("a") != password_fingerprint("b")
    assert "a" * 8 not in password_fingerprint("a" * 64)
