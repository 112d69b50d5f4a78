"""The operators' console WSGI app: ``/ops`` pages, login, confirmed actions, and ``/metrics``.

Request flow: static files are public; every other ``/ops`` path needs a logged-in operator (read again
from the database on each request, so a disabled operator is out at once); every POST needs the CSRF
token of its session and, when the browser sends one, a same-host Origin; actions need the admin role
and a confirmation page first, and are recorded in ``operator_actions`` whatever their outcome.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.orm import Session as DbSession

from hiem.config import Settings
from hiem.ops import actions, operators, pages
from hiem.ops.http import Request, Response, login_url, redirect, safe_next, text, with_done
from hiem.ops.metrics import MetricsApp
from hiem.ops.queue import QueueMonitor
from hiem.ops.render import Renderer
from hiem.ops.sessions import COOKIE_NAME, Session, SessionSigner, password_fingerprint
from hiem.ops.settings import OpsSettings
from hiem.store.db import Database
from hiem.store.models import OperatorAction

log = logging.getLogger(__name__)

STATIC = {"ops.css": "text/css; charset=utf-8", "ops.js": "text/javascript; charset=utf-8"}
_SUBSCRIPTION = re.compile(r"^/ops/subscriptions/([A-Za-z0-9._:-]{1,64})$")


@dataclass
class Me:
    """The operator behind a request, as templates see it."""

    username: str
    role: str

    @property
    def can_act(self) -> bool:
        return self.role == operators.Role.ADMIN.value


@dataclass
class Visit:
    request: Request
    session: Session
    set_cookie: bool
    me: Me | None = None


class OpsApp:
    """Serves ``/ops/*`` and ``/metrics``; mount it in front of (or beside) the SOAP app."""

    def __init__(self, settings: Settings, database: Database, ops: OpsSettings,
                 queue: QueueMonitor | None = None) -> None:
        self.settings, self.db, self.ops = settings, database, ops
        self.signer = SessionSigner(ops.secret, ops.session_seconds)
        self.renderer = Renderer()
        self.queue = queue or QueueMonitor(settings)
        self.throttle = operators.LoginThrottle()
        self.metrics = MetricsApp(database, self.queue, token=ops.metrics_token)
        self._public_hosts = [urlsplit(settings.public_url).netloc] if settings.public_url else []
        self._pages = {"/ops/topics": pages.topics, "/ops/subscriptions": pages.subscriptions,
                       "/ops/notifications": pages.notifications, "/ops/deliveries": pages.deliveries,
                       "/ops/actions": pages.actions}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/metrics":
            return self.metrics(environ, start_response)
        request = Request(environ)
        try:
            response = self._handle(request)
        except Exception:  # never a stack trace to the browser; the log has it
            log.exception("ops console: %s %s failed", request.method, request.path)
            response = text("500 Internal Server Error", "the console failed; the server log says why\n")
        return response.send(start_response)

    # -- plumbing -----------------------------------------------------------------------------------------------
    def _handle(self, request: Request) -> Response:
        if request.path != "/ops" and not request.path.startswith("/ops/"):
            return text("404 Not Found", "not found (this port serves /ops and /metrics)\n")
        if request.path.startswith("/ops/static/"):
            return self._static(request.path.rsplit("/", 1)[-1])
        session = self.signer.loads(request.cookie(COOKIE_NAME))
        visit = Visit(request, session or self.signer.anonymous(), set_cookie=session is None)
        response = self._route(visit)
        if visit.set_cookie:
            response.headers.append(("Set-Cookie", self._cookie(visit.session, request.https)))
        return response

    def _cookie(self, session: Session, https: bool) -> str:
        parts = [f"{COOKIE_NAME}={self.signer.dumps(session)}", "Path=/ops", "HttpOnly", "SameSite=Strict",
                 f"Max-Age={int(self.ops.session_seconds)}"]
        return "; ".join([*parts, "Secure"] if https else parts)

    def _static(self, name: str) -> Response:
        if name not in STATIC:
            return text("404 Not Found", "not found\n")
        body = resources.files("hiem.ops").joinpath("static", name).read_bytes()
        return Response("200 OK", body, STATIC[name], [("Cache-Control", "no-cache")])

    def _operator(self, session: Session) -> Me | None:
        if not session.authenticated:
            return None
        with self.db.session() as s:
            row = operators.find(s, session.username or "")
            if row is None or row.disabled or password_fingerprint(row.password_hash) != session.fingerprint:
                return None
            return Me(row.username, row.role)

    def _page(self, visit: Visit, template: str, status: str = "200 OK", **context: Any) -> Response:
        body = self.renderer.page(template, partial=visit.request.partial, me=visit.me,
                                  csrf=self.signer.csrf_token(visit.session), poll=self.ops.poll_seconds,
                                  path=visit.request.path, full_path=visit.request.full_path,
                                  mode="embedded" if self.settings.embedded else "distributed",
                                  dev=self.settings.dev, **context)
        return Response(status, body)

    # -- routing ------------------------------------------------------------------------------------------------
    def _route(self, visit: Visit) -> Response:
        request = visit.request
        if request.path == "/ops/login":
            return self._login(visit)
        visit.me = self._operator(visit.session)
        if visit.me is None:
            if request.partial:
                return text("401 Unauthorized", "your session ended; log in again\n")
            if request.method in {"GET", "HEAD"}:
                return redirect(login_url(request.full_path))
            return text("403 Forbidden", "log in first\n")
        if request.method == "POST":
            token = request.form().get("csrf") or request.header("X-CSRF-Token")
            if not (request.same_origin(self._public_hosts) and self.signer.check_csrf(visit.session, token)):
                log.warning("ops console: refused a POST to %s without a valid CSRF token from %s",
                            request.path, request.remote_addr)
                return text("403 Forbidden", "missing or invalid CSRF token: reload the page and try again\n")
            if request.path == "/ops/logout":
                visit.session, visit.set_cookie = self.signer.anonymous(), True
                return redirect("/ops/login")
            if request.path.startswith("/ops/actions/"):
                return self._act(visit, request.path[len("/ops/actions/"):])
            return text("404 Not Found", "not found\n")
        if request.method not in {"GET", "HEAD"}:
            return Response("405 Method Not Allowed", b"", "text/plain", [("Allow", "GET, POST")])
        return self._read(visit)

    def _read(self, visit: Visit) -> Response:
        path, query = visit.request.path.rstrip("/") or "/ops", visit.request.query
        if path == "/ops/confirm":
            return self._confirm(visit)
        # Ask the broker before opening the session, and render after closing it: in embedded mode every
        # transaction holds SQLite's write lock, which the workers need too.
        queue = self.queue.status() if path == "/ops" else None
        with self.db.session() as session:
            if queue is not None:
                found: pages.Page | None = pages.overview(session, queue, query)
            elif path in self._pages:
                found = self._pages[path](session, query)
            elif match := _SUBSCRIPTION.match(path):
                found = pages.subscription(session, match.group(1))
            else:
                return self._page(visit, "error.html", "404 Not Found", message="no such page")
            flash = self._flash(session, visit, query)
        if found is None:
            return self._page(visit, "error.html", "404 Not Found", message="no such subscription")
        template, context = found
        return self._page(visit, template, flash=flash, **context)

    def _flash(self, session: DbSession, visit: Visit, query: dict[str, str]) -> OperatorAction | None:
        """The outcome of the action this operator just confirmed (by id: a link cannot forge a message)."""
        done = query.get("done", "")
        row = session.get(OperatorAction, int(done)) if done.isdigit() else None
        return row if row is not None and visit.me and row.username == visit.me.username else None

    # -- login --------------------------------------------------------------------------------------------------
    def _login(self, visit: Visit) -> Response:
        request = visit.request
        target = safe_next(request.query.get("next") or request.form().get("next"))
        if request.method != "POST":
            if self._operator(visit.session) is not None:
                return redirect(target)
            return self._page(visit, "login.html", next=target, error=None)
        form = request.form()
        if not (request.same_origin(self._public_hosts) and self.signer.check_csrf(visit.session, form.get("csrf"))):
            return text("403 Forbidden", "missing or invalid CSRF token: reload the login page\n")
        username, password = form.get("username", "").strip(), form.get("password", "")
        if self.throttle.blocked(username, request.remote_addr):
            return self._page(visit, "login.html", "429 Too Many Requests", next=target,
                              error="too many failed attempts: wait a few minutes")
        with self.db.session() as session:
            row = operators.authenticate(session, username, password)
            new = self.signer.login(row.username, row.password_hash) if row is not None else None
        if new is None:
            self.throttle.failed(username, request.remote_addr)
            log.warning("ops console: failed login for %r from %s", username[:64], request.remote_addr)
            return self._page(visit, "login.html", "401 Unauthorized", next=target,
                              error="wrong username or password")
        self.throttle.succeeded(username, request.remote_addr)
        log.info("ops console: %s logged in from %s", username, request.remote_addr)
        visit.session, visit.set_cookie = new, True
        return redirect(target)

    # -- actions ------------------------------------------------------------------------------------------------
    def _confirm(self, visit: Visit) -> Response:
        query = visit.request.query
        action = actions.ACTIONS.get(query.get("action", ""))
        target = query.get(action.field, "").strip() if action else ""
        if action is None or not target:
            return self._page(visit, "error.html", "400 Bad Request", message="unknown action or no target")
        if not visit.me or not visit.me.can_act:
            return self._page(visit, "error.html", "403 Forbidden", message="viewers see everything but cannot act")
        return self._page(visit, "confirm.html", action=action, target=target,
                          back=safe_next(query.get("back")), question=action.describe(target))

    def _act(self, visit: Visit, name: str) -> Response:
        action = actions.ACTIONS.get(name)
        form = visit.request.form()
        target = form.get(action.field, "").strip() if action else ""
        if action is None or not target:
            return text("400 Bad Request", "unknown action or no target\n")
        assert visit.me is not None
        if not visit.me.can_act:
            actions.record_refusal(self.db, visit.me.username, action.name, target, "viewer role")
            return self._page(visit, "error.html", "403 Forbidden", message="viewers see everything but cannot act")
        outcome = actions.run(self.db, visit.me.username, action, target)
        log.info("ops console: %s %s %s: %s", visit.me.username, action.name, target, outcome.message)
        return redirect(with_done(safe_next(form.get("back")), outcome.action_id))
