"""The one clock: timezone-aware UTC now. Everything hiem stores and compares is UTC-aware."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)
