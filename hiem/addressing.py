"""WS-Addressing 1.0 (W3C 2005/08): endpoint references and message addressing headers.

Two jobs, both at the protocol edge:

* read and write ``wsa:EndpointReferenceType`` elements (ConsumerReference, SubscriptionReference). An
  :class:`EndpointReference` keeps its reference parameters as serialized XML bytes so the middle of the
  broker stores and passes them around without touching lxml;
* read the addressing headers of a request and build the headers of a message we send, applying the
  SOAP binding rule (WS-Addressing SOAP Binding §2.3, which HIEM v2.0 §3.1.3/§3.1.4 cite): every reference
  parameter of the target EPR becomes a SOAP header block marked ``wsa:IsReferenceParameter="true"``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from lxml import etree

from hiem import ns, xmlsafe

_ADDRESS = ns.qname(ns.WSA, "Address")
_REFPARAMS = ns.qname(ns.WSA, "ReferenceParameters")
_IS_REFPARAM = ns.qname(ns.WSA, "IsReferenceParameter")
FAULT_ACTION = "http://www.w3.org/2005/08/addressing/soap/fault"


class EprError(ValueError):
    """An element that should be an EndpointReference is not one (missing or empty wsa:Address)."""


@dataclass(frozen=True)
class EndpointReference:
    """A WS-Addressing EPR: the address plus reference parameters as a serialized ``wsa:ReferenceParameters``.

    ``reference_parameters`` is b"" when the EPR has none. ``metadata`` likewise keeps ``wsa:Metadata``.
    """

    address: str
    reference_parameters: bytes = b""
    metadata: bytes = b""

    def parameter_elements(self) -> list[etree._Element]:
        """Fresh copies of the reference parameter elements (each a header block candidate)."""
        if not self.reference_parameters:
            return []
        holder = xmlsafe.parse(self.reference_parameters)
        return [child for child in holder if isinstance(child.tag, str)]


def make_message_id() -> str:
    """A fresh ``urn:uuid:`` message id, the form WS-Addressing examples use."""
    return f"urn:uuid:{uuid.uuid4()}"


def parse_epr(element: etree._Element) -> EndpointReference:
    """Read an element of ``wsa:EndpointReferenceType`` into an EndpointReference."""
    address_el = element.find(_ADDRESS)
    if address_el is None:
        raise EprError(f"{etree.QName(element).localname} has no wsa:Address")
    address = (address_el.text or "").strip()
    if not address:
        raise EprError(f"{etree.QName(element).localname} has an empty wsa:Address")
    params = element.find(_REFPARAMS)
    metadata = element.find(ns.qname(ns.WSA, "Metadata"))
    return EndpointReference(
        address=address,
        reference_parameters=_serialize(params),
        metadata=_serialize(metadata),
    )


def _serialize(element: etree._Element | None) -> bytes:
    if element is None or not any(isinstance(c.tag, str) for c in element):
        return b""
    # tostring of a subelement carries the in-scope namespace declarations it needs.
    return etree.tostring(element, encoding="utf-8")


def epr_element(tag: str, epr: EndpointReference, nsmap: dict[str | None, str] | None = None) -> etree._Element:
    """Build ``<tag><wsa:Address/>[<wsa:ReferenceParameters/>]</tag>`` from an EPR."""
    element = etree.Element(tag, nsmap=nsmap or {"wsa": ns.WSA})
    etree.SubElement(element, _ADDRESS).text = epr.address
    if epr.reference_parameters:
        element.append(xmlsafe.parse(epr.reference_parameters))
    if epr.metadata:
        element.append(xmlsafe.parse(epr.metadata))
    return element


@dataclass(frozen=True)
class AddressingHeaders:
    """The WS-Addressing headers of a received message (all optional on the wire)."""

    action: str | None = None
    message_id: str | None = None
    to: str | None = None
    relates_to: str | None = None
    reply_to: str | None = None


def read_headers(headers: Sequence[etree._Element]) -> AddressingHeaders:
    """Pick the wsa headers out of a SOAP Header's children (other headers are ignored here)."""
    values: dict[str, str] = {}
    for header in headers:
        if not isinstance(header.tag, str):
            continue
        qname = etree.QName(header)
        if qname.namespace != ns.WSA:
            continue
        if qname.localname in {"Action", "MessageID", "To", "RelatesTo"}:
            values[qname.localname] = (header.text or "").strip()
        elif qname.localname == "ReplyTo":
            address = header.find(_ADDRESS)
            if address is not None and address.text:
                values["ReplyTo"] = address.text.strip()
    return AddressingHeaders(
        action=values.get("Action"),
        message_id=values.get("MessageID"),
        to=values.get("To"),
        relates_to=values.get("RelatesTo"),
        reply_to=values.get("ReplyTo"),
    )


def request_headers(
    *, to: str, action: str, message_id: str, reference_parameters: Sequence[etree._Element] = ()
) -> list[etree._Element]:
    """Headers for a message sent to an EPR: wsa:To, wsa:Action, wsa:MessageID, then each reference
    parameter as its own header block with ``wsa:IsReferenceParameter="true"`` (WS-Addr SOAP §2.3)."""
    blocks = [_text(ns.WSA, "To", to), _text(ns.WSA, "Action", action), _text(ns.WSA, "MessageID", message_id)]
    for parameter in reference_parameters:
        parameter.set(_IS_REFPARAM, "true")
        blocks.append(parameter)
    return blocks


def reply_headers(*, action: str, relates_to: str | None) -> list[etree._Element]:
    """Headers for a reply: wsa:Action, a fresh wsa:MessageID and wsa:RelatesTo the request's id."""
    blocks = [_text(ns.WSA, "Action", action), _text(ns.WSA, "MessageID", make_message_id())]
    if relates_to:
        blocks.append(_text(ns.WSA, "RelatesTo", relates_to))
    return blocks


def _text(namespace: str, local: str, text: str) -> etree._Element:
    element = etree.Element(ns.qname(namespace, local), nsmap={"wsa": ns.WSA})
    element.text = text
    return element
