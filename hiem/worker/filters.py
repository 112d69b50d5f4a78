"""MessageContent filters during a fan-out: evaluated between the fan-out's transactions (no lock held),
and every evaluation that fails is recorded where an operator sees it (the subscription's row and its
/ops page, an audit record, ``hiem_filter_failures_total``), not only in a log line."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hiem.audit import records as audit_records
from hiem.audit.codes import EventOutcomeIndicator
from hiem.clock import utcnow
from hiem.content_filter import Verdict, evaluate_filters
from hiem.store import deliveries as store
from hiem.worker.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass
class FilterPass:
    """The ``evaluate`` callback of :func:`hiem.store.deliveries.fan_out_in_order` for one process."""

    rt: Runtime

    def __call__(self, notification_id: int, message_xml: bytes, candidates: list[store.FilterRow]) -> list[str]:
        try:
            verdicts = evaluate_filters([(c.expression, c.namespaces) for c in candidates], message_xml)
        except Exception as exc:  # the sandboxes, not the filters: still a failure of each, never "no match"
            log.exception("MessageContent filters of notification %s not evaluated", notification_id)
            verdicts = [Verdict(False, f"the filter sandbox failed: {exc!r}"[:300])] * len(candidates)
        failed = [(c, v.error) for c, v in zip(candidates, verdicts, strict=True) if v.error]
        if failed:
            self._record(notification_id, failed)
        return [c.subscription_id for c, v in zip(candidates, verdicts, strict=True) if v.matched]

    def _record(self, notification_id: int, failed: list[tuple[store.FilterRow, str]]) -> None:
        """Each failure counted on its subscription and audited as a Notify not sent (EXPORT, serious
        failure), like any other notification a consumer did not get; in a transaction of its own, rows in
        id order (the fan-out's transaction locks other rows, in its own order)."""
        now = utcnow()
        with self.rt.db.session() as session:
            for row, error in sorted(failed, key=lambda item: item[0].subscription_id):
                reason = f"MessageContent filter not evaluated ({error}); notification {notification_id} not sent"
                log.warning("subscription %s: %s", row.subscription_id, reason)
                store.note_filter_failure(session, row.subscription_id, error, now)
                audit_records.add(session, self.rt.audit.exported(
                    row.manager_address, row.consumer_address, subscription_id=row.subscription_id,
                    topic=row.topic_expression, message_id=f"{row.subscription_id}/{notification_id}",
                    outcome=EventOutcomeIndicator.SERIOUS_FAILURE, description=reason))
