"""Pull delivery for consumers that accept no inbound connection (WS-BaseNotification 1.3 §5):
CreatePullPoint, GetMessages (oldest first, at most MaximumNumber), DestroyPullPoint.

A pull point's EPR is ``{base}/wsn/PullPoint`` with a ``hiem:PullPointId`` reference parameter. Using it
as the ConsumerReference of a Subscribe makes the broker keep that subscription's notifications in the
database (retained up to HIEM_PULL_MAX_MESSAGES and HIEM_PULL_MAX_AGE; the oldest beyond that are dropped
with an audit record) instead of pushing them.
"""

from __future__ import annotations

import uuid

from lxml import etree

from hiem import ns
from hiem.addressing import EndpointReference, epr_element
from hiem.audit import records as audit_records
from hiem.soap import SoapFault, SoapReply, SoapRequest
from hiem.store import pullpoints
from hiem.wsn import faults, messages
from hiem.wsn.context import ServiceContext
from hiem.wsn.outgoing import notification_message

CREATE = ns.qname(ns.WSNT, "CreatePullPoint")
GET_MESSAGES = ns.qname(ns.WSNT, "GetMessages")
DESTROY = ns.qname(ns.WSNT, "DestroyPullPoint")
ACTION_CREATE = "http://docs.oasis-open.org/wsn/bw-2/CreatePullPoint/CreatePullPointRequest"
ACTION_CREATE_RESPONSE = "http://docs.oasis-open.org/wsn/bw-2/CreatePullPoint/CreatePullPointResponse"
ACTION_GET = "http://docs.oasis-open.org/wsn/bw-2/PullPoint/GetMessagesRequest"
ACTION_GET_RESPONSE = "http://docs.oasis-open.org/wsn/bw-2/PullPoint/GetMessagesResponse"
ACTION_DESTROY = "http://docs.oasis-open.org/wsn/bw-2/PullPoint/DestroyPullPointRequest"
ACTION_DESTROY_RESPONSE = "http://docs.oasis-open.org/wsn/bw-2/PullPoint/DestroyPullPointResponse"
PULL_POINT_ID = ns.qname(ns.HIEM, "PullPointId")
MAX_MESSAGES_PER_CALL = 1000


def pull_point_epr(base_url: str, pull_point_id: str) -> EndpointReference:
    holder = etree.Element(ns.qname(ns.WSA, "ReferenceParameters"), nsmap={"wsa": ns.WSA, "hiem": ns.HIEM})
    etree.SubElement(holder, PULL_POINT_ID).text = pull_point_id
    return EndpointReference(address=f"{base_url}/wsn/PullPoint", reference_parameters=etree.tostring(holder))


def pull_point_of(consumer: EndpointReference, base_url: str) -> str | None:
    """The pull point a ConsumerReference names, when it is one of this broker's; else None."""
    prefix = f"{base_url}/wsn/PullPoint"
    if not consumer.address.startswith(prefix):
        return None
    for parameter in consumer.parameter_elements():
        if parameter.tag == PULL_POINT_ID and (parameter.text or "").strip():
            return parameter.text.strip()
    tail = consumer.address[len(prefix):].strip("/")
    return tail or None


def _target(request: SoapRequest) -> str:
    for header in request.headers:
        if header.tag == PULL_POINT_ID and (header.text or "").strip():
            return header.text.strip()
    if request.path_id:
        return request.path_id
    raise faults.ResourceUnknownFault("no pull point named: send the hiem:PullPointId reference parameter")


def create_pull_point(ctx: ServiceContext, request: SoapRequest) -> SoapReply:
    pull_point_id = str(uuid.uuid4())
    with ctx.db.session() as session:
        pullpoints.create(session, pull_point_id, ctx.caller(request).organization)
    response = etree.Element(ns.qname(ns.WSNT, "CreatePullPointResponse"), nsmap={"wsnt": ns.WSNT, "wsa": ns.WSA})
    response.append(epr_element(ns.qname(ns.WSNT, "PullPoint"), pull_point_epr(ctx.base_url(request.base_url),
                                                                            pull_point_id)))
    return SoapReply(ACTION_CREATE_RESPONSE, response)


def get_messages(ctx: ServiceContext, request: SoapRequest) -> SoapReply:
    target = _target(request)
    text = (request.body.findtext(ns.qname(ns.WSNT, "MaximumNumber")) or "").strip()
    try:
        maximum = int(text) if text else MAX_MESSAGES_PER_CALL
    except ValueError:
        raise SoapFault("wsnt:MaximumNumber must be a non-negative integer") from None
    if maximum < 0:
        raise SoapFault("wsnt:MaximumNumber must be a non-negative integer")
    response = etree.Element(ns.qname(ns.WSNT, "GetMessagesResponse"), nsmap={"wsnt": ns.WSNT, "wsa": ns.WSA})
    with ctx.db.session() as session:
        if pullpoints.active(session, target) is None:
            raise faults.ResourceUnknownFault(f"pull point {target!r} does not exist or was destroyed")
        taken = pullpoints.take(session, target, min(maximum, MAX_MESSAGES_PER_CALL)) if maximum else []
        for subscription_id, manager, dialect, message in taken:
            response.append(notification_message(subscription_id, manager, dialect, message))
            audit_records.add(session, ctx.audit.exported(
                manager, pull_point_epr(ctx.base_url(request.base_url), target).address,
                subscription_id=subscription_id, topic=f"{{{message.topic_namespace}}}{message.topic_path}",
                message_id=f"{subscription_id}/{message.notification_id}"))
    return SoapReply(ACTION_GET_RESPONSE, response)


def destroy_pull_point(ctx: ServiceContext, request: SoapRequest) -> SoapReply:
    target = _target(request)
    with ctx.db.session() as session:
        if not pullpoints.destroy(session, target):
            raise faults.ResourceUnknownFault(f"pull point {target!r} does not exist or was destroyed")
    return SoapReply(ACTION_DESTROY_RESPONSE, messages.empty_response("DestroyPullPointResponse"))
