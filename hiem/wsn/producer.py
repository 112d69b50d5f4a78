"""The NotificationProducer role: Subscribe (WS-BaseNotification 1.3 §4.2, HIEM v2.0 §3.1.2)."""

from __future__ import annotations

import uuid

from lxml import etree

from hiem import content_filter, ns
from hiem.audit import AuditKind
from hiem.audit import records as audit_records
from hiem.clock import utcnow
from hiem.delivery.policy import AddressNotAllowed, check_consumer_address, resolve_checked
from hiem.errors import DeliveryError
from hiem.soap import SoapReply, SoapRequest, SoapVersion
from hiem.store import authorization, deliveries, pullpoints, subscriptions
from hiem.store import topics as topic_store
from hiem.wsn import endpoint_checks, faults, leases, messages, topics
from hiem.wsn.context import ServiceContext
from hiem.wsn.pullpoint import pull_point_of
from hiem.wstopics import TopicDialect, topic_set_element

_USE_RAW = ns.qname(ns.WSNT, "UseRaw")


def subscribe(ctx: ServiceContext, request: SoapRequest) -> SoapReply:
    data = messages.decode_subscribe(request.body)
    _check_policies(data.policies)
    expression = topics.parse(data.topic)
    content_namespaces = None
    if data.message_content is not None:
        try:
            content_namespaces = content_filter.compile_filter(
                data.message_content.text, data.message_content.dialect, data.message_content.nsmap)
        except content_filter.InvalidExpression as exc:
            raise faults.InvalidMessageContentExpressionFault(str(exc)) from None
    base = ctx.base_url(request.base_url)
    pull_point = pull_point_of(data.consumer, base)
    if pull_point is None:
        try:
            check_consumer_address(data.consumer.address, ctx.settings)
        except AddressNotAllowed as exc:  # the client can fix it: a Sender fault
            raise faults.SubscribeCreationFailedFault(f"consumer address refused: {exc}",
                                                      code=faults.SoapCode.SENDER) from None
    heartbeat = endpoint_checks.heartbeat_interval(request.body, ctx.settings.min_heartbeat)
    now = utcnow()
    termination = leases.initial_termination(data.initial_termination_time, now, ctx.leases)
    subscription_id = str(uuid.uuid4())
    manager = f"{ctx.base_url(request.base_url)}/wsn/SubscriptionManager"
    if ctx.settings.endpoint_check and pull_point is None:
        _check_endpoint(ctx, data.consumer, subscription_id, manager, expression.dialect.value, request)
    organization = ctx.authorizing(request)
    with ctx.db.session() as session:
        if pull_point is not None and pullpoints.active(session, pull_point) is None:
            raise faults.SubscribeCreationFailedFault(f"pull point {pull_point!r} does not exist or was destroyed",
                                                      code=faults.SoapCode.SENDER)
        topic_ids = topics.covered_topic_ids(session, expression)
        if organization is not None and not authorization.allowed(
                session, organization, "subscribe", topic_store.paths_of(session, topic_ids)):
            raise faults.SubscribeCreationFailedFault(
                f"organization {organization!r} is not authorized to subscribe to {expression.text}",
                code=faults.SoapCode.SENDER, security_alert=True)
        subscriptions.create(session, subscriptions.NewSubscription(
            id=subscription_id, consumer_address=data.consumer.address,
            consumer_reference_parameters=data.consumer.reference_parameters, manager_address=manager,
            topic_expression=expression.text, dialect=expression.dialect.value,
            topic_namespaces=dict(expression.namespaces), is_wildcard=expression.is_wildcard,
            soap_version="1.1" if request.version is SoapVersion.SOAP11 else "1.2",
            created_at=now, termination_time=termination, subscriber=request.remote_addr,
            message_filter=data.message_content.text if data.message_content else None,
            message_filter_namespaces=content_namespaces, organization=organization, pull_point_id=pull_point,
            heartbeat_seconds=heartbeat,
        ), topic_ids)
        audit_records.add(session, ctx.audit.subscription(
            AuditKind.SUBSCRIBE_ACCEPTED, ctx.caller(request), ctx.endpoint_url(request, "NotificationProducer"),
            subscription_id=subscription_id, topic=expression.text, message_id=request.addressing.message_id))
    reference = messages.subscription_reference(manager, subscription_id)
    return SoapReply(messages.ACTION_SUBSCRIBE_RESPONSE, messages.subscribe_response(reference, now, termination))


