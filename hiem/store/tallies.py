"""History tallies: operator reads count what can still change and look the history up.

``/metrics``, the ``/ops`` overview and ``hiem status`` report delivery rows by state and two counters
(deliveries completed, notifications received per topic). Counted over whole tables, each read scanned
the history; with these tallies it costs the same at 10 thousand rows as at millions.

Why this is exact: a delivery in a final state (delivered, cancelled, dropped) never leaves it, and a
notification keeps its topic. (Every transition in hiem.store.deliveries and hiem.store.pullpoints is a
conditional UPDATE from an in-play state; redelivery starts from dead, which is not final.) So the sweeper
*folds* them into ``history_tallies``: per final state and per topic, the rows whose ``updated_at`` /
``received_at`` is at most ``through``, kept or purged since. A read adds the rows after ``through``,
an index range over the last minutes. States still in play (pending, in flight, retrying, held, stored,
dead) are counted as they are: they are the backlog, bounded by what is wrong now, not by history.

Tally kinds are purge_totals' (``deliveries:<state>``, ``notifications:<topic id>``), so rows present in a
final state are tally - purged + after ``through``, and the counters are tally + after ``through``.

``through`` stays ``SETTLE`` behind the clock: a row's timestamp comes from its writer's clock before its
transaction commits, so a fold must not pass a time whose rows may still be committing, or be arriving
from a host whose clock is behind. The purge deletes finished rows days after that, and the sweeper folds
right before it purges; a retention window shorter than twice ``SETTLE`` (tests) shrinks the margin to
half that window, so that nothing is purged before it is folded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import String, cast, func, insert, literal, or_, select, union_all, update
from sqlalchemy.orm import Session

from hiem.config import RetentionSettings
from hiem.store.db import Database, as_utc
from hiem.store.models import Delivery, DeliveryState, HistoryTally, Notification, PurgeTotal
from hiem.store.retention import DELIVERIES_PREFIX, NOTIFICATIONS_PREFIX

FINAL = (DeliveryState.DELIVERED.value, DeliveryState.CANCELLED.value, DeliveryState.DROPPED.value)
IN_PLAY = tuple(s.value for s in DeliveryState if s.value not in FINAL)
SETTLE = timedelta(minutes=5)
#: the watermark row (migration 0012), and its ``through`` until the first fold
WATERMARK = "through"
NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def settle_margin(windows: RetentionSettings) -> timedelta:
    """``SETTLE``, or half the shortest retention window when that is less."""
    spans = [getattr(windows, f.name) for f in dataclasses.fields(windows)]
    return min([SETTLE, *(span / 2 for span in spans if isinstance(span, timedelta))])


def fold(database: Database, now: datetime, settle: timedelta = SETTLE) -> int:
    """Add what finished or arrived up to ``now - settle`` to the tallies; returns the rows added.

    The first fold counts the whole history once (and takes over what the purge deleted before there
    were tallies); later ones count what came since the last. One fold at a time: the watermark row is
    locked (SQLite has one writer anyway).
    """
    through = now - settle
    with database.session() as session:
        query = select(HistoryTally.through).where(HistoryTally.kind == WATERMARK)
        if session.bind.dialect.name == "postgresql":
            query = query.with_for_update()
        since = as_utc(session.execute(query).scalar_one())
        assert since is not None
        if through <= since:
            return 0
        added = _arrived(session, since, through, first=since <= NEVER)
        for kind, rows in added.items():
            if not session.execute(update(HistoryTally).where(HistoryTally.kind == kind)
                                   .values(rows=HistoryTally.rows + rows)).rowcount:
                session.execute(insert(HistoryTally).values(kind=kind, rows=rows, through=through))
        session.execute(update(HistoryTally).values(through=through))
        return sum(added.values())


def _arrived(session: Session, since: datetime, through: datetime, first: bool) -> dict[str, int]:
    """Rows that reached a final state, or arrived, in (since, through], by tally kind; on the first fold
    also what the purge had deleted. One statement, so one snapshot: a purge committing meanwhile is
    either wholly in the counts or wholly in its totals, never in both."""
    parts = [
        select(literal(DELIVERIES_PREFIX, String) + Delivery.state, func.count())
        .where(Delivery.state.in_(FINAL), Delivery.updated_at > since, Delivery.updated_at <= through)
        .group_by(Delivery.state),
        select(literal(NOTIFICATIONS_PREFIX, String) + cast(Notification.topic_id, String), func.count())
        .where(Notification.received_at > since, Notification.received_at <= through)
        .group_by(Notification.topic_id)]
    if first:
        parts.append(select(PurgeTotal.kind, PurgeTotal.rows).where(or_(
            PurgeTotal.kind.in_([DELIVERIES_PREFIX + state for state in FINAL]),
            PurgeTotal.kind.startswith(NOTIFICATIONS_PREFIX))))
    added: dict[str, int] = {}
    for kind, rows in session.execute(union_all(*parts)):
        added[kind] = added.get(kind, 0) + int(rows)
    return {kind: rows for kind, rows in added.items() if rows}


@dataclass(frozen=True)
class Deliveries:
    """Delivery rows in each state now, and how many ever reached each final state (kept or purged)."""

    by_state: dict[str, int]
    completed: dict[str, int]


def deliveries(session: Session) -> Deliveries:
    through, base, purged = _tallies(session)
    by_state = dict.fromkeys((s.value for s in DeliveryState), 0)
    by_state.update(_count(session, select(Delivery.state, func.count()).where(Delivery.state.in_(IN_PLAY))
                           .group_by(Delivery.state)))
    recent = _count(session, select(Delivery.state, func.count())
                    .where(Delivery.state.in_(FINAL), Delivery.updated_at > through).group_by(Delivery.state))
    completed = {}
    for state in FINAL:
        kind = DELIVERIES_PREFIX + state
        completed[state] = base.get(kind, 0) + recent.get(state, 0)
        by_state[state] = completed[state] - purged.get(kind, 0)
    return Deliveries(by_state, completed)


def received(session: Session) -> dict[int, int]:
    """Notifications ever accepted, per topic id (kept or purged); topics without any are left out."""
    through, base, _ = _tallies(session)
    counts = {int(kind[len(NOTIFICATIONS_PREFIX):]): rows for kind, rows in base.items()
              if kind.startswith(NOTIFICATIONS_PREFIX)}
    for topic, rows in _count(session, select(Notification.topic_id, func.count())
                              .where(Notification.received_at > through).group_by(Notification.topic_id)).items():
        counts[topic] = counts.get(topic, 0) + rows
    return {topic: rows for topic, rows in counts.items() if rows}


def _tallies(session: Session) -> tuple[datetime, dict[str, int], dict[str, int]]:
    """(through, what counters start from, purge totals), read in one statement so that the tallies and
    the purge totals are of one moment. Before the first fold nothing is tallied: every row still here is
    after ``through``, and what went is in the purge totals, which are then where counters start from."""
    rows = session.execute(union_all(
        select(literal("tally", String), HistoryTally.kind, HistoryTally.rows, HistoryTally.through),
        select(literal("purged", String), PurgeTotal.kind, PurgeTotal.rows, PurgeTotal.last_purge_at))).all()
    tallied = {kind: int(n) for source, kind, n, _ in rows if source == "tally" and kind != WATERMARK}
    purged = {kind: int(n) for source, kind, n, _ in rows if source == "purged"}
    through = next((as_utc(when) for source, kind, _, when in rows if source == "tally" and kind == WATERMARK), NEVER)
    assert through is not None
    return through, tallied if through > NEVER else purged, purged


def _count(session: Session, query) -> dict:  # type: ignore[no-untyped-def,type-arg]
    return {key: int(n) for key, n in session.execute(query)}
