"""The SOAP edge: one WSGI application per WS-N endpoint, SOAP 1.1 and 1.2, built on spyne.

The order every request goes through is fixed, as in zeep's ``SoapBinding.process_reply``:

1. size limit on the raw body (refused before any parsing);
2. hardened parse and envelope checks (:func:`hiem.soap.envelope.parse_request`);
3. operation lookup by body element, and the WS-Addressing action check;
4. spyne dispatches to the operation (one spyne ``Application`` per SOAP version, since spyne keeps the
   protocol per application); the operation handler gets a :class:`SoapRequest` and returns a
   :class:`SoapReply` or raises a WS-N fault;
5. the reply envelope (with wsa:Action, wsa:MessageID, wsa:RelatesTo) or the fault envelope is written.

Why spyne's own output is replaced: spyne wraps an AnyXml return value in its own response element and
writes SOAP 1.2 faults with an empty Role and non-QName subcodes (STACK.md). We therefore let spyne do
the dispatch and the HTTP plumbing, and put our own bytes in ``ctx.out_string`` from the ``wsgi_return``
event. One-way operations (Notify) answer 202 with an empty body, as the SOAP 1.2 HTTP binding and
WS-I BP allow, because spyne's ``_is_async`` produces WSDL zeep cannot load.

Nothing outside ``hiem.soap`` imports spyne.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import spyne.const
from lxml import etree
from spyne import AnyXml, Application, ServiceBase, rpc
from spyne.protocol.soap import Soap11, Soap12
from spyne.server.wsgi import WsgiApplication

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
from hiem.soap.faults import SoapFault, action_not_supported, fault_envelope, fault_http_status
from hiem.wsn.faults import SoapCode, WsnFault
from hiem.xmlsafe import XmlLimits

log = logging.getLogger(__name__)

Handler = Callable[[SoapRequest], SoapReply]
#: checks a whole request envelope (WS-Security, SAML); returns what it established or raises a HiemError
Verifier = Callable[[etree._Element], Any]
#: Called with (request, fault) for every fault returned, so the audit trail can record refusals.
FaultObserver = Callable[[SoapRequest | None, WsnFault | SoapFault], None]

#: spyne's MethodContext.close() runs a full ``gc.collect()`` at most once a second, to hand back the file
#: descriptors of uploaded attachments promptly. hiem takes no attachments, and a full collection of a
#: broker's heap (topic trees, Celery, SQLAlchemy) holds the GIL for tens of milliseconds: every request in
#: flight, and in embedded mode every delivery, waited for it once a second. Python's own generational
#: collector still runs as usual.
spyne.const.MIN_GC_INTERVAL = math.inf

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
        # spyne keys operations by "{application tns}element", so each body-element namespace needs an
        # application of its own (WS-N ops, WS-ResourceProperties ops, hiem's extensions).
        namespaces = {etree.QName(element).namespace for element in self.operations}
        self._apps = {(version, namespace): self._spyne_app(version, namespace)
                      for version in SoapVersion for namespace in namespaces}

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
        # Hand over to spyne for dispatch; the parsed request travels in the WSGI environ.
        # spyne decodes with the Content-Type charset, which a client may get wrong: give it the document we
        # already parsed, re-serialized as UTF-8 with a matching Content-Type.
        normalized = etree.tostring(request.body.getroottree().getroot(), encoding="utf-8")
        environ["hiem.request"] = request
        environ["wsgi.input"] = io.BytesIO(normalized)
        environ["CONTENT_LENGTH"] = str(len(normalized))
        environ["CONTENT_TYPE"] = request.version.content_type
        environ["REQUEST_METHOD"] = "POST"
        environ["QUERY_STRING"] = ""
        namespace = etree.QName(request.body).namespace
        return self._apps[(request.version, namespace)](environ, start_response)

    # -- spyne wiring -----------------------------------------------------------------------------------
    def _spyne_app(self, version: SoapVersion, namespace: str | None) -> WsgiApplication:
        endpoint = self
        methods: dict[str, Any] = {}
        mine = [element for element in self.operations if etree.QName(element).namespace == namespace]
        for index, element in enumerate(mine):

            def operation(ctx: Any, _body: Any) -> None:
                ctx.udc = endpoint._run(ctx.transport.req_env["hiem.request"])
                return None

            # spyne keys methods by function name: give each operation its own.
            operation.__name__ = operation.__qualname__ = f"op{index}"
            methods[f"op{index}"] = rpc(AnyXml, _body_style="bare", _in_message_name=element,
                                        _returns=AnyXml)(operation)
        label = f"{self.name}{version.name}{abs(hash(namespace)) % 10_000}"
        service = type(label, (ServiceBase,), methods)
        protocol_cls = Soap11 if version is SoapVersion.SOAP11 else Soap12
        app = Application(
            [service], tns=namespace, name=label,
            in_protocol=protocol_cls(validator=None), out_protocol=protocol_cls(),
        )
        wsgi = WsgiApplication(app)
        wsgi.event_manager.add_listener("wsgi_return", _write_outcome)
        wsgi.event_manager.add_listener("wsgi_exception", self._spyne_failed)
        return wsgi

    def _spyne_failed(self, ctx: Any) -> None:
        # spyne refused the request itself (should not happen after our checks): answer in our format.
        request = ctx.transport.req_env.get("hiem.request")
        version = request.version if request else SoapVersion.SOAP11
        log.error("spyne could not process a %s request: %s", self.name, ctx.in_error or ctx.out_error)
        ctx.udc = self._fault(version, SoapFault("the request could not be processed", SoapCode.RECEIVER), request)
        _write_outcome(ctx)

    def _run(self, request: SoapRequest) -> _Outcome:
        operation = self.operations[request.body.tag]
        try:
            reply = operation.handler(request)
        except (WsnFault, SoapFault) as fault:
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

    def _fault(self, version: SoapVersion, fault: WsnFault | SoapFault, request: SoapRequest | None) -> _Outcome:
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


def _write_outcome(ctx: Any) -> None:
    outcome: _Outcome | None = ctx.udc
    if outcome is None:
        return
    ctx.out_string = [outcome.body]
    ctx.transport.resp_code = _STATUS.get(outcome.status, f"{outcome.status} Status")
    ctx.transport.resp_headers.pop("Content-Type", None)
    ctx.transport.resp_headers.pop("Content-Length", None)
    ctx.transport.resp_headers.update(dict(_headers(outcome)))


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
