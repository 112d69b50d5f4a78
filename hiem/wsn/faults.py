"""WS-BaseNotification 1.3 faults as exceptions: one class per fault element hiem raises (b-2, r-2, rp-2, hiem.xsd).

Handlers raise these; only ``hiem.soap`` turns them into SOAP 1.1/1.2 envelopes, with the fault element
(a WS-BaseFaults ``BaseFaultType`` carrying ``wsrf-bf:Timestamp`` and a human ``wsrf-bf:Description``)
in the SOAP Detail. ::

    hiem.soap.faults.Fault
     +-- WsnFault                                  code: Sender unless noted
          +-- ResourceUnknownFault                 (r-2) unknown or already removed subscription
          +-- SubscribeCreationFailedFault         Receiver
          +-- InvalidFilterFault                   lists the UnknownFilter QNames
          +-- TopicExpressionDialectUnknownFault
          +-- InvalidTopicExpressionFault
          +-- TopicNotSupportedFault
          +-- MultipleTopicsSpecifiedFault
          +-- InvalidProducerPropertiesExpressionFault
          +-- InvalidMessageContentExpressionFault
          +-- UnrecognizedPolicyRequestFault
          +-- UnsupportedPolicyRequestFault
          +-- NotifyMessageNotSupportedFault
          +-- UnacceptableInitialTerminationTimeFault   carries MinimumTime/MaximumTime
          +-- UnacceptableTerminationTimeFault          carries MinimumTime/MaximumTime
          +-- NoCurrentMessageOnTopicFault
          +-- UnableToDestroySubscriptionFault     Receiver
          +-- InvalidResourcePropertyQNameFault    (rp-2)
          +-- SequenceOutOfRangeFault              (hiem's own, hiem:Replay)

Only faults an operation of hiem's raises have a class. The schemas declare more (publisher
registration, whose operations hiem does not offer; pull-point and pause failures, which hiem's
implementation never meets: its storage errors are Receiver faults without a WS-N type).

Programming mistakes are never turned into one of these: they surface as a generic Receiver fault
with no detail, and a log line.
"""

from __future__ import annotations

from datetime import UTC, datetime

from lxml import etree

from hiem import ns
from hiem.soap.faults import Fault, SoapCode


class WsnFault(Fault):
    """A fault defined by WS-BaseNotification / WS-BrokeredNotification / WS-Resource."""

    namespace: str = ns.WSNT
    local_name: str = "BaseFault"
    code: SoapCode = SoapCode.SENDER
    default_reason: str = "request refused"

    #: set on refusals that are security events (authorization), audited as ATNA Security Alerts
    security_alert: bool = False

    def __init__(self, reason: str | None = None, *, code: SoapCode | None = None,
                 security_alert: bool = False) -> None:
        """``code`` overrides the fault type's usual blame (SubscribeCreationFailedFault is a Receiver fault
        unless the client's own request caused it); ``security_alert`` marks a refusal for the audit trail."""
        self.reason = reason or self.default_reason
        if code is not None:
            self.code = code
        self.security_alert = security_alert
        super().__init__(self.reason)

    @property
    def qname(self) -> str:
        return ns.qname(self.namespace, self.local_name)

    def extra_elements(self) -> list[tuple[str, str]]:
        """(Clark name, text) pairs the fault type adds after the BaseFault content, in schema order."""
        return []

    def detail(self, now: datetime | None = None) -> etree._Element:
        """The WS-N fault element: BaseFaultType's Timestamp and Description, then the type's own elements."""
        element = etree.Element(self.qname, nsmap={"wsnt": ns.WSNT, "wsrf-bf": ns.WSRF_BF, "wsrf-r": ns.WSRF_R})
        stamp = (now or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        etree.SubElement(element, ns.qname(ns.WSRF_BF, "Timestamp")).text = stamp
        description = etree.SubElement(element, ns.qname(ns.WSRF_BF, "Description"))
        description.set(ns.qname(ns.XML, "lang"), "en")
        description.text = self.reason
        for tag, text in self.extra_elements():
            if tag.endswith("}UnknownFilter") and text.startswith("{"):
                # xsd:QName content needs its prefix in scope. Reuse a prefix the fault element already
                # binds (lxml would drop a second declaration of the same namespace), else declare "uf".
                namespace, local = text[1:].split("}", 1)
                bound = next((p for p, u in element.nsmap.items() if u == namespace and p), None)
                child = (etree.SubElement(element, tag) if bound
                         else etree.SubElement(element, tag, nsmap={"uf": namespace}))
                child.text = f"{bound or 'uf'}:{local}"
            else:
                etree.SubElement(element, tag).text = text
        return element

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r})"


def _fault(name: str, reason: str, code: SoapCode = SoapCode.SENDER, namespace: str = ns.WSNT) -> type[WsnFault]:
    cls = type(name, (WsnFault,), {"local_name": name, "default_reason": reason, "code": code,
                                    "namespace": namespace, "__doc__": f"``{name}``: {reason}."})
    cls.__module__ = __name__
    return cls


