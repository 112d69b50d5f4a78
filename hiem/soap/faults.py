"""Writing faults: WS-N faults (with their WS-BaseFaults detail) and plain SOAP faults, in both versions.

SOAP 1.2 faults carry Code/Value (+ Subcode for WS-Addressing faults), Reason/Text and Detail; SOAP 1.1
faults carry faultcode (Client/Server), faultstring and detail. The HTTP status follows each binding:
SOAP 1.1 uses 500 for every fault; SOAP 1.2 uses 400 for Sender and 500 for Receiver.
"""

from __future__ import annotations

from enum import Enum

from lxml import etree

from hiem import ns
from hiem.errors import HiemError
from hiem.soap.envelope import SoapVersion, build_envelope


class SoapCode(str, Enum):
    """Who is to blame, in SOAP 1.2 terms (SOAP 1.1 spells them Client and Server)."""

    SENDER = "Sender"
    RECEIVER = "Receiver"


class Fault(HiemError):
    """Every fault the edge writes: a reason, who is to blame and, for typed faults, a Detail element.

    Subclasses above this layer (WS-N's faults) supply :meth:`detail`; the edge knows nothing else of them.
    """

    reason: str
    code: SoapCode = SoapCode.SENDER
    #: a Clark-notation QName such as WS-Addressing's ``wsa:ActionNotSupported``
    subcode: str | None = None
    version_mismatch: bool = False
    http_status: int | None = None
    #: the refusal is a security event (failed authentication, signature, replay, authorization)
    security_alert: bool = False

    def detail(self) -> etree._Element | None:
        return None


class SoapFault(Fault):
    """A fault below WS-N: malformed envelope, unknown action, missing header, server trouble."""

    def __init__(
        self, reason: str, code: SoapCode = SoapCode.SENDER, *, subcode: str | None = None,
        version_mismatch: bool = False, http_status: int | None = None, security_alert: bool = False,
    ) -> None:
        super().__init__(reason)
        self.security_alert = security_alert
        self.reason = reason
        self.code = code
        self.subcode = subcode
        self.version_mismatch = version_mismatch
        self.http_status = http_status


def action_not_supported(action: str | None) -> SoapFault:
    return SoapFault(
        f"the action {action!r} is not supported at this endpoint",
        subcode=ns.qname(ns.WSA, "ActionNotSupported"),
    )


def fault_envelope(version: SoapVersion, fault: Fault, headers=()) -> etree._Element:
    """A complete fault envelope in ``version``."""
    detail = fault.detail()
    if version is SoapVersion.SOAP12:
        body = _fault12(fault.reason, fault.code, fault.subcode, detail, fault.version_mismatch)
    else:
        body = _fault11(fault.reason, fault.code, detail, fault.version_mismatch)
    return build_envelope(version, list(headers), [body])


def _fault12(reason, code: SoapCode, subcode, detail, mismatch: bool) -> etree._Element:
    v = SoapVersion.SOAP12
    fault = etree.Element(v.qname("Fault"), nsmap={"s": ns.SOAP12})
    code_el = etree.SubElement(fault, v.qname("Code"))
    value = "s:VersionMismatch" if mismatch else f"s:{code.value}"
    etree.SubElement(code_el, v.qname("Value")).text = value
    if subcode:
        namespace, local = subcode[1:].split("}", 1)
        sub = etree.SubElement(code_el, v.qname("Subcode"), nsmap={"sc": namespace})
        etree.SubElement(sub, v.qname("Value")).text = f"sc:{local}"
    reason_el = etree.SubElement(fault, v.qname("Reason"))
    text = etree.SubElement(reason_el, v.qname("Text"))
    text.set(ns.qname(ns.XML, "lang"), "en")
    text.text = reason
    if detail is not None:
        etree.SubElement(fault, v.qname("Detail")).append(detail)
    return fault


def _fault11(reason, code: SoapCode, detail, mismatch: bool) -> etree._Element:
    v = SoapVersion.SOAP11
    fault = etree.Element(v.qname("Fault"), nsmap={"soapenv": ns.SOAP11})
    faultcode = "VersionMismatch" if mismatch else ("Client" if code is SoapCode.SENDER else "Server")
    etree.SubElement(fault, "faultcode").text = f"soapenv:{faultcode}"
    etree.SubElement(fault, "faultstring").text = reason
    if detail is not None:
        etree.SubElement(fault, "detail").append(detail)
    return fault


def fault_http_status(version: SoapVersion, fault: Fault) -> int:
    if fault.http_status:
        return fault.http_status
    if version is SoapVersion.SOAP12 and fault.code is SoapCode.SENDER:
        return 400
    return 500
