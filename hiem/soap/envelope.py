"""SOAP 1.1 and SOAP 1.2 envelopes: reading a request safely and writing replies and faults.

The two versions differ only in the envelope namespace, the Content-Type, how the action travels over
HTTP, the fault layout and the HTTP status of a fault (as zeep's Soap11Binding/Soap12Binding do).
A request is answered in the version it arrived in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from lxml import etree

from hiem import ns, xmlsafe
from hiem.addressing import AddressingHeaders, read_headers
from hiem.errors import XmlRejected


class SoapVersion(Enum):
    """The two SOAP versions, with everything that differs between them."""

    SOAP11 = ns.SOAP11
    SOAP12 = ns.SOAP12

    @property
    def namespace(self) -> str:
        return self.value

    @property
    def content_type(self) -> str:
        if self is SoapVersion.SOAP11:
            return "text/xml; charset=utf-8"
        return "application/soap+xml; charset=utf-8"

    @property
    def prefix(self) -> str:
        return "soapenv" if self is SoapVersion.SOAP11 else "s"

    def qname(self, local: str) -> str:
        return ns.qname(self.value, local)

    def http_headers(self, action: str) -> dict[str, str]:
        """Headers for sending a request: SOAP 1.1 puts the action in SOAPAction, 1.2 in Content-Type."""
        if self is SoapVersion.SOAP11:
            return {"Content-Type": self.content_type, "SOAPAction": f'"{action}"'}
        return {"Content-Type": f'application/soap+xml; charset=utf-8; action="{action}"'}

    @classmethod
    def from_content_type(cls, content_type: str | None) -> SoapVersion | None:
        media = (content_type or "").split(";", 1)[0].strip().lower()
        if media == "application/soap+xml":
            return cls.SOAP12
        if media == "text/xml":
            return cls.SOAP11
        return None


class EnvelopeError(ValueError):
    """The bytes are XML but not a usable SOAP envelope; ``version`` is the best guess for the reply."""

    def __init__(self, reason: str, version: SoapVersion, *, version_mismatch: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.version = version
        self.version_mismatch = version_mismatch


@dataclass(frozen=True)
class SoapRequest:
    """A parsed SOAP request: the version, header blocks, the single body element and HTTP context."""

    version: SoapVersion
    headers: tuple[etree._Element, ...]
    body: etree._Element
    addressing: AddressingHeaders
    http_action: str | None = None
    path_id: str | None = None
    remote_addr: str | None = None
    base_url: str = ""
    #: what the security check established (a hiem.security.SecurityResult), None before it ran
    security: Any = None

    @property
    def action(self) -> str | None:
        """wsa:Action when present, else the HTTP-level action (SOAPAction / Content-Type action=)."""
        return self.addressing.action or self.http_action


_ACTION_PARAM = re.compile(r';\s*action\s*=\s*"?([^";]*)"?', re.IGNORECASE)


@dataclass(frozen=True)
class SoapReply:
    """What an operation answers: a body element with its wsa:Action, or ``body=None`` for one-way (202)."""

    action: str
    body: etree._Element | None


def http_action(content_type: str | None, soap_action_header: str | None) -> str | None:
    """The action a client put in HTTP: SOAP 1.1 ``SOAPAction`` or SOAP 1.2 ``action=`` media parameter."""
    if soap_action_header:
        value = soap_action_header.strip().strip('"').strip()
        if value:
            return value
    match = _ACTION_PARAM.search(content_type or "")
    return match.group(1).strip() if match and match.group(1).strip() else None


def parse_request(
    raw: bytes,
    *,
    content_type: str | None,
    soap_action: str | None = None,
    limits: xmlsafe.XmlLimits = xmlsafe.DEFAULT_LIMITS,
    path_id: str | None = None,
    remote_addr: str | None = None,
    base_url: str = "",
) -> SoapRequest:
    """Parse and check a request envelope; raise XmlRejected or EnvelopeError (both become faults)."""
    guessed = SoapVersion.from_content_type(content_type) or SoapVersion.SOAP11
    try:
        root = xmlsafe.parse(raw, limits)
    except XmlRejected as exc:
        raise EnvelopeError(exc.reason, guessed) from exc
    qname = etree.QName(root)
    if qname.localname != "Envelope":
        raise EnvelopeError(f"the document element is {qname.localname}, not a SOAP Envelope", guessed)
    try:
        version = SoapVersion(qname.namespace)
    except ValueError:
        raise EnvelopeError(
            f"unsupported SOAP envelope namespace {qname.namespace!r}", guessed, version_mismatch=True
        ) from None
    _check_no_processing_instructions(root, version)
    header_el, body_el = _envelope_parts(root, version)
    children = [c for c in body_el if isinstance(c.tag, str)]
    if len(children) != 1:
        raise EnvelopeError(f"the SOAP Body must hold exactly one element, found {len(children)}", version)
    headers = tuple(c for c in (header_el if header_el is not None else ()) if isinstance(c.tag, str))
    return SoapRequest(
        version=version,
        headers=headers,
        body=children[0],
        addressing=read_headers(headers),
        http_action=http_action(content_type, soap_action),
        path_id=path_id,
        remote_addr=remote_addr,
        base_url=base_url,
    )


def _envelope_parts(root: etree._Element, version: SoapVersion) -> tuple[etree._Element | None, etree._Element]:
    """An optional Header, then exactly one Body, and nothing else (SOAP 1.2 Part 1 §5.1; SOAP 1.1 allows
    namespace-qualified elements after the Body, which hiem does not use, so they are refused too)."""
    children = [c for c in root if isinstance(c.tag, str)]
    names = [etree.QName(c).localname if etree.QName(c).namespace == version.namespace else c.tag for c in children]
    if "Body" not in names:
        raise EnvelopeError("the SOAP Envelope has no Body", version)
    if names.count("Body") != 1:
        raise EnvelopeError(f"the SOAP Envelope must hold exactly one Body, found {names.count('Body')}", version)
    if names not in (["Body"], ["Header", "Body"]):
        raise EnvelopeError("the SOAP Envelope may hold only a Header followed by the Body", version)
    return (children[0] if len(children) == 2 else None), children[-1]


def _check_no_processing_instructions(root: etree._Element, version: SoapVersion) -> None:
    # SOAP 1.1 §3: a message MUST NOT contain processing instructions; SOAP 1.2 Part 1 §5: fault them.
    if any(isinstance(n, etree._ProcessingInstruction) for n in root.itersiblings(preceding=True)) or \
            root.xpath("boolean(//processing-instruction())"):
        raise EnvelopeError("SOAP messages must not contain processing instructions", version)


def build_envelope(
    version: SoapVersion, headers: Sequence[etree._Element], body: Sequence[etree._Element]
) -> etree._Element:
    """An Envelope with the given header blocks (Header omitted when none) and body children."""
    envelope = etree.Element(version.qname("Envelope"), nsmap={version.prefix: version.namespace})
    if headers:
        header_el = etree.SubElement(envelope, version.qname("Header"))
        for block in headers:
            header_el.append(block)
    body_el = etree.SubElement(envelope, version.qname("Body"))
    for child in body:
        body_el.append(child)
    return envelope


def serialize(envelope: etree._Element) -> bytes:
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