ResourceUnknownFault = _fault("ResourceUnknownFault", "no such subscription", namespace=ns.WSRF_R)
SubscribeCreationFailedFault = _fault("SubscribeCreationFailedFault", "subscription could not be created",
                                      SoapCode.RECEIVER)
TopicExpressionDialectUnknownFault = _fault("TopicExpressionDialectUnknownFault",
                                            "topic expression dialect not supported")
InvalidTopicExpressionFault = _fault("InvalidTopicExpressionFault", "invalid topic expression")
TopicNotSupportedFault = _fault("TopicNotSupportedFault", "Topic not supported")
MultipleTopicsSpecifiedFault = _fault("MultipleTopicsSpecifiedFault", "more than one topic specified")
InvalidProducerPropertiesExpressionFault = _fault("InvalidProducerPropertiesExpressionFault",
                                                  "invalid producer properties expression")
InvalidMessageContentExpressionFault = _fault("InvalidMessageContentExpressionFault",
                                              "invalid message content expression")
UnrecognizedPolicyRequestFault = _fault("UnrecognizedPolicyRequestFault", "subscription policy not recognized")
UnsupportedPolicyRequestFault = _fault("UnsupportedPolicyRequestFault", "subscription policy not supported")
NotifyMessageNotSupportedFault = _fault("NotifyMessageNotSupportedFault", "Notify message not supported")
NoCurrentMessageOnTopicFault = _fault("NoCurrentMessageOnTopicFault", "no current message on topic")
UnableToDestroySubscriptionFault = _fault("UnableToDestroySubscriptionFault", "unable to destroy subscription",
                                          SoapCode.RECEIVER)


class InvalidFilterFault(WsnFault):
    """``InvalidFilterFault``: a filter element the producer does not know; b-2.xsd requires >= 1 UnknownFilter."""

    local_name = "InvalidFilterFault"
    default_reason = "unknown filter"

    def __init__(self, reason: str | None, unknown_filters: list[str]) -> None:
        if not unknown_filters:
            raise ValueError("InvalidFilterFault must name at least one unknown filter (b-2.xsd)")
        super().__init__(reason)
        self.unknown_filters = unknown_filters  # Clark names

    def extra_elements(self) -> list[tuple[str, str]]:
        return [(ns.qname(ns.WSNT, "UnknownFilter"), q) for q in self.unknown_filters]


class _TimeRangeFault(WsnFault):
    def __init__(self, reason: str | None, minimum: datetime, maximum: datetime | None = None) -> None:
        super().__init__(reason)
        self.minimum, self.maximum = minimum, maximum

    def extra_elements(self) -> list[tuple[str, str]]:
        out = [(ns.qname(ns.WSNT, "MinimumTime"), self.minimum.isoformat())]
        if self.maximum is not None:
            out.append((ns.qname(ns.WSNT, "MaximumTime"), self.maximum.isoformat()))
        return out


class UnacceptableInitialTerminationTimeFault(_TimeRangeFault):
    """``UnacceptableInitialTerminationTimeFault``: the requested lease is outside what the broker grants."""

    local_name = "UnacceptableInitialTerminationTimeFault"
    default_reason = "unacceptable initial termination time"


class UnacceptableTerminationTimeFault(_TimeRangeFault):
    """``UnacceptableTerminationTimeFault``: the Renew asks for a time outside what the broker grants."""

    local_name = "UnacceptableTerminationTimeFault"
    default_reason = "unacceptable termination time"


InvalidResourcePropertyQNameFault = _fault("InvalidResourcePropertyQNameFault", "unknown resource property",
                                           namespace=ns.WSRF_RP)
#: the WS-BaseFaults ErrorCode dialect under which SequenceOutOfRangeFault gives the oldest retained number
OLDEST_RETAINED_DIALECT = "urn:hiem:broker:1:oldest-retained-sequence"


class SequenceOutOfRangeFault(WsnFault):
    """hiem's own (namespace ``urn:hiem:broker:1``): a replay asked for sequence numbers that are no longer
    retained. The oldest number still available travels in ``wsrf-bf:ErrorCode`` (dialect
    :data:`OLDEST_RETAINED_DIALECT`), where BaseFaultType keeps machine-readable codes."""

    namespace = ns.HIEM
    local_name = "SequenceOutOfRangeFault"
    default_reason = "sequence number outside the retention window"

    def __init__(self, reason: str | None = None, *, oldest: int | None = None) -> None:
        super().__init__(reason)
        self.oldest = oldest

    def detail(self, now: datetime | None = None) -> etree._Element:
        element = super().detail(now)
        if self.oldest is not None:
            code = etree.Element(ns.qname(ns.WSRF_BF, "ErrorCode"), dialect=OLDEST_RETAINED_DIALECT)
            code.text = str(self.oldest)
            element.find(ns.qname(ns.WSRF_BF, "Timestamp")).addnext(code)  # BaseFaultType's order
        return element

ALL_FAULTS: tuple[type[WsnFault], ...] = tuple(
    cls for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, WsnFault) and cls not in (WsnFault, _TimeRangeFault)
)
