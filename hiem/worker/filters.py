"""MessageContent filters during a fan-out: evaluated before any subscription row is locked, and every
evaluation that fails is recorded where an operator sees it (the subscription's row and its /ops page,
an audit record, ``hiem_filter_failures_total``), not only in a log line."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from hiem.audit import records as audit_records
from hiem.audit.codes import EventOutcomeIndicator
from hiem.clock import utcnow
from hiem.content_filter import evaluate_filters
from hiem.store import deliveries as store
from hiem.store.models import Notification
from hiem.worker.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class FilterPass:
    """The ``filtered`` callback of :func:`hiem.store.deliveries.fan_out`, keeping what failed."""

    failures: list[tuple[int, store.FilterRow, str]] = field(default_factory=list)

    def __call__(self, notification: Notification, candidates: list[store.FilterRow]) -> list[str]:
        verdicts = evaluate_filters([(c.expression, c.namespaces) for c in candidates], notification.message_xml)
        self.failures += [(notification.id, c, v.error) for c, v in zip(candidates, verdicts, strict=True)
                          if v.error]
        return [c.subscription_id for c, v in zip(candidates, verdicts, strict=True) if v.matched]

    def record(self, rt: Runtime, session: Session) -> None:
        """In the fan-out's transaction: each failure counted on its subscription and audited as a Notify
        not sent (EXPORT, serious failure), like any other notification a consumer did not get."""
        now = utcnow()
        for notification_id, row, error in self.failures:
            reason = f"MessageContent filter not evaluated ({error}); notification {notification_id} not sent"
            log.warning("subscription %s: %s", row.subscription_id, reason)
            store.note_filter_failure(session, row.subscription_id, error, now)
            audit_records.add(session, rt.audit.exported(
                row.manager_address, row.consumer_address, subscription_id=row.subscription_id,
                topic=row.topic_expression, message_id=f"{row.subscription_id}/{notification_id}",
                outcome=EventOutcomeIndicator.SERIOUS_FAILURE, description=reason))
