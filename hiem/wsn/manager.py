"""The SubscriptionManager role: Unsubscribe (WS-BaseNotification 1.3 §6.2, HIEM v2.0 §3.1.3).

The subscription is named by the ``nhin:SubscriptionId`` reference parameter that the SubscribeResponse
handed out, which a WS-Addressing client echoes as a SOAP header block (with or without
``wsa:IsReferenceParameter``: the HIEM sample omits it), or by a ``/wsn/SubscriptionManager/{id}`` path
for clients that put the id in the address.
"""

from __future__ import annotations

from sqlalchemy.exc import SQLAlchemyError

from hiem import ns
from hiem.audit import AuditKind
from hiem.soap import SoapReply, SoapRequest
from hiem.store import audit, subscriptions
from hiem.store.models import SubscriptionStatus
from hiem.wsn import faults, messages
from hiem.wsn.context import ServiceContext

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


def unsubscribe(ctx: ServiceContext, request: SoapRequest) -> SoapReply:
    target = subscription_id(request)
    try:
        with ctx.db.session() as session:
            ended = subscriptions.end(session, target, SubscriptionStatus.UNSUBSCRIBED)
            if ended is None:
                raise faults.ResourceUnknownFault(f"subscription {target!r} does not exist or has already ended")
            audit.add(session, ctx.audit.subscription(
                AuditKind.SUBSCRIPTION_TERMINATED, ctx.caller(request),
                ctx.endpoint_url(request, "SubscriptionManager"), subscription_id=target,
                topic=ended.topic_expression, message_id=request.addressing.message_id))
    except SQLAlchemyError as exc:
        raise faults.UnableToDestroySubscriptionFault(
            "the subscription could not be removed now (storage unavailable); retry later") from exc
    return SoapReply(messages.ACTION_UNSUBSCRIBE_RESPONSE, messages.unsubscribe_response())

