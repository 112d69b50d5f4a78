"""Turning received TopicExpressions into compiled topic sets, with WS-N faults for what is wrong."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from sqlalchemy.orm import Session

from hiem.store import topics as topic_store
from hiem.wsn import faults
from hiem.wsn.messages import TopicExpressionData
from hiem.wstopics import (
    TopicDialect,
    TopicExpression,
    TopicExpressionError,
    TopicPath,
    UnknownDialectError,
    parse_expression,
)

#: the longest expression text kept in the cache of compiled expressions (1,024 entries at most)
CACHED_TEXT_LIMIT = 1024


def parse(data: TopicExpressionData) -> TopicExpression:
    try:
        dialect = TopicDialect.from_uri(data.dialect)
    except UnknownDialectError:
        raise faults.TopicExpressionDialectUnknownFault(
            f"topic expression dialect {data.dialect!r} is not supported; use Simple, Concrete or Full "
            "(WS-Topics 1.3)") from None
    try:
        if len(data.text) > CACHED_TEXT_LIMIT:  # whitespace-padded or over-long: parsed, never kept
            return parse_expression(data.text, dialect, data.nsmap)
        return _compiled(data.text, dialect, _bindings(data.nsmap))
    except TopicExpressionError as exc:
        raise faults.InvalidTopicExpressionFault(f"invalid topic expression {data.text!r}: {exc.reason}") from None


@lru_cache(maxsize=1024)
def _compiled(text: str, dialect: TopicDialect, bindings: tuple[tuple[str, str], ...]) -> TopicExpression:
    """Subscribers send the same few expressions over and over; a TopicExpression is immutable, so one
    parse serves them all (a refused expression raises and is not kept)."""
    return parse_expression(text, dialect, dict(bindings))


def _bindings(nsmap: Mapping[str | None, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((prefix or "", uri) for prefix, uri in nsmap.items()))


def covered_topic_ids(session: Session, expression: TopicExpression) -> list[int]:
    """The loaded topics a subscription's expression covers; TopicNotSupportedFault when none."""
    single = expression.single_topic()
    if single is not None:
        found = topic_store.topic_id(session, single)
        ids = [found] if found is not None else []
    else:
        known = topic_store.all_topics(session)
        ids = [known[t] for t in expression.expand(known)]
    if not ids:
        raise faults.TopicNotSupportedFault(f"Topic not supported: {expression.text}")
    return ids


def notification_topic(session: Session, expression: TopicExpression) -> tuple[TopicPath, int]:
    """The single topic a published NotificationMessage names, and its id in the loaded trees."""
    single = expression.single_topic()
    if single is None:
        raise faults.InvalidTopicExpressionFault(
            f"a Notify Topic must identify exactly one topic (HIEM v2.0 §3.1.4), not {expression.text!r}")
    found = topic_store.topic_id(session, single)
    if found is None:
        raise faults.TopicNotSupportedFault(f"Topic not supported: {expression.text}")
    return single, found
