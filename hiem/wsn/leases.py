"""Subscription lifetimes: reading ``wsnt:InitialTerminationTime`` (an xs:dateTime or an xs:duration).

HIEM v2.0 does not use time-limited subscriptions (§2.4), so no time means no scheduled end; a client
that asks for one gets it, and a time in the past is refused with UnacceptableInitialTerminationTimeFault
as WS-BaseNotification 1.3 §4.2 requires.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hiem.durations import parse_duration
from hiem.wsn import faults


def parse_datetime(text: str) -> datetime:
    """xs:dateTime to an aware UTC datetime (no zone = UTC, the interoperable reading)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


@dataclass(frozen=True)
class LeasePolicy:
    """What the broker grants: ``default`` when none is asked, never beyond ``maximum`` (None = no limit)."""

    default: timedelta | None = None
    maximum: timedelta | None = None

    @classmethod
    def from_settings(cls, default: str, maximum: str) -> LeasePolicy:
        return cls(parse_duration(default) if default else None, parse_duration(maximum) if maximum else None)


def _requested(text: str, now: datetime) -> datetime:
    return now + parse_duration(text) if text.lstrip("-").startswith("P") else parse_datetime(text)


def initial_termination(text: str | None, now: datetime, policy: LeasePolicy = LeasePolicy()) -> datetime | None:
    """The termination time to grant for a Subscribe (WS-BaseNotification 1.3 §4.2)."""
    latest = now + policy.maximum if policy.maximum is not None else None
    if not text:
        if policy.default is None:
            return latest  # "as long as allowed": unlimited unless a maximum is configured
        granted = now + policy.default
        return min(granted, latest) if latest else granted
    try:
        when = _requested(text, now)
    except ValueError:
        raise faults.UnacceptableInitialTerminationTimeFault(
            f"InitialTerminationTime {text!r} is neither an xs:dateTime nor an xs:duration", now, latest) from None
    if when <= now:
        raise faults.UnacceptableInitialTerminationTimeFault(
            f"InitialTerminationTime {text!r} is not in the future", now, latest)
    if latest is not None and when > latest:
        raise faults.UnacceptableInitialTerminationTimeFault(
            f"InitialTerminationTime {text!r} is beyond the longest lease this broker grants", now, latest)
    return when


def renewed_termination(text: str | None, now: datetime, policy: LeasePolicy = LeasePolicy()) -> datetime | None:
    """The termination time for a Renew (§6.1); ``None`` text (xsi:nil) asks for no scheduled end."""
    latest = now + policy.maximum if policy.maximum is not None else None
    if text is None:
        if latest is not None:
            raise faults.UnacceptableTerminationTimeFault("an unlimited lease is beyond what this broker grants",
                                                          now, latest)
        return None
    try:
        when = _requested(text, now)
    except ValueError:
        raise faults.UnacceptableTerminationTimeFault(
            f"TerminationTime {text!r} is neither an xs:dateTime nor an xs:duration", now, latest) from None
    if when <= now or (latest is not None and when > latest):
        raise faults.UnacceptableTerminationTimeFault(
            f"TerminationTime {text!r} is outside what this broker grants", now, latest)
    return when
