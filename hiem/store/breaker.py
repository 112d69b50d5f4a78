"""The circuit breaker, kept in the database so every worker process shares it.

A consumer origin that fails ``threshold`` times in a row is *parked*: its deliveries wait (without
spending attempts) until ``parked_until``. Then the next delivery is the trial: success closes the
breaker, a failure parks the origin again for twice as long (capped). Operators can un-park an origin
early with ``hiem deliveries unpark ORIGIN``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from hiem.clock import utcnow
from hiem.store.db import as_utc
from hiem.store.models import Consumer

FAILURE_THRESHOLD = 5
FIRST_PARK_SECONDS = 30.0
MAX_PARK_SECONDS = 900.0


def origin_of(address: str) -> str:
    parts = urlsplit(address)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


@dataclass(frozen=True)
class Gate:
    """What the breaker lets through for an origin now: everything (closed), nothing until ``parked_until``
    (open), or exactly one delivery, the trial (half-open: ``trial`` is True)."""

    parked_until: datetime | None = None
    trial: bool = False


CLOSED = Gate()


def gate(session: Session, origin: str, now: datetime, *, threshold: int = FAILURE_THRESHOLD,
         trial_seconds: float = 30.0) -> Gate:
    """Read (and, after a park ended, take) the origin's breaker.

    After a park ends, exactly one delivery becomes the trial: it takes the origin with a conditional
    UPDATE (parking it again for ``trial_seconds``, the trial's own time budget), and every other
    delivery keeps waiting. The trial's success closes the breaker; its failure parks the origin longer.
    """
    row = session.execute(select(Consumer.parked_until, Consumer.consecutive_failures)
                          .where(Consumer.origin == origin)).first()
    if row is None:
        return CLOSED
    until = as_utc(row[0])
    if until is not None and until > now:
        return Gate(parked_until=until)
    if row[1] < threshold:
        return CLOSED
    trial_until = now + timedelta(seconds=trial_seconds)
    taken = session.execute(update(Consumer).where(
        Consumer.origin == origin, or_(Consumer.parked_until.is_(None), Consumer.parked_until <= now))
        .values(parked_until=trial_until, consecutive_failures=threshold - 1, updated_at=now)).rowcount
    if taken == 1:
        return Gate(parked_until=trial_until, trial=True)
    return Gate(parked_until=as_utc(session.scalar(select(Consumer.parked_until).where(Consumer.origin == origin)))
                or trial_until)


def record_success(session: Session, origin: str) -> None:
    session.execute(update(Consumer).where(Consumer.origin == origin, Consumer.consecutive_failures > 0)
                    .values(consecutive_failures=0, parked_until=None, park_count=0, updated_at=utcnow()))


def record_failure(session: Session, origin: str, error: str, *, threshold: int = FAILURE_THRESHOLD,
                   first_park: float = FIRST_PARK_SECONDS) -> datetime | None:
    """Count a failure; returns the new parked_until when this failure parks the origin."""
    now = utcnow()
    row = session.get(Consumer, origin, with_for_update=session.bind.dialect.name == "postgresql")
    if row is None:
        row = Consumer(origin=origin, consecutive_failures=0, park_count=0, updated_at=now)
        session.add(row)
    row.consecutive_failures += 1
    row.last_error = error[:500]
    row.updated_at = now
    parked = as_utc(row.parked_until)
    # Park when the count reaches the threshold (the first time, or a failed trial, which restarts the
    # count just below it) or when no park is running; failures of requests that were already in flight
    # when the origin was parked do not park it again.
    if row.consecutive_failures == threshold or (row.consecutive_failures > threshold and (parked or now) <= now):
        seconds = min(MAX_PARK_SECONDS, first_park * (2 ** row.park_count))
        row.park_count += 1
        row.parked_until = now + timedelta(seconds=seconds)
        return row.parked_until
    return None


def unpark(session: Session, origin: str | None = None) -> int:
    """Let parked origins (all when None) be tried now: their next delivery is the trial."""
    query = update(Consumer).where(Consumer.parked_until.is_not(None))
    if origin:
        query = query.where(Consumer.origin == origin)
    return session.execute(query.values(parked_until=utcnow(), updated_at=utcnow())).rowcount


def parked(session: Session) -> list[Consumer]:
    return list(session.scalars(select(Consumer).where(Consumer.parked_until > utcnow())))
