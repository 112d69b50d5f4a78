"""Operator accounts (argon2id password hashes) and the ``operator_actions`` accountability log.

Why argon2id: it is the password-hashing competition winner and OWASP's first choice; the hash string
carries its own parameters, so :func:`authenticate` upgrades old hashes transparently when the defaults
of argon2-cffi become stronger.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from enum import Enum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from hiem.clock import utcnow
from hiem.store.db import Database
from hiem.store.models import Operator, OperatorAction

DEV_OPERATOR = "dev"

_hasher = PasswordHasher()
# Verified against when the username is unknown, so a wrong name costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class Role(str, Enum):
    ADMIN = "admin"    # sees everything and acts (redeliver, unpark)
    VIEWER = "viewer"  # sees everything, cannot act


class OperatorError(ValueError):
    """An operator cannot be added as asked (duplicate name, bad role, weak password)."""


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def add_operator(session: Session, username: str, password: str, role: str) -> Operator:
    username = username.strip()
    if not username or len(username) > 128 or any(c.isspace() for c in username):
        raise OperatorError("a username is 1 to 128 characters without spaces")
    if role not in {r.value for r in Role}:
        raise OperatorError(f"role must be one of: {', '.join(r.value for r in Role)}")
    if len(password) < 8:
        raise OperatorError("a password has at least 8 characters")
    if session.scalar(select(Operator.id).where(Operator.username == username)) is not None:
        raise OperatorError(f"operator {username!r} already exists")
    row = Operator(username=username, password_hash=hash_password(password), role=role, disabled=False,
                   created_at=utcnow())
    session.add(row)
    session.flush()
    return row


def find(session: Session, username: str) -> Operator | None:
    return session.scalar(select(Operator).where(Operator.username == username))


def authenticate(session: Session, username: str, password: str) -> Operator | None:
    """The enabled operator whose password this is, else None (same cost either way)."""
    row = find(session, username)
    try:
        _hasher.verify(row.password_hash if row is not None else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or row.disabled:
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        row.password_hash = hash_password(password)
    return row


def ensure_dev_operator(database: Database) -> str:
    """``serve --dev``: the local admin ``dev`` gets a fresh random password, which the caller prints."""
    password = secrets.token_urlsafe(12)
    with database.session() as session:
        row = find(session, DEV_OPERATOR)
        if row is None:
            add_operator(session, DEV_OPERATOR, password, Role.ADMIN.value)
        else:
            row.password_hash, row.role, row.disabled = hash_password(password), Role.ADMIN.value, False
    return password


def record_action(session: Session, username: str, action: str, target: str, outcome: str) -> OperatorAction:
    row = OperatorAction(at=utcnow(), username=username[:128], action=action[:64], target=target[:512],
                         outcome=outcome[:512])
    session.add(row)
    session.flush()
    return row


def recent_actions(session: Session, limit: int = 100) -> list[OperatorAction]:
    return list(session.scalars(select(OperatorAction).order_by(OperatorAction.id.desc()).limit(limit)))


class LoginThrottle:
    """At most ``attempts`` failed logins per (username, address) in ``window`` seconds, per process.

    Why per process and in memory: it is a brake on online guessing, not an accounting system; argon2's
    cost already bounds the rate, and a restart forgetting the count is acceptable.
    """

    def __init__(self, attempts: int = 5, window: float = 300.0) -> None:
        self.attempts, self.window = attempts, window
        self._failures: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, username: str, address: str) -> bool:
        with self._lock:
            recent = self._recent((username, address))
            return len(recent) >= self.attempts

    def failed(self, username: str, address: str) -> None:
        with self._lock:
            self._recent((username, address)).append(time.monotonic())
            if len(self._failures) > 10_000:  # bound memory under a spray of names
                self._failures.clear()

    def succeeded(self, username: str, address: str) -> None:
        with self._lock:
            self._failures.pop((username, address), None)

    def _recent(self, key: tuple[str, str]) -> deque[float]:
        queue = self._failures.setdefault(key, deque())
        while queue and queue[0] < time.monotonic() - self.window:
            queue.popleft()
        return queue
