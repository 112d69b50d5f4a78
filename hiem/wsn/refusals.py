"""Auditing refused requests: every fault an endpoint returns leaves an ATNA record (HIEM v2.0 §5).

The record is written in a transaction of its own, because the request's transaction was rolled back.
If the database itself is what failed, the record cannot be written either; that is logged loudly.
"""

from __future__ import annotations

import logging

from hiem.audit import AuditEvent, AuditKind
from hiem.audit import records as audit_records
from hiem.audit.codes import EventOutcomeIndicator
from hiem.soap import SoapRequest
from hiem.soap.faults import Fault, SoapCode
from hiem.wsn import messages
from hiem.wsn.context import ServiceContext

log = logging.getLogger(__name__)

_KIND_BY_OPERATION = {
    messages.SUBSCRIBE: (AuditKind.SUBSCRIBE_REFUSED, "NotificationProducer"),
    messages.UNSUBSCRIBE: (AuditKind.SUBSCRIPTION_TERMINATED, "SubscriptionManager"),
    messages.NOTIFY: (AuditKind.IMPORT, "NotificationBroker"),
}


def audit_refusal(ctx: ServiceContext, request: SoapRequest | None, fault: Fault) -> None:
    if request is not None and request.body.tag not in _KIND_BY_OPERATION and getattr(fault, "security_alert", False):
        _store(ctx, [ctx.audit.security_alert(ctx.caller(request), request.base_url, reason=fault.reason)])
        return
    if request is None or request.body.tag not in _KIND_BY_OPERATION:
        return  # not even a recognisable operation: nothing was requested that HIEM audits
    kind, endpoint = _KIND_BY_OPERATION[request.body.tag]
    outcome = EventOutcomeIndicator.MINOR_FAILURE if fault.code is SoapCode.SENDER \
        else EventOutcomeIndicator.MAJOR_FAILURE
    url = ctx.endpoint_url(request, endpoint)
    caller = ctx.caller(request)
    description = f"{getattr(fault, 'local_name', 'SOAP fault')}: {fault.reason}"
    if kind is AuditKind.IMPORT:
        event = ctx.audit.imported(caller, url, topic=None, message_id=request.addressing.message_id,
                                   outcome=outcome, description=description)
    else:
        event = ctx.audit.subscription(kind, caller, url, subscription_id=request.path_id, topic=None,
                                       message_id=request.addressing.message_id, outcome=outcome,
                                       description=description)
    events = [event]
    if getattr(fault, "security_alert", False):
        events.append(ctx.audit.security_alert(caller, url, reason=description))
    _store(ctx, events)


def _store(ctx: ServiceContext, events: list[AuditEvent]) -> None:
    try:
        with ctx.db.session() as session:
            for item in events:
                audit_records.add(session, item)
    except Exception:
        log.error("AUDIT RECORDS LOST: could not store %s for a refused request", [e.kind.value for e in events],
                  exc_info=True)
