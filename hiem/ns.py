"""Every XML namespace URI hiem speaks, written once.

The prefixes in NSMAP are the ones the HIEM v2.0 specification uses in its tables and samples.
"""

from __future__ import annotations

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
WSNT = "http://docs.oasis-open.org/wsn/b-2"
WSNT_BR = "http://docs.oasis-open.org/wsn/br-2"
WSTOP = "http://docs.oasis-open.org/wsn/t-1"
WSRF_BF = "http://docs.oasis-open.org/wsrf/bf-2"
WSRF_R = "http://docs.oasis-open.org/wsrf/r-2"
WSRF_RP = "http://docs.oasis-open.org/wsrf/rp-2"
NHIN = "http://www.hhs.gov/healthit/nhin"
XML = "http://www.w3.org/XML/1998/namespace"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
SAML2 = "urn:oasis:names:tc:SAML:2.0:assertion"
#: hiem's own extension namespace (sequence numbers, replay, heartbeats).
HIEM = "urn:hiem:broker:1"

NSMAP: dict[str, str] = {
    "wsnt": WSNT,
    "wsa": WSA,
    "wstop": WSTOP,
    "wsrf-bf": WSRF_BF,
    "nhin": NHIN,
}


def qname(namespace: str, local: str) -> str:
    """Clark notation ``{namespace}local``, the form lxml uses for tags."""
    return f"{{{namespace}}}{local}"
