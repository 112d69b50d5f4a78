"""SOAP 1.1/1.2 edge of hiem; the only package that imports spyne."""

from hiem.soap.edge import Operation, SoapEndpoint
from hiem.soap.envelope import SoapReply, SoapRequest, SoapVersion, build_envelope, parse_request, serialize
from hiem.soap.faults import SoapFault, fault_envelope

__all__ = [
    "Operation",
    "SoapEndpoint",
    "SoapFault",
    "SoapReply",
    "SoapRequest",
    "SoapVersion",
    "build_envelope",
    "fault_envelope",
    "parse_request",
    "serialize",
]
