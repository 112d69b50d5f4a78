"""Just enough WSGI request/response handling for the console (no framework: one small app, few routes)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, urlencode, urlsplit

MAX_FORM_BYTES = 64 * 1024

#: Everything the console loads comes from itself; no inline script or style, no framing.
SECURITY_HEADERS = [
    ("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
     "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "same-origin"),
]


def _first(values: dict[str, list[str]]) -> dict[str, str]:
    return {key: items[0] for key, items in values.items() if items}


class Request:
    """The parts of a WSGI environ the console reads."""

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.path = environ.get("PATH_INFO", "") or "/"
        self.query_string = environ.get("QUERY_STRING", "")
        self.query = _first(parse_qs(self.query_string, keep_blank_values=True))
        self._form: dict[str, str] | None = None

    @property
    def full_path(self) -> str:
        return self.path + (f"?{self.query_string}" if self.query_string else "")

    @property
    def remote_addr(self) -> str:
        return str(self.environ.get("REMOTE_ADDR", ""))

    @property
    def https(self) -> bool:
        # Trusting X-Forwarded-Proto here is safe: it can only make the cookie stricter (Secure).
        return (self.environ.get("wsgi.url_scheme") == "https"
                or self.environ.get("HTTP_X_FORWARDED_PROTO", "").lower() == "https")

    @property
    def partial(self) -> bool:
        """A page's own polling request: answer with the live fragment only."""
        return self.environ.get("HTTP_X_HIEM_PARTIAL") == "1"

    def header(self, name: str) -> str:
        return str(self.environ.get("HTTP_" + name.upper().replace("-", "_"), ""))

    def cookie(self, name: str) -> str | None:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(self.environ.get("HTTP_COOKIE", ""))
        except CookieError:
            return None
        morsel = jar.get(name)
        return morsel.value if morsel else None

    def form(self) -> dict[str, str]:
        """A url-encoded POST body (at most 64 KiB; anything else reads as an empty form)."""
        if self._form is None:
            self._form = {}
            ctype = self.environ.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
            try:
                length = int(self.environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if ctype == "application/x-www-form-urlencoded" and 0 < length <= MAX_FORM_BYTES:
                body = self.environ["wsgi.input"].read(length).decode("utf-8", "replace")
                self._form = _first(parse_qs(body, keep_blank_values=True))
        return self._form

    def same_origin(self, allowed: Iterable[str] = ()) -> bool:
        """No Origin header (old browsers, curl) is fine; a present one must be this host (defence in depth)."""
        origin = self.header("Origin")
        if not origin:
            return True
        hosts = {self.header("Host"), self.header("X-Forwarded-Host"), *allowed} - {""}
        return urlsplit(origin).netloc in hosts


@dataclass
class Response:
    status: str = "200 OK"
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def send(self, start_response: Callable[..., Any]) -> list[bytes]:
        headers = [("Content-Type", self.content_type), ("Content-Length", str(len(self.body))),
                   *SECURITY_HEADERS, *self.headers]
        if not any(k == "Cache-Control" for k, _ in self.headers):
            headers.append(("Cache-Control", "no-store"))
        start_response(self.status, headers)
        return [self.body]


def redirect(location: str) -> Response:
    return Response("303 See Other", b"", "text/plain; charset=utf-8", [("Location", location)])


def text(status: str, message: str) -> Response:
    return Response(status, message.encode(), "text/plain; charset=utf-8")


def safe_next(value: str | None, default: str = "/ops") -> str:
    """Only console paths are followed after login or an action (no open redirect)."""
    if value and value.startswith("/ops") and not value.startswith("//") and "\\" not in value:
        return value
    return default


def with_done(back: str, action_id: int) -> str:
    """``back`` with ``done=<action id>`` (replacing an earlier one), so the page can show the outcome."""
    parts = urlsplit(back)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "done"]
    return parts._replace(query=urlencode([*query, ("done", str(action_id))])).geturl()


def login_url(next_path: str) -> str:
    return f"/ops/login?next={quote(next_path, safe='/')}"
