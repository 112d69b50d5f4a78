"""What tests do to a running broker from outside: run its CLI, count its audit records."""

from __future__ import annotations

import subprocess
import sys
from typing import Protocol

import sqlalchemy as sa

from tests.support.processes import ROOT


class HasEnv(Protocol):
    env: dict[str, str]


def run_cli(broker: HasEnv, *args: str) -> None:
    """``hiem ARGS...`` against the broker's database, as an operator would run it; fails on a non-zero exit."""
    subprocess.run([sys.executable, "-m", "hiem.cli", *args], env=broker.env, cwd=ROOT, check=True,
                   capture_output=True, timeout=60)


def count_security_alerts(broker: HasEnv) -> int:
    """ATNA Security Alert records in the broker's audit trail."""
    engine = sa.create_engine(broker.env["HIEM_DATABASE_URL"])
    try:
        with engine.connect() as connection:
            value = connection.execute(
                sa.text("SELECT count(*) FROM audit_records WHERE kind = 'security-alert'")).scalar()
    finally:
        engine.dispose()
    return int(value or 0)
