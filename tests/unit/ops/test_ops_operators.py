"""Operator accounts: argon2id hashes, validation, authentication, the dev operator, the login brake."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from hiem.ops import operators
from hiem.ops.operators import LoginThrottle, OperatorError
from hiem.store.db import Database
from hiem.store.models import Operator
from tests.unit.ops.conftest import ADMIN, PASSWORD


def test_passwords_are_stored_as_argon2id(db: Database) -> None:
    with db.session() as session:
        row = operators.find(session, ADMIN)
        assert row is not None and row.password_hash.startswith("$argon2id$")
        assert PASSWORD not in row.password_hash


@pytest.mark.parametrize(("username", "password", "role", "says"), [
    ("bob", "short", "admin", "8 characters"),
    ("bob", "long enough", "root", "role"),
    ("", "long enough", "admin", "username"),
    ("bo b", "long enough", "admin", "username"),
    (ADMIN, "long enough", "admin", "already exists"),
])
def test_invalid_operators_are_refused(db: Database, username: str, password: str, role: str, says: str) -> None:
    with pytest.raises(OperatorError, match=says), db.session() as session:
        operators.add_operator(session, username, password, role)


def test_authenticate(db: Database) -> None:
    with db.session() as session:
        assert operators.authenticate(session, ADMIN, PASSWORD) is not None
        assert operators.authenticate(session, ADMIN, PASSWORD + "x") is None
        assert operators.authenticate(session, "nobody", PASSWORD) is None
        operators.find(session, ADMIN).disabled = True  # type: ignore[union-attr]
        assert operators.authenticate(session, ADMIN, PASSWORD) is None, "disabled operators cannot log in"


def test_weaker_hashes_are_upgraded_on_login(db: Database) -> None:
    weak = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
    with db.session() as session:
        operators.find(session, ADMIN).password_hash = weak  # type: ignore[union-attr]
    with db.session() as session:
        assert operators.authenticate(session, ADMIN, PASSWORD) is not None
    with db.session() as session:
        assert session.scalar(select(Operator.password_hash).where(Operator.username == ADMIN)) != weak


def test_dev_operator_gets_a_fresh_password_each_start(db: Database) -> None:
    first = operators.ensure_dev_operator(db)
    second = operators.ensure_dev_operator(db)
    assert first != second
    with db.session() as session:
        assert operators.authenticate(session, "dev", first) is None
        row = operators.authenticate(session, "dev", second)
        assert row is not None and row.role == "admin"


def test_actions_are_recorded(db: Database) -> None:
    with db.session() as session:
        operators.record_action(session, ADMIN, "redeliver", "7", "x" * 600)
    with db.session() as session:
        (row,) = operators.recent_actions(session)
        assert (row.username, row.action, row.target, len(row.outcome)) == (ADMIN, "redeliver", "7", 512)


def test_login_throttle() -> None:
    throttle = LoginThrottle(attempts=3, window=60)
    for _ in range(3):
        assert not throttle.blocked("a", "1.2.3.4")
        throttle.failed("a", "1.2.3.4")
    assert throttle.blocked("a", "1.2.3.4")
    assert not throttle.blocked("a", "5.6.7.8") and not throttle.blocked("b", "1.2.3.4")
    throttle.succeeded("a", "1.2.3.4")
    assert not throttle.blocked("a", "1.2.3.4")
