"""Writing faults: WS-N faults (with their WS-BaseFaults detail) and plain SOAP faults, in both versions.

SOAP 1.2 faults carry Code/Value (+ Subcode for WS-Addressing faults), Reason/Text and Detail; SOAP 1.1
faults carry faultcode (Client/Server), faultstring and detail. The HTTP status follows each binding:
SOAP 1.1 uses 500 for every fault; SOAP 1.2 uses 400 for Sender and 500 for Receiver.
"""

from __future__ import annotations

from datetime import UTC, datetime

from lxml import etree

from hiem import ns
from hiem.errors import HiemError
from hiem.soap.envelope import SoapVersion, build_envelope
from hiem.wsn.faults import SoapCode, WsnFault


class SoapFault(HiemError):
    """A fault below WS-N: malformed envelope, unknown action, missing header, server trouble.

    ``subcode`` is a Clark-notation QName such as WS-Addressing's ``wsa:ActionNotSupported``.
    """

    def __init__(
        self, reason: str, code: SoapCode = SoapCode.SENDER, *, subcode: str | None = None,
        version_mismatch: bool = False, http_status: int | None = None, security_alert: bool = False,
    ) -> None:
        super().__init__(reason)
        #: the refusal is a security event (failed authentication, signature, replay, authorization)
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


def base_fault_detail(fault: WsnFault, now: datetime | None = None) -> etree._Element:
    """The WS-N fault element: BaseFaultType's Timestamp and Description, then the type's own elements."""
    element = etree.Element(fault.qname, nsmap={"wsnt": ns.WSNT, "wsrf-bf": ns.WSRF_BF, "wsrf-r": ns.WSRF_R})
    stamp = (now or datetime.now(UTC)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    etree.SubElement(element, ns.qname(ns.WSRF_BF, "Timestamp")).text = stamp
    description = etree.SubElement(element, ns.qname(ns.WSRF_BF, "Description"))
    description.set(ns.qname(ns.XML, "lang"), "en")
    description.text = fault.reason
    for tag, text in fault.extra_elements():
        if tag.endswith("}UnknownFilter") and text.startswith("{"):
            # xsd:QName content needs its prefix in scope. Reuse a prefix the fault element already
            # binds (lxml would drop a second declaration of the same namespace), else declare "uf".
            namespace, local = text[1:].split("}", 1)
            bound = next((p for p, u in element.nsmap.items() if u == namespace and p), None)
            child = etree.SubElement(element, tag) if bound else etree.SubElement(element, tag, nsmap={"uf": namespace})
            child.text = f"{bound or 'uf'}:{local}"
        else:
            etree.SubElement(element, tag).text = text
    return element


def fault_envelope(version: SoapVersion, fault: WsnFault | SoapFault, headers=()) -> etree._Element:
    """A complete fault envelope in ``version``."""
    detail = base_fault_detail(fault) if isinstance(fault, WsnFault) else None
    code = fault.code
    subcode = getattr(fault, "subcode", None)
    if version is SoapVersion.SOAP12:
        body = _fault12(fault.reason, code, subcode, detail, getattr(fault, "version_mismatch", False))
    else:
        body = _fault11(fault.reason, code, detail, getattr(fault, "version_mismatch", False))
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


def fault_http_status(version: SoapVersion, fault: WsnFault | SoapFault) -> int:
    explicit = getattr(fault, "http_status", None)
    if explicit:
        return explicit
    if version is SoapVersion.SOAP12 and fault.code is SoapCode.SENDER:
        return 400
    return 500
