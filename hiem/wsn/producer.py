"""The NotificationProducer role: Subscribe (WS-BaseNotification 1.3 §4.2, HIEM v2.0 §3.1.2)."""

from __future__ import annotations

import uuid

from hiem import ns
from hiem.audit import AuditKind
from hiem.soap import SoapReply, SoapRequest, SoapVersion
from hiem.store import audit, subscriptions
from hiem.store.db import utcnow
from hiem.wsn import faults, leases, messages, topics
from hiem.wsn.context import ServiceContext
from hiem.wsn.outbound import check_consumer_address

_USE_RAW = ns.qname(ns.WSNT, "UseRaw")


def subscribe(ctx: ServiceContext, request: SoapRequest) -> SoapReply:
    data = messages.decode_subscribe(request.body)
    _check_policies(data.policies)
    expression = topics.parse(data.topic)
    check_consumer_address(data.consumer.address, ctx.settings)
    now = utcnow()
    termination = leases.initial_termination(data.initial_termination_time, now)
    subscription_id = str(uuid.uuid4())
    manager = f"{ctx.base_url(request.base_url)}/wsn/SubscriptionManager"
    with ctx.db.session() as session:
        topic_ids = topics.covered_topic_ids(session, expression)
        subscriptions.create(session, subscriptions.NewSubscription(
            id=subscription_id, consumer_address=data.consumer.address,
            consumer_reference_parameters=data.consumer.reference_parameters, manager_address=manager,
            topic_expression=expression.text, dialect=expression.dialect.value,
            topic_namespaces=dict(expression.namespaces), is_wildcard=expression.is_wildcard,
            soap_version="1.1" if request.version is SoapVersion.SOAP11 else "1.2",
            created_at=now, termination_time=termination, subscriber=request.remote_addr,
        ), topic_ids)
        audit.add(session, ctx.audit.subscription(
            AuditKind.SUBSCRIBE_ACCEPTED, ctx.caller(request), ctx.endpoint_url(request, "NotificationProducer"),
            subscription_id=subscription_id, topic=expression.text, message_id=request.addressing.message_id))
    reference = messages.subscription_reference(manager, subscription_id)
    return SoapReply(messages.ACTION_SUBSCRIBE_RESPONSE, messages.subscribe_response(reference, now, termination))


def _check_policies(policies: tuple[str, ...]) -> None:
    for policy in policies:
        if policy == _USE_RAW:
            raise faults.UnsupportedPolicyRequestFault(
                "UseRaw is not supported: HIEM v2.0 §3.1.4 requires the wsnt:Notify wrapper")
        raise faults.UnrecognizedPolicyRequestFault(f"subscription policy {policy} is not recognized")

