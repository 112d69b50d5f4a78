"""Which unshipped records a shipper batch may take: a watermark on their time, not a filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hiem.audit.shipper import CLOCK_AHEAD_SECONDS, SETTLE_SECONDS, _settled
from hiem.store.models import AuditRecord

NOW = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
SETTLE_BEFORE = NOW - timedelta(seconds=SETTLE_SECONDS)


def _records(*ages: float) -> list[AuditRecord]:
    return [AuditRecord(id=n, created_at=NOW - timedelta(seconds=age)) for n, age in enumerate(ages, 1)]


def test_a_batch_stops_at_the_first_record_still_settling() -> None:
    records = _records(10, 5, 0.2, 8)  # record 4 is older than record 3, but comes after it
    assert [r.id for r in _settled(records, SETTLE_BEFORE)] == [1, 2]


def test_a_record_from_a_clock_far_ahead_does_not_stop_shipping() -> None:
    ahead = -(SETTLE_SECONDS + CLOCK_AHEAD_SECONDS + 3600)  # written by a host whose clock is an hour fast
    assert [r.id for r in _settled(_records(10, ahead, 5), SETTLE_BEFORE)] == [1, 2, 3]
    assert [r.id for r in _settled(_records(10, -30, 5), SETTLE_BEFORE)] == [1]  # a little ahead: waited for
