"""The WSGI application: routes /wsn/* to the SOAP endpoints, serves the WSDLs, answers /healthz.

Routes:

=========================================== ==================================================
``POST /wsn/NotificationProducer``          Subscribe
``POST /wsn/SubscriptionManager[/{id}]``    Unsubscribe (id from nhin:SubscriptionId or the path)
``POST /wsn/NotificationBroker``            Notify from publishers
``POST /wsn/PullPoint[/{id}]``              CreatePullPoint; GetMessages, DestroyPullPoint (hiem:PullPointId)
``GET  /wsn/{endpoint}?wsdl``               the endpoint's WSDL (imports the OASIS bw-2/brw-2)
``GET  /wsdl/{file}``                       the imported WSDL/XSD files
``GET  /healthz``                           200 + JSON when database and broker answer, else 503
``/ops[/*]``, ``GET /metrics``              operators' console and Prometheus metrics (unless --ops-port)
=========================================== ==================================================
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

from sqlalchemy import text

from hiem import contract
from hiem.soap import Operation, SoapEndpoint
from hiem.soap.edge import Verifier
from hiem.store.turns import serving_a_client
from hiem.wsn import broker, manager, messages, producer, pullpoint, refusals
from hiem.wsn.context import ServiceContext

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
BrokerCheck = Callable[[], bool]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def build_endpoints(ctx: ServiceContext, verifier: Verifier | None = None) -> dict[str, SoapEndpoint]:
    limits = ctx.settings.xml_limits

    def observe(request, fault):  # type: ignore[no-untyped-def]
        refusals.audit_refusal(ctx, request, fault)

    def op(element: str, actions: frozenset[str], handler) -> Operation:  # type: ignore[no-untyped-def]
        return Operation(element, actions, lambda request: handler(ctx, request))

    subscribe = op(messages.SUBSCRIBE, frozenset({messages.ACTION_SUBSCRIBE}), producer.subscribe)
    current = op(messages.GET_CURRENT_MESSAGE, frozenset({messages.ACTION_GET_CURRENT_MESSAGE}),
                 producer.get_current_message)
    properties = op(producer.GET_RESOURCE_PROPERTY, frozenset({producer.ACTION_GET_RESOURCE_PROPERTY}),
                    producer.get_resource_property)
    return {
        "NotificationProducer": SoapEndpoint("NotificationProducer", [subscribe, current, properties], limits,
                                             observe, verifier),
        "SubscriptionManager": SoapEndpoint("SubscriptionManager", [
            op(messages.UNSUBSCRIBE, frozenset({messages.ACTION_UNSUBSCRIBE, messages.ACTION_UNSUBSCRIBE_PAUSABLE}),
               manager.unsubscribe),
            op(messages.RENEW, messages.ACTIONS_RENEW, manager.renew),
            op(messages.PAUSE, messages.ACTIONS_PAUSE, manager.pause),
            op(messages.RESUME, messages.ACTIONS_RESUME, manager.resume),
            op(messages.REPLAY, frozenset({messages.ACTION_REPLAY}), manager.replay),
        ], limits, observe, verifier),
        "PullPoint": SoapEndpoint("PullPoint", [
            op(pullpoint.CREATE, frozenset({pullpoint.ACTION_CREATE}), pullpoint.create_pull_point),
            op(pullpoint.GET_MESSAGES, frozenset({pullpoint.ACTION_GET}), pullpoint.get_messages),
            op(pullpoint.DESTROY, frozenset({pullpoint.ACTION_DESTROY}), pullpoint.destroy_pull_point),
        ], limits, observe, verifier),
        # The broker's WSDL (brw-2 NotificationBroker portType) includes Subscribe as well.
        "NotificationBroker": SoapEndpoint("NotificationBroker", [
            op(messages.NOTIFY, frozenset({messages.ACTION_NOTIFY}), broker.notify),
            subscribe,
            current,
        ], limits, observe, verifier),
    }


class HiemApp:
    """The broker's WSGI callable."""

    def __init__(self, ctx: ServiceContext, broker_check: BrokerCheck, ops: WsgiApp | None = None,
                 verifier: Verifier | None = None) -> None:
        self.ctx = ctx
        self.endpoints = build_endpoints(ctx, verifier)
        self.broker_check = broker_check
        self.ops = ops  # ops console + /metrics (hiem.ops); None when served on --ops-port instead

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        base_url = self.ctx.base_url(_request_base_url(environ))
        if path == "/healthz":
            return self._health(start_response)
        if self.ops is not None and (path in {"/ops", "/metrics"} or path.startswith("/ops/")):
            return self.ops(environ, start_response)
        if path.startswith("/wsdl/") and method in {"GET", "HEAD"}:
            document = contract.served_document(path[len("/wsdl/"):], base_url)
            if document is None:
                return _plain(start_response, "404 Not Found", "no such document\n")
            return _send(start_response, "200 OK", document, "text/xml; charset=utf-8")
        if not path.startswith("/wsn/"):
            return _plain(start_response, "404 Not Found", "not found\n")
        name, _, tail = path[len("/wsn/"):].partition("/")
        endpoint = self.endpoints.get(name)
        if endpoint is None or (tail and name not in {"SubscriptionManager", "PullPoint"}):
            return _plain(start_response, "404 Not Found", "no such endpoint\n")
        if method == "GET" and environ.get("QUERY_STRING", "").lower() in {"wsdl", "wsdl="}:
            if name not in contract.SERVICE_WSDLS:
                return _plain(start_response, "404 Not Found", "this endpoint has no WSDL of its own; see bw-2.wsdl\n")
            document = contract.service_wsdl(name, f"{base_url}/wsn/{name}", base_url)
            return _send(start_response, "200 OK", document, "text/xml; charset=utf-8")
        if method != "POST":
            start_response("405 Method Not Allowed", [("Allow", "POST"), ("Content-Type", "text/plain")])
            return [b"POST a SOAP envelope, or GET ?wsdl\n"]
        environ["hiem.path_id"] = unquote(tail) if tail else None
        environ["hiem.base_url"] = base_url
        with serving_a_client():  # ahead of background work for SQLite's writer (hiem.store.turns)
            return endpoint(environ, start_response)

    def _health(self, start_response: StartResponse) -> Iterable[bytes]:
        checks: dict[str, str] = {}
        try:
            with self.ctx.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # any failure means "not healthy"; say which
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            checks["broker"] = "ok" if self.broker_check() else "error: unreachable"
        except Exception as exc:
            checks["broker"] = f"error: {type(exc).__name__}"
        healthy = all(v == "ok" for v in checks.values())
        body = {"status": "ok" if healthy else "unavailable", "mode": "embedded" if self.ctx.settings.embedded
                else "distributed", "dev": self.ctx.settings.dev, **checks}
        return _send(start_response, "200 OK" if healthy else "503 Service Unavailable",
                     json.dumps(body).encode(), "application/json")


def _request_base_url(environ: dict[str, Any]) -> str:
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
    return f"{scheme}://{host}"


def _send(start_response: StartResponse, status: str, body: bytes, content_type: str) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def _plain(start_response: StartResponse, status: str, message: str) -> list[bytes]:
    return _send(start_response, status, message.encode(), "text/plain; charset=utf-8")
