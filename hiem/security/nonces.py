"""Remembering what was already accepted, so a captured message or assertion cannot be used twice.

A valid signature only proves who wrote a message, not that this is the first time it arrives. The
verifier therefore records two keys per accepted message (WS-Security 1.1 §10 on Timestamps and
replay, SAML 2.0 core §2.5.1.5 on one-time use):

* ``saml:<issuer>|<assertion ID>``, kept until the assertion's NotOnOrAfter (+ skew);
* ``msg:<signer key fingerprint>|<wsa:MessageID>`` (or the signature value when there is no signed
  MessageID), kept until the message's wsu:Timestamp stops being acceptable.

Past those instants the time checks refuse the message anyway, so nothing has to be kept longer.

:class:`NonceCache` is the seam: one method, atomic "check and record". :class:`MemoryNonceCache`
serves one process; a deployment with several web processes needs a shared one (database or Redis)
implementing the same protocol.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

DEFAULT_MAX_ENTRIES = 100_000


@runtime_checkable
class NonceCache(Protocol):
    """Check-and-record of one-time keys."""

    def seen(self, key: str, expires_at: datetime) -> bool:
        """True if ``key`` was recorded before and has not expired; otherwise record it and return False.

        The check and the record must be one atomic step: two copies of a message arriving at the same
        moment must not both be accepted.
        """
        ...


class MemoryNonceCache:
    """A thread-safe, expiring, bounded in-process :class:`NonceCache`.

    When ``max_entries`` live keys are held, the key closest to its expiry is forgotten first: of all
    the keys it is the one whose message will soonest be refused by the time checks anyway. Size the
    cache for the message rate times the freshness window.
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES, now: Callable[[], datetime] | None = None) -> None:
        if max_entries < 1:
            raise ValueError("MemoryNonceCache.max_entries must be at least 1")
        self.max_entries = max_entries
        self._now = now or (lambda: datetime.now(UTC))
        self._expiry: dict[str, datetime] = {}
        # (expires_at, key) in expiry order; an entry is stale when the dict holds a different instant.
        self._heap: list[tuple[datetime, str]] = []
        self._lock = threading.Lock()

    def seen(self, key: str, expires_at: datetime) -> bool:
        expires_at = _aware(expires_at)
        with self._lock:
            now = _aware(self._now())
            self._purge(now)
            known = self._expiry.get(key)
            if known is not None and known > now:
                return True
            if expires_at <= now:
                return False  # already past its acceptance window: nothing worth remembering
            while len(self._expiry) >= self.max_entries:
                self._evict_one()
            self._expiry[key] = expires_at
            heapq.heappush(self._heap, (expires_at, key))
            return False

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)

    def _purge(self, now: datetime) -> None:
        while self._heap and self._heap[0][0] <= now:
            expires_at, key = heapq.heappop(self._heap)
            if self._expiry.get(key) == expires_at:
                del self._expiry[key]

    def _evict_one(self) -> None:
        while self._heap:
            expires_at, key = heapq.heappop(self._heap)
            if self._expiry.get(key) == expires_at:
                del self._expiry[key]
                return


def _aware(moment: datetime) -> datetime:
    # Naive datetimes are taken as UTC: every instant in WS-Security and SAML is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
