"""Subscription lifetimes: reading ``wsnt:InitialTerminationTime`` (an xs:dateTime or an xs:duration).

HIEM v2.0 does not use time-limited subscriptions (§2.4), so no time means no scheduled end; a client
that asks for one gets it, and a time in the past is refused with UnacceptableInitialTerminationTimeFault
as WS-BaseNotification 1.3 §4.2 requires.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from hiem.wsn import faults

_DURATION = re.compile(
    r"^(?P<sign>-)?P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(text: str) -> timedelta:
    """xs:duration to a timedelta (a year counts 365 days, a month 30: leases need no calendar)."""
    match = _DURATION.match(text)
    if not match or text in {"P", "-P"} or text.endswith("T"):
        raise ValueError(f"not an xs:duration: {text!r}")
    parts = {k: float(v) for k, v in match.groupdict().items() if v and k != "sign"}
    delta = timedelta(
        days=parts.get("years", 0) * 365 + parts.get("months", 0) * 30 + parts.get("days", 0),
        hours=parts.get("hours", 0), minutes=parts.get("minutes", 0), seconds=parts.get("seconds", 0),
    )
    return -delta if match.group("sign") else delta


def parse_datetime(text: str) -> datetime:
    """xs:dateTime to an aware UTC datetime (no zone = UTC, the interoperable reading)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def initial_termination(text: str | None, now: datetime) -> datetime | None:
    if not text:
        return None
    try:
        when = now + parse_duration(text) if text.lstrip("-").startswith("P") else parse_datetime(text)
    except ValueError:
        raise faults.UnacceptableInitialTerminationTimeFault(
            f"InitialTerminationTime {text!r} is neither an xs:dateTime nor an xs:duration", now) from None
    if when <= now:
        raise faults.UnacceptableInitialTerminationTimeFault(
            f"InitialTerminationTime {text!r} is not in the future", now)
    return when
