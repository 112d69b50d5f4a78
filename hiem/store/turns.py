"""Turns at SQLite's single writer, with the broker's clients served first.

In embedded mode one process answers publishers and subscribers *and* fans notifications out, and SQLite
lets one transaction write at a time. Delivery claims and outcome batches come back to back while a large
fan-out runs; a plain lock hands the database to whichever thread the scheduler wakes, so a publisher's
Notify (one short transaction, the thing HIEM clients wait on) queued behind dozens of them
(docs/performance.md has the figures).

:class:`WriterTurns` is a reentrant lock with two kinds of waiter. A thread answering a client (marked
with :func:`serving_a_client`, which the web application does for every request) goes before any waiting
background thread; background threads keep their turns among themselves. So that a stream of requests
cannot stop deliveries, after :data:`CLIENT_TURNS_IN_A_ROW` client turns in a row a waiting background
thread gets the next one.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextvars import ContextVar

#: client turns granted in a row while background work waits, before one background turn
CLIENT_TURNS_IN_A_ROW = 8

_serving_a_client: ContextVar[bool] = ContextVar("hiem_serving_a_client", default=False)


@contextlib.contextmanager
def serving_a_client() -> Iterator[None]:
    """Mark the current thread's database work as answering a client (first in line for the writer)."""
    token = _serving_a_client.set(True)
    try:
        yield
    finally:
        _serving_a_client.reset(token)


def is_serving_a_client() -> bool:
    return _serving_a_client.get()


class WriterTurns:
    """A reentrant lock where client threads go before background threads (see the module docstring)."""

    def __init__(self) -> None:
        mutex = threading.Lock()
        # one condition per kind of waiter, so a release wakes the one thread whose turn it is rather than
        # every waiter (with 32 web threads queued, waking all of them on every release cost more than the
        # transactions themselves)
        self._client_turn = threading.Condition(mutex)
        self._background_turn = threading.Condition(mutex)
        self._mutex = mutex
        self._owner: int | None = None
        self._depth = 0
        self._clients_waiting = 0
        self._background_waiting = 0
        self._client_streak = 0

    @contextlib.contextmanager
    def turn(self, client: bool | None = None) -> Iterator[None]:
        """Hold the writer for the block; ``client`` defaults to :func:`is_serving_a_client`."""
        self._acquire(is_serving_a_client() if client is None else client)
        try:
            yield
        finally:
            self._release()

    def _acquire(self, client: bool) -> None:
        me = threading.get_ident()
        with self._mutex:
            if self._owner == me:
                self._depth += 1
                return
            condition = self._client_turn if client else self._background_turn
            if client:
                self._clients_waiting += 1
            else:
                self._background_waiting += 1
            try:
                while not self._may_take(client):
                    # the timeout only guards against a wake-up lost to a thread that took the turn first
                    condition.wait(_RECHECK_SECONDS)
            finally:
                if client:
                    self._clients_waiting -= 1
                else:
                    self._background_waiting -= 1
            self._owner, self._depth = me, 1
            self._client_streak = self._client_streak + 1 if client else 0

    def _background_is_owed(self) -> bool:
        return self._background_waiting > 0 and self._client_streak >= CLIENT_TURNS_IN_A_ROW

    def _may_take(self, client: bool) -> bool:
        if self._owner is not None:
            return False
        if client:
            return not self._background_is_owed()
        return self._clients_waiting == 0 or self._background_is_owed()

    def _release(self) -> None:
        with self._mutex:
            self._depth -= 1
            if self._depth:
                return
            self._owner = None
            if self._background_waiting == 0:
                self._client_streak = 0
            if self._clients_waiting and not self._background_is_owed():
                self._client_turn.notify()
            elif self._background_waiting:
                self._background_turn.notify()


#: how often a waiter looks again without being woken (a safety net, not the way turns are handed over)
_RECHECK_SECONDS = 0.05
