"""Audit records in the database: written with the action they record, shipped in id order (the retention
purge in :mod:`hiem.store.retention` deletes them once old and shipped)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from hiem.audit import AuditEvent, event_to_json
from hiem.clock import utcnow
from hiem.store.models import AuditRecord


def add(session: Session, event: AuditEvent) -> None:
    add_prepared(session, [prepare(event)])


def add_many(session: Session, events: list[AuditEvent]) -> None:
    """One multi-row INSERT (a delivery batch's Export events), in the caller's transaction."""
    add_prepared(session, [prepare(event) for event in events])


PreparedRecord = dict[str, object]


def prepare(event: AuditEvent) -> PreparedRecord:
    """An event's row, without its time of writing: the costly part (the JSON), done before a transaction.

    Why: in embedded mode SQLite has one writer, and a delivery batch's few hundred events rendered inside
    the transaction kept a publisher's Notify waiting for the writer that much longer.
    """
    return {"kind": event.kind.value, "outcome": int(event.outcome), "subscription_id": event.subscription_id,
            "message_id": event.message_id, "event": event_to_json(event)}


def add_prepared(session: Session, records: list[PreparedRecord]) -> None:
    """Insert :func:`prepare`-d records in one statement, stamped with the time of writing."""
    if records:
        now = utcnow()
        session.execute(_INSERT, [{**record, "created_at": now} for record in records])


_INSERT = insert(AuditRecord.__table__)


def mark_shipped(session: Session, ids: list[int]) -> None:
    if ids:
        session.execute(update(AuditRecord).where(AuditRecord.id.in_(ids)).values(shipped_at=utcnow()))


def backlog(session: Session) -> int:
    from sqlalchemy import func

    return session.scalar(select(func.count()).select_from(AuditRecord).where(AuditRecord.shipped_at.is_(None))) or 0


def list_records(session: Session, since: datetime | None = None, kind: str | None = None,
                 limit: int = 200) -> list[AuditRecord]:
    query = select(AuditRecord).order_by(AuditRecord.id.desc()).limit(limit)
    if since is not None:
        query = query.where(AuditRecord.created_at >= since)
    if kind:
        query = query.where(AuditRecord.kind == kind)
    return list(session.scalars(query))
