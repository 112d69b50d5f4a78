"""WS-BaseNotification MessageContent filters: XPath 1.0 over the notification's message (§4.2).

* Only the XPath 1.0 dialect (``http://www.w3.org/TR/1999/REC-xpath-19991116``) is accepted; another
  dialect, or an expression that does not compile, is InvalidMessageContentExpressionFault.
* The expression is compiled at Subscribe time with the namespace context of the MessageContent
  element, so a broken filter is refused then, never discovered per message.
* Evaluation runs in sandbox processes (one per core in all), a notification's filters in batches, one
  round trip per batch, with a time limit per evaluation: lxml cannot be interrupted from Python, so a
  pathological expression (nested ``//`` predicates over a large message) is stopped by killing its
  sandbox, which is then restarted. A filter that times out or fails does not match (never "matches
  everything"), and its :class:`Verdict` says why, for the caller to record where an operator sees it.
* The context node is the wsnt:Message element's child (the application payload); the filter matches
  when the expression's boolean value is true.
"""

from __future__ import annotations

import copy
import os
import queue
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from lxml import etree

from hiem import xmlsafe

XPATH_1_0 = "http://www.w3.org/TR/1999/REC-xpath-19991116"
MAX_EXPRESSION_LENGTH = 2048
EVALUATION_TIMEOUT = 0.5
STARTUP_TIMEOUT = 60.0



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
            message_xml, filters = conn.recv()
        except EOFError:
            return
        try:
            payload = _payload(message_xml)
        except Exception as exc:
            payload, broken = None, exc.__class__.__name__
        else:
            broken = ""
        for expression, namespaces in filters:  # one answer per filter, as soon as it is known
            try:
                if broken:
                    raise ValueError(f"message not parsed ({broken})")
                key = (expression, tuple(sorted(namespaces.items())))
                if key not in compiled:
                    compiled[key] = etree.XPath(expression, namespaces=namespaces)
                conn.send(bool(compiled[key](payload)) if payload is not None else False)
            except Exception as exc:  # reported; the caller records it
                conn.send(f"{exc.__class__.__name__}: {exc}"[:300])


def sandbox_on(fd: int) -> None:
    """The sandbox process's entry point: answer on the socket ``fd`` until it closes."""
    _sandbox_main(Connection(fd))


@dataclass(frozen=True)
class Verdict:
    """A filter's answer for one message; ``error`` says why it could not be evaluated (then no match)."""

    matched: bool
    error: str | None = None


class _Sandbox:
    def __init__(self) -> None:
        self._process: Any = None
        self._conn: Connection | None = None

    def _start(self) -> None:
        # A plain child process, not multiprocessing's: a Celery pool child is daemonic, and multiprocessing
        # refuses to let a daemonic process have children.
        parent, child = socket.socketpair()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", f"from hiem.content_filter import sandbox_on; sandbox_on({child.fileno()})"],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, close_fds=True)
        finally:
            child.close()
        self._conn = Connection(parent.detach())
        if not self._conn.poll(STARTUP_TIMEOUT) or self._conn.recv() != "ready":
            self._kill()
            raise RuntimeError("the XPath sandbox did not start")

    def _alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(5)
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = None

    def evaluate(self, filters: Sequence[tuple[str, dict[str, str]]], message_xml: bytes,
                 timeout: float) -> list[Verdict]:
        """Every filter against one message, one round trip for the lot; a filter that overruns ``timeout``
        has its sandbox killed, and the rest go to a fresh one."""
        verdicts: list[Verdict] = []
        resent = False
        while len(verdicts) < len(filters):
            rest = filters[len(verdicts):]
            if not self._alive():
                try:
                    self._start()
                except (RuntimeError, OSError, EOFError):
                    return verdicts + [Verdict(False, "the XPath sandbox cannot start")] * len(rest)
            assert self._conn is not None
            try:
                self._conn.send((message_xml, list(rest)))
            except OSError:  # it died while idle: no filter's fault; start another, once
                self._kill()
                if resent:
                    return verdicts + [Verdict(False, "the XPath sandbox cannot be reached")] * len(rest)
                resent = True
                continue
            try:
                for _ in rest:
                    if not self._conn.poll(timeout):
                        self._kill()
                        verdicts.append(Verdict(False, f"evaluation exceeded {timeout:.2f} s and was stopped"))
                        break
                    answer = self._conn.recv()
                    verdicts.append(Verdict(False, answer) if isinstance(answer, str) else Verdict(bool(answer)))
            except (EOFError, OSError):
                self._kill()
                verdicts.append(Verdict(False, "the XPath sandbox died evaluating it"))
        return verdicts


class _Pool:
    """``size`` sandboxes, each used by one thread at a time."""

    def __init__(self, size: int) -> None:
        self._free: queue.SimpleQueue[_Sandbox] = queue.SimpleQueue()
        self.size = max(1, size)
        for _ in range(self.size):
            self._free.put(_Sandbox())
        self._threads = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix="hiem-xpath")

    def _run(self, filters: Sequence[tuple[str, dict[str, str]]], message_xml: bytes,
             timeout: float) -> list[Verdict]:
        sandbox = self._free.get()
        try:
            return sandbox.evaluate(filters, message_xml, timeout)
        finally:
            self._free.put(sandbox)

    def evaluate(self, filters: Sequence[tuple[str, dict[str, str]]], message_xml: bytes,
                 timeout: float) -> list[Verdict]:
        if not filters:
            return []
        share = -(-len(filters) // self.size)
        parts = [filters[i:i + share] for i in range(0, len(filters), share)]
        return [v for part in self._threads.map(lambda f: self._run(f, message_xml, timeout), parts) for v in part]


_pool: _Pool | None = None
_pool_lock = threading.Lock()
#: one sandbox per core for a process that fans out alone (``hiem serve`` in embedded mode); a Celery
#: worker's pool children, one per core already, take one each (:func:`use_sandboxes`)
_pool_size = os.cpu_count() or 1


def use_sandboxes(count: int) -> None:
    """How many sandboxes this process starts when it first evaluates a filter."""
    global _pool_size
    _pool_size = max(1, count)


def evaluate_filters(filters: Sequence[tuple[str, dict[str, str]]], message_xml: bytes,
                     timeout: float = EVALUATION_TIMEOUT) -> list[Verdict]:
    """The verdict of each (expression, namespaces) filter on one notification message, in order."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = _Pool(_pool_size)  # first use: a process that never sees a filter starts no sandbox
    return _pool.evaluate(filters, message_xml, timeout)
