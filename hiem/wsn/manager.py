"""The SubscriptionManager role: Unsubscribe (WS-BaseNotification 1.3 §6.2, HIEM v2.0 §3.1.3).

The subscription is named by the ``nhin:SubscriptionId`` reference parameter that the SubscribeResponse
handed out, which a WS-Addressing client echoes as a SOAP header block (with or without
``wsa:IsReferenceParameter``: the HIEM sample omits it), or by a ``/wsn/SubscriptionManager/{id}`` path
for clients that put the id in the address.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError

from hiem import ns
from hiem.audit import AuditKind
from hiem.audit import records as audit_records
from hiem.clock import utcnow
from hiem.soap import SoapFault, SoapReply, SoapRequest
from hiem.store import deliveries, subscriptions
from hiem.store.models import SubscriptionStatus
from hiem.wsn import faults, leases, messages
from hiem.wsn.context import ServiceContext
from hiem.wsn.outgoing import replay_response

log = logging.getLogger(__name__)

_SUBSCRIPTION_ID = ns.qname(ns.NHIN, "SubscriptionId")


def subscription_id(request: SoapRequest) -> str:
    for header in request.headers:
        if header.tag == _SUBSCRIPTION_ID:
            value = "".join(header.itertext()).strip()
            if value:
                return value
    if request.path_id:
        return request.path_id
    raise faults.ResourceUnknownFault(
        "no subscription named: send the nhin:SubscriptionId reference parameter of the SubscriptionReference "
        "as a SOAP header block")


def check_owner(ctx: ServiceContext, request: SoapRequest, target: str) -> None:
    """Only the organization that created a subscription may manage it (outside dev mode)."""
    organization = ctx.authorizing(request)
    if organization is None:
        return
    with ctx.db.session() as session:
        row = subscriptions.get(session, target)
        owner = row.organization if row is not None else None
    if row is not None and owner != organization:
        raise faults.UnableToDestroySubscriptionFault(
            f"organization {organization!r} did not create subscription {target!r}",
            code=faults.SoapCode.SENDER, security_alert=True)


def unsubscribe(ctx: ServiceContext, request: SoapRequest) -> SoapReply:
    target = subscription_id(request)
    check_owner(ctx, request, target)
    try:
        with ctx.db.session() as session:
            ended = subscriptions.end(session, target, SubscriptionStatus.UNSUBSCRIBED)
            if ended is None:
                raise faults.ResourceUnknownFault(f"subscription {target!r} does not exist or has already ended")
            audit_records.add(session, ctx.audit.subscription(
                AuditKind.SUBSCRIPTION_TERMINATED, ctx.caller(request),
                ctx.endpoint_url(request, "SubscriptionManager"), subscription_id=target,
                topic=ended.topic_expression, message_id=request.addressing.message_id))
    except SQLAlchemyError as exc:
        raise faults.UnableToDestroySubscriptionFault(
            "the subscription could not be removed now (storage unavailable); retry later") from exc
    return SoapReply(messages.ACTION_UNSUBSCRIBE_RESPONSE, messages.unsubscribe_response())



def renew(ctx: ServiceContext, request: SoapRequest) -> SoapReply:
    """Renew (§6.1): a new termination time within the broker's lease policy; audited."""
    target = subscription_id(request)
    check_owner(ctx, request, target)
    now = utcnow()
    termination = leases.renewed_termination(messages.decode_renew(request.body), now, ctx.leases)
    with ctx.db.session() as session:
        if not subscriptions.renew(session, target, termination):
            raise faults.ResourceUnknownFault(f"subscription {target!r} does not exist or has already ended")
        until = termination.isoformat() if termination else "no scheduled end"
        audit_records.add(session, ctx.audit.subscription(
            AuditKind.SUBSCRIPTION_RENEWED, ctx.caller(request), ctx.endpoint_url(request, "SubscriptionManager"),
            subscription_id=target, topic=None, message_id=request.addressing.message_id,
            description=f"renewed until {until}"))
    return SoapReply(messages.ACTION_RENEW_RESPONSE, messages.renew_response(termination, now))


def pause(ctx: ServiceContext, request: SoapRequest) -> SoapReply:
    """PauseSubscription (§6.3): notifications keep being recorded for the subscription and are held."""
    target = subscription_id(request)
    check_owner(ctx, request, target)
    with ctx.db.session() as session:
        if not subscriptions.pause(session, target):
            raise faults.ResourceUnknownFault(f"subscription {target!r} does not exist or has already ended")
    return SoapReply(messages.ACTION_PAUSE_RESPONSE, messages.empty_response("PauseSubscriptionResponse"))


def resume(ctx: ServiceContext, request: SoapRequest) -> SoapReply:
    """ResumeSubscription (§6.4): everything held while paused is sent, in sequence order."""
    target = subscription_id(request)
    check_owner(ctx, request, target)
    with ctx.db.session() as session:
        if not subscriptions.resume(session, target):
            raise faults.ResourceUnknownFault(f"subscription {target!r} does not exist or has already ended")
        backlog = deliveries.held_for(session, target)
    if backlog:
        try:
            ctx.dispatcher.deliver_in_order(backlog)
        except Exception:  # the subscription is active and its backlog stamped: the sweeper drains it
            log.warning("could not enqueue the drain of resumed subscription %s; the sweeper will", target,
                        exc_info=True)
    return SoapReply(messages.ACTION_RESUME_RESPONSE, messages.empty_response("ResumeSubscriptionResponse"))


MAX_REPLAY = 1000


def replay(ctx: ServiceContext, request: SoapRequest) -> SoapReply:
    """hiem:Replay: the subscription's notifications after sequence ``After``, in order (docs/extensions.md)."""
    target = subscription_id(request)
    check_owner(ctx, request, target)
    after_text = request.body.findtext(ns.qname(ns.HIEM, "After")) or "0"
    limit_text = request.body.findtext(ns.qname(ns.HIEM, "MaximumNumber")) or str(MAX_REPLAY)
    try:
        after, limit = int(after_text.strip()), min(MAX_REPLAY, int(limit_text.strip()))
    except ValueError:
        raise SoapFault("hiem:After and hiem:MaximumNumber must be integers") from None
    if after < 0 or limit < 1:
        raise SoapFault("hiem:After must be >= 0 and hiem:MaximumNumber >= 1")
    with ctx.db.session() as session:
        row = subscriptions.get(session, target)
        if row is None:
            raise faults.ResourceUnknownFault(f"subscription {target!r} does not exist")
        oldest, found = deliveries.replay_since(session, target, after, limit)
        manager, dialect = row.manager_address, row.dialect
    if oldest is not None and after + 1 < oldest:
        raise faults.SequenceOutOfRangeFault(
            f"sequence {after + 1} is no longer retained; the oldest retained is {oldest}", oldest=oldest)
    return SoapReply(messages.ACTION_REPLAY_RESPONSE, replay_response(target, manager, dialect, found))


__all__ = ["pause", "renew", "replay", "resume", "subscription_id", "unsubscribe"]
