"""A real HTTP consumer endpoint on a loopback port that records every request it receives."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from lxml import etree


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def envelope(self) -> etree._Element:
        return etree.fromstring(self.body)


Behaviour = Callable[[bytes], tuple[int, dict[str, str], bytes]]


def accept(_: bytes) -> tuple[int, dict[str, str], bytes]:
    return 202, {}, b""


class RecordingConsumer:
    """``with RecordingConsumer() as c: ... c.url ... c.wait_for(n)``; ``behaviour`` decides each answer."""

    def __init__(self, behaviour: Behaviour = accept, host: str = "127.0.0.1", port: int = 0) -> None:
        self.behaviour = behaviour
        self.received: list[Received] = []
        self._cond = threading.Condition()
        consumer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request: like any server, ignore the fragment
                    self.close_connection = True
                    return
                status, headers, payload = consumer.behaviour(body)
                with consumer._cond:
                    consumer.received.append(Received(self.path, dict(self.headers), body, time.monotonic()))
                    consumer._cond.notify_all()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/consumer"

    def __enter__(self) -> RecordingConsumer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"consumer got {len(self.received)} of {count} requests in {timeout}s")
                self._cond.wait(remaining)
            return list(self.received)

    def wait_for_match(self, predicate: Callable[[Received], bool], timeout: float = 20.0,
                       what: str = "a matching request") -> list[Received]:
        """Wait until some received request satisfies ``predicate``; returns everything received by then."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not any(predicate(r) for r in self.received):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{what} not among the consumer's {len(self.received)} requests "
                                         f"in {timeout}s")
                self._cond.wait(remaining)
            return list(self.received)
