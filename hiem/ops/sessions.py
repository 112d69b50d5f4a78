"""Console sessions: a signed cookie (HMAC-SHA256 over the payload) and the CSRF token derived from it.

Why a signed cookie and not a session table: every web process can check it with the shared key alone,
and the schema needs nothing new. What it cannot do by itself, revocation, is covered by re-reading the
operator on every request: the session carries a fingerprint of the password hash, so disabling an
operator or changing its password ends its sessions everywhere at once.

Every visitor, logged in or not, has a session with a random ``nonce``; the CSRF token is an HMAC of that
nonce, so a form from the login page is protected too, and logging in rotates the nonce (no fixation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE_NAME = "hiem_ops"


@dataclass(frozen=True)
class Session:
    """What a console cookie says: who (None before login), its nonce, its password fingerprint, its end."""

    nonce: str
    username: str | None = None
    fingerprint: str | None = None
    expires: float = 0.0

    @property
    def authenticated(self) -> bool:
        return self.username is not None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def password_fingerprint(password_hash: str) -> str:
    """A short digest of the stored hash: changes whenever the password does, reveals nothing about it."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:32]


class SessionSigner:
    """Encodes, signs and checks console sessions with one server-side key."""

    def __init__(self, secret: bytes, lifetime_seconds: float) -> None:
        self._key = hashlib.sha256(b"hiem-ops-session\0" + secret).digest()
        self._csrf_key = hashlib.sha256(b"hiem-ops-csrf\0" + secret).digest()
        self.lifetime = lifetime_seconds

    def anonymous(self) -> Session:
        return Session(nonce=secrets.token_urlsafe(18), expires=time.time() + self.lifetime)

    def login(self, username: str, password_hash: str) -> Session:
        """A fresh session (new nonce) for an operator who just proved its password."""
        return Session(nonce=secrets.token_urlsafe(18), username=username,
                       fingerprint=password_fingerprint(password_hash), expires=time.time() + self.lifetime)

    def dumps(self, session: Session) -> str:
        payload = _b64(json.dumps({"n": session.nonce, "u": session.username, "f": session.fingerprint,
                                   "e": int(session.expires)}, separators=(",", ":")).encode())
        return f"{payload}.{_b64(self._mac(payload))}"

    def loads(self, value: str | None) -> Session | None:
        """The session a cookie value carries, or None when it is missing, forged, malformed or expired."""
        if not value or value.count(".") != 1:
            return None
        payload, mac = value.split(".")
        try:
            if not hmac.compare_digest(_unb64(mac), self._mac(payload)):
                return None
            data = json.loads(_unb64(payload))
            session = Session(nonce=str(data["n"]), username=data["u"], fingerprint=data["f"],
                              expires=float(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > time.time() else None

    def csrf_token(self, session: Session) -> str:
        return _b64(hmac.new(self._csrf_key, session.nonce.encode(), hashlib.sha256).digest())

    def check_csrf(self, session: Session | None, token: str | None) -> bool:
        if session is None or not token:
            return False
        return hmac.compare_digest(self.csrf_token(session).encode(), token.encode())

    def _mac(self, payload: str) -> bytes:
        return hmac.new(self._key, payload.encode(), hashlib.sha256).digest()
