"""WS-BaseNotification MessageContent filters: XPath 1.0 over the notification's message (§4.2).

* Only the XPath 1.0 dialect (``http://www.w3.org/TR/1999/REC-xpath-19991116``) is accepted; another
  dialect, or an expression that does not compile, is InvalidMessageContentExpressionFault.
* The expression is compiled at Subscribe time with the namespace context of the MessageContent
  element, so a broken filter is refused then, never discovered per message.
* Evaluation runs in a separate sandbox process with a time limit per evaluation: lxml cannot be
  interrupted from Python, so a pathological expression (nested ``//`` predicates over a large message)
  is stopped by killing the sandbox, which is then restarted. A filter that times out or fails does not
  match (never "matches everything"), and the event is logged.
* The context node is the wsnt:Message element's child (the application payload); the filter matches
  when the expression's boolean value is true.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import threading
from multiprocessing.connection import Connection
from typing import Any

from lxml import etree

from hiem import xmlsafe

XPATH_1_0 = "http://www.w3.org/TR/1999/REC-xpath-19991116"
MAX_EXPRESSION_LENGTH = 2048
EVALUATION_TIMEOUT = 0.5
STARTUP_TIMEOUT = 60.0

log = logging.getLogger(__name__)


class InvalidExpression(ValueError):
    """A MessageContent filter that cannot be evaluated (WS-N answers InvalidMessageContentExpressionFault)."""


def compile_filter(expression: str, dialect: str | None, nsmap: dict[str | None, str]) -> dict[str, str]:
    """Check a MessageContent filter; return the prefix map it is to be evaluated with."""
    if (dialect or "").strip() != XPATH_1_0:
        raise InvalidExpression(
            f"MessageContent dialect {dialect!r} is not supported; use XPath 1.0 ({XPATH_1_0})")
    if not expression.strip() or len(expression) > MAX_EXPRESSION_LENGTH:
        raise InvalidExpression("MessageContent expression is empty or too long")
    namespaces = {p: u for p, u in nsmap.items() if p}
    try:
        # libxml2 reports some syntax errors only when the expression first runs: run it once on an empty
        # element (cheap, and it cannot be slow on a one-node document).
        etree.XPath(expression, namespaces=namespaces)(etree.Element("empty"))
    except (etree.XPathSyntaxError, etree.XPathError) as exc:
        raise InvalidExpression(f"invalid XPath 1.0 expression {expression!r}: {exc}") \
            from None
    return namespaces


def _payload(message_xml: bytes) -> etree._Element | None:
    """The payload as the root of its own document, so absolute paths (``/g:Report``) start at it."""
    message = xmlsafe.parse(message_xml)
    payload = next((c for c in message if isinstance(c.tag, str)), None)
    return copy.deepcopy(payload) if payload is not None else None


def _sandbox_main(conn: Connection) -> None:  # runs in the sandbox process
    compiled: dict[tuple[str, tuple[tuple[str, str], ...]], etree.XPath] = {}
    conn.send("ready")  # start-up (a fresh interpreter) must not count against an evaluation's time limit
    while True:
        try:
            expression, namespaces, message_xml = conn.recv()
        except EOFError:
            return
        try:
            key = (expression, tuple(sorted(namespaces.items())))
            if key not in compiled:
                compiled[key] = etree.XPath(expression, namespaces=namespaces)
            payload = _payload(message_xml)
            conn.send(bool(compiled[key](payload)) if payload is not None else False)
        except Exception as exc:  # report, the caller decides (no match)
            conn.send(exc.__class__.__name__)


class _Sandbox:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: Any = None
        self._conn: Connection | None = None

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        self._process = context.Process(target=_sandbox_main, args=(child,), name="hiem-xpath", daemon=True)
        self._process.start()
        child.close()
        self._conn = parent
        if not parent.poll(STARTUP_TIMEOUT) or parent.recv() != "ready":
            self._kill()
            raise RuntimeError("the XPath sandbox did not start")

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.join(5)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None

    def evaluate(self, expression: str, namespaces: dict[str, str], message_xml: bytes, timeout: float) -> bool:
        with self._lock:
            if self._process is None or not self._process.is_alive():
                try:
                    self._start()
                except (RuntimeError, OSError):
                    log.error("MessageContent filter %r not evaluated: the XPath sandbox cannot start", expression)
                    return False
            assert self._conn is not None
            try:
                self._conn.send((expression, namespaces, message_xml))
                if not self._conn.poll(timeout):
                    log.warning("MessageContent filter %r exceeded %.2fs; stopped (no match)", expression, timeout)
                    self._kill()
                    return False
                answer = self._conn.recv()
            except (EOFError, OSError):
                log.warning("the XPath sandbox died evaluating %r; restarted (no match)", expression)
                self._kill()
                return False
        if isinstance(answer, str):
            log.warning("MessageContent filter %r failed (%s); no match", expression, answer)
            return False
        return bool(answer)


_sandbox = _Sandbox()


def matches_message(expression: str, namespaces: dict[str, str], message_xml: bytes,
                    timeout: float = EVALUATION_TIMEOUT) -> bool:
    return _sandbox.evaluate(expression, namespaces, message_xml, timeout)