def _check_endpoint(ctx: ServiceContext, consumer, subscription_id: str, manager: str, dialect: str,  # type: ignore[no-untyped-def]
                    request: SoapRequest) -> None:
    """HIEM_ENDPOINT_CHECK: a test Notify (topic hiem:EndpointCheck) must be accepted before the
    subscription exists; otherwise SubscribeCreationFailedFault says why."""
    try:
        addresses = resolve_checked(consumer.address, ctx.settings.delivery.allow_private_addresses)
        check = endpoint_checks.control_request(
            topic_local="EndpointCheck", subscription_id=subscription_id, manager_address=manager, consumer=consumer,
            dialect_uri=dialect, soap_version="1.1" if request.version is SoapVersion.SOAP11 else "1.2",
            signer=ctx.signer, connect_to=addresses[0] if addresses else None)
        endpoint_checks.send_once(check, ctx.settings.delivery)
    except (DeliveryError, AddressNotAllowed) as exc:
        raise faults.SubscribeCreationFailedFault(f"endpoint check failed: the consumer did not accept a test "
                                                  f"Notify ({exc})", code=faults.SoapCode.SENDER) from None


def _check_policies(policies: tuple[str, ...]) -> None:
    for policy in policies:
        if policy == _USE_RAW:
            raise faults.UnsupportedPolicyRequestFault(
                "UseRaw is not supported: HIEM v2.0 §3.1.4 requires the wsnt:Notify wrapper")
        raise faults.UnrecognizedPolicyRequestFault(f"subscription policy {policy} is not recognized")



def get_current_message(ctx: ServiceContext, request: SoapRequest) -> SoapReply:
    """GetCurrentMessage (§4.3): the last message published on one concrete topic."""
    expression = topics.parse(messages.decode_get_current_message(request.body))
    with ctx.db.session() as session:
        _, topic_id = topics.notification_topic(session, expression)
        latest = deliveries.latest_on_topic(session, topic_id)
        if latest is None:
            raise faults.NoCurrentMessageOnTopicFault(f"no message has been published on {expression.text}")
        message_xml = latest.message_xml
    return SoapReply(messages.ACTION_GET_CURRENT_MESSAGE_RESPONSE, messages.get_current_message_response(message_xml))


_RESOURCE_PROPERTIES = {ns.qname(ns.WSTOP, "TopicSet"), ns.qname(ns.WSNT, "TopicExpressionDialect"),
                        ns.qname(ns.WSNT, "FixedTopicSet")}


def get_resource_property(ctx: ServiceContext, request: SoapRequest) -> SoapReply:
    """WS-ResourceProperties GetResourceProperty on the NotificationProducerRP document (b-2.xsd):
    ``wstop:TopicSet`` (the loaded trees), ``wsnt:TopicExpressionDialect`` (one per supported dialect)
    and ``wsnt:FixedTopicSet`` (true: topics come from loaded TopicNamespace documents only)."""
    text = (request.body.text or "").strip()
    prefix, _, local = text.rpartition(":")
    namespace = request.body.nsmap.get(prefix or None)
    wanted = ns.qname(namespace, local) if namespace else local
    if wanted not in _RESOURCE_PROPERTIES:
        raise faults.InvalidResourcePropertyQNameFault(
            f"{text!r} is not a resource property of the NotificationProducer")
    response = etree.Element(ns.qname(ns.WSRF_RP, "GetResourcePropertyResponse"), nsmap={"wsrf-rp": ns.WSRF_RP})
    if wanted.endswith("}TopicSet"):
        with ctx.db.session() as session:
            trees = topic_store.namespace_documents(session)
        response.append(topic_set_element(trees))
    elif wanted.endswith("}TopicExpressionDialect"):
        for dialect in TopicDialect:
            element = etree.SubElement(response, ns.qname(ns.WSNT, "TopicExpressionDialect"), nsmap={"wsnt": ns.WSNT})
            element.text = dialect.value
    else:
        etree.SubElement(response, ns.qname(ns.WSNT, "FixedTopicSet"), nsmap={"wsnt": ns.WSNT}).text = "true"
    return SoapReply(ACTION_GET_RESOURCE_PROPERTY_RESPONSE, response)


ACTION_GET_RESOURCE_PROPERTY = "http://docs.oasis-open.org/wsrf/rpw-2/GetResourceProperty/GetResourcePropertyRequest"
ACTION_GET_RESOURCE_PROPERTY_RESPONSE = \
    "http://docs.oasis-open.org/wsrf/rpw-2/GetResourceProperty/GetResourcePropertyResponse"
GET_RESOURCE_PROPERTY = ns.qname(ns.WSRF_RP, "GetResourceProperty")
