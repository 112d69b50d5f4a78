"""The SOAP edge: one WSGI application per WS-N endpoint, SOAP 1.1 and 1.2, on lxml alone.

Every request goes through the same steps, in this order:

1. size limit on the raw body (refused before any parsing);
2. one hardened parse and the envelope checks (:func:`hiem.soap.envelope.parse_request`);
3. operation lookup by body element, and the WS-Addressing action check;
4. WS-Security verification of the whole envelope, when a verifier is configured;
5. the operation's handler gets the parsed :class:`SoapRequest` and returns a :class:`SoapReply` or
   raises a fault;
6. the reply envelope (with wsa:Action, wsa:MessageID, wsa:RelatesTo) or the fault envelope is written.

The document parsed in step 2 is the one every later step reads: nothing is serialized and parsed again.
One-way operations (Notify) answer 202 with an empty body, as the SOAP 1.2 HTTP binding and WS-I BP allow.
The WSDLs served are the OASIS ones (``hiem/data/wsdl``), not generated from code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lxml import etree

from hiem import addressing, ns
from hiem.errors import HiemError
from hiem.soap.envelope import (
    EnvelopeError,
    SoapReply,
    SoapRequest,
    SoapVersion,
    build_envelope,
    parse_request,
)
from hiem.soap.envelope import serialize as serialize_envelope
from hiem.soap.faults import Fault, SoapCode, SoapFault, action_not_supported, fault_envelope, fault_http_status
from hiem.xmlsafe import XmlLimits

log = logging.getLogger(__name__)

Handler = Callable[[SoapRequest], SoapReply]
#: checks a whole request envelope (WS-Security, SAML); returns what it established or raises a HiemError
Verifier = Callable[[etree._Element], Any]
#: Called with (request, fault) for every fault returned, so the audit trail can record refusals.
FaultObserver = Callable[[SoapRequest | None, Fault], None]

_STATUS = {200: "200 OK", 202: "202 Accepted", 400: "400 Bad Request", 413: "413 Payload Too Large",
           415: "415 Unsupported Media Type", 500: "500 Internal Server Error", 503: "503 Service Unavailable"}


@dataclass(frozen=True)
class Operation:
    """One operation of an endpoint: its body element (Clark name), accepted actions, handler."""

    element: str
    actions: frozenset[str]
    handler: Handler


@dataclass
class _Outcome:
    status: int
    body: bytes
    content_type: str


class SoapEndpoint:
    """A WSGI application serving one endpoint's operations in SOAP 1.1 and 1.2."""

    def __init__(
        self, name: str, operations: Sequence[Operation], limits: XmlLimits,
        fault_observer: FaultObserver | None = None, verifier: Verifier | None = None,
    ) -> None:
        self.name = name
        self.verifier = verifier
        self.limits = limits
        self.operations = {op.element: op for op in operations}
        self.fault_observer = fault_observer

    # -- WSGI -------------------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        content_type = environ.get("CONTENT_TYPE")
        version = SoapVersion.from_content_type(content_type) or SoapVersion.SOAP11
        raw, too_big = _read_body(environ, self.limits.max_bytes)
        if too_big:
            fault = SoapFault(f"request body exceeds the limit of {self.limits.max_bytes} bytes", http_status=413)
            return self._respond(start_response, self._fault(version, fault, None))
        try:
            request = parse_request(
                raw, content_type=content_type, soap_action=environ.get("HTTP_SOAPACTION"),
                limits=self.limits, path_id=environ.get("hiem.path_id"),
                remote_addr=environ.get("REMOTE_ADDR"), base_url=environ.get("hiem.base_url", ""),
            )
        except EnvelopeError as exc:
            # SOAP 1.2 Part 2 §7.5.2.2: VersionMismatch travels with HTTP 500
            fault = SoapFault(exc.reason, version_mismatch=exc.version_mismatch,
                              http_status=500 if exc.version_mismatch else None)
            return self._respond(start_response, self._fault(exc.version, fault, None))
        operation = self.operations.get(request.body.tag)
        if operation is None:
            fault = SoapFault(
                f"{etree.QName(request.body).localname} is not an operation of the {self.name} endpoint",
                subcode=ns.qname(ns.WSA, "ActionNotSupported") if request.action else None,
            )
            return self._respond(start_response, self._fault(request.version, fault, request))
        if request.action and request.action not in operation.actions:
            return self._respond(start_response, self._fault(request.version,
                                                             action_not_supported(request.action), request))
        if self.verifier is not None:
            try:
                request = replace(request, security=self.verifier(request.body.getroottree().getroot()))
            except HiemError as exc:  # hiem.security.SecurityError: refused, audited as a security alert
                fault = SoapFault(getattr(exc, "reason", str(exc)), subcode=getattr(exc, "subcode", None),
                                  security_alert=True)
                return self._respond(start_response, self._fault(request.version, fault, request))
        return self._respond(start_response, self._run(request))

    def _run(self, request: SoapRequest) -> _Outcome:
        operation = self.operations[request.body.tag]
        try:
            reply = operation.handler(request)
        except Fault as fault:
            return self._fault(request.version, fault, request)
        except Exception:
            log.exception("%s handler failed", self.name)
            fault = SoapFault("internal error; the request was not processed", SoapCode.RECEIVER)
            return self._fault(request.version, fault, request)
        if reply.body is None:
            return _Outcome(202, b"", request.version.content_type)
        headers = addressing.reply_headers(action=reply.action, relates_to=request.addressing.message_id)
        envelope = build_envelope(request.version, headers, [reply.body])
        return _Outcome(200, serialize_envelope(envelope), request.version.content_type)

    def _fault(self, version: SoapVersion, fault: Fault, request: SoapRequest | None) -> _Outcome:
        if self.fault_observer is not None:
            try:
                self.fault_observer(request, fault)
            except Exception:
                log.exception("fault observer failed")
        headers = addressing.reply_headers(
            action=addressing.FAULT_ACTION, relates_to=request.addressing.message_id if request else None
        )
        envelope = fault_envelope(version, fault, headers)
        return _Outcome(fault_http_status(version, fault), serialize_envelope(envelope), version.content_type)

    @staticmethod
    def _respond(start_response: Callable[..., Any], outcome: _Outcome) -> list[bytes]:
        start_response(_STATUS.get(outcome.status, f"{outcome.status} Status"), _headers(outcome))
        return [outcome.body]


def _headers(outcome: _Outcome) -> list[tuple[str, str]]:
    headers = [("Content-Length", str(len(outcome.body)))]
    if outcome.body:
        headers.append(("Content-Type", outcome.content_type))
    return headers


def _read_body(environ: dict[str, Any], limit: int) -> tuple[bytes, bool]:
    """Read at most ``limit`` bytes; report a larger body without reading it all into memory."""
    stream = environ["wsgi.input"]
    try:
        declared = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        declared = -1
    if declared > limit:
        return b"", True
    data = stream.read(limit + 1) if declared < 0 else stream.read(declared)
    return data, len(data) > limit
