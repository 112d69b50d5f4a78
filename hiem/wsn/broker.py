"""The NotificationBroker's intake: a publisher's Notify (WS-BrokeredNotification 1.3, HIEM v2.0 §3.1.4).

The answer (HTTP 202) means "durably recorded": every NotificationMessage of the Notify is written with
its fan-out job in one transaction (the outbox). Fan-out and delivery happen afterwards in the workers.
If the database cannot be reached the publisher gets a SOAP Receiver fault, so it knows to retry.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError

from hiem.audit import records as audit_records
from hiem.soap import SoapFault, SoapReply, SoapRequest
from hiem.store import authorization, deliveries
from hiem.wsn import messages, topics
from hiem.wsn.context import ServiceContext
from hiem.wsn.faults import SoapCode

log = logging.getLogger(__name__)


def notify(ctx: ServiceContext, request: SoapRequest) -> SoapReply:
    data = messages.decode_notify(request.body)
    parsed = [(message, topics.parse(message.topic)) for message in data.messages]
    organization = ctx.authorizing(request)
    try:
        with ctx.db.session() as session:
            recorded = []
            for message, expression in parsed:
                topic, topic_id = topics.notification_topic(session, expression)
                if organization is not None and not authorization.allowed(session, organization, "publish", [topic]):
                    raise SoapFault(f"organization {organization!r} is not authorized to publish on {expression.text}",
                                    security_alert=True)
                row = deliveries.record_notification(session, deliveries.NewNotification(
                    message_id=request.addressing.message_id, topic_id=topic_id,
                    topic_namespace=topic.namespace, topic_path="/".join(topic.path),
                    message_xml=message.message_xml, producer_reference=message.producer_reference,
                    publisher=request.remote_addr,
                ))
                recorded.append(row.id)
                audit_records.add(session, ctx.audit.imported(
                    ctx.caller(request), ctx.endpoint_url(request, "NotificationBroker"),
                    topic=str(topic), message_id=request.addressing.message_id))
    except SQLAlchemyError as exc:
        log.error("could not record a Notify: %s", exc)
        raise SoapFault("the notification could not be recorded (storage unavailable); retry later",
                        SoapCode.RECEIVER) from exc
    for notification_id in recorded:
        try:
            ctx.dispatcher.fanout(notification_id)
        except Exception:  # the outbox row is committed; the sweeper will enqueue it
            log.warning("could not enqueue fan-out of notification %s; the sweeper will", notification_id,
                        exc_info=True)
    return SoapReply(messages.ACTION_NOTIFY, None)
