"""AuditEvent and Participant: validation, the kind-to-code table, and the JSON round trip."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest

from hiem.audit.codes import (
    EventActionCode,
    EventID,
    EventOutcomeIndicator,
    HiemTransaction,
    RoleIDCode,
    SecurityAlertType,
)
from hiem.audit.events import JSON_VERSION, AuditEvent, AuditKind, Participant, event_from_json, event_to_json

MakeEvent = Callable[..., AuditEvent]


def test_kind_table() -> None:
    assert (AuditKind.IMPORT.event_id, AuditKind.IMPORT.action) == (EventID.IMPORT, EventActionCode.CREATE)
    assert (AuditKind.EXPORT.event_id, AuditKind.EXPORT.action) == (EventID.EXPORT, EventActionCode.READ)
    assert AuditKind.SECURITY_ALERT.event_id is EventID.SECURITY_ALERT
    assert AuditKind.SECURITY_ALERT.transaction is None
    for kind in AuditKind:
        assert kind.event_id in {EventID.IMPORT, EventID.EXPORT, EventID.QUERY, EventID.SECURITY_ALERT}
        if kind.is_subscription_event:
            assert kind.action is EventActionCode.EXECUTE
            assert kind.transaction in {
                HiemTransaction.SUBSCRIBE,
                HiemTransaction.UNSUBSCRIBE,
                HiemTransaction.SUBSCRIPTION_END,
            }


def test_occurred_at_must_be_aware_and_is_normalised_to_utc(make_event: MakeEvent) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_event(occurred_at=datetime(2025, 1, 1, 12, 0))
    event = make_event(occurred_at=datetime(2025, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))))
    assert event.occurred_at.utcoffset() == timedelta(0) and event.occurred_at.hour == 12


def test_blank_optional_text_becomes_none(make_event: MakeEvent) -> None:
    event = make_event(topic="", description="   ", saml_org="")
    assert (event.topic, event.description, event.saml_org) == (None, None, None)
    participant = Participant("x", "", True, RoleIDCode.SOURCE, alt_user_id=" ")
    assert participant.network_access_point is None and participant.alt_user_id is None


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"audit_source_id": ""}, ValueError),
        ({"kind": "export"}, TypeError),
        ({"outcome": 0}, TypeError),
        ({"topic": 42}, TypeError),
        ({"unauthenticated": "yes"}, TypeError),
        ({"alert_type": SecurityAlertType.NODE_AUTHENTICATION}, ValueError),
    ],
)
def test_invalid_events(make_event: MakeEvent, overrides: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        make_event(**overrides)


def test_invalid_participants() -> None:
    with pytest.raises(ValueError, match="UserID"):
        Participant(" ", None, True, RoleIDCode.SOURCE)
    with pytest.raises(TypeError, match="RoleIDCode"):
        Participant("x", None, True, "110153")  # type: ignore[arg-type]


def test_alert_type_defaults_to_node_authentication(make_event: MakeEvent) -> None:
    assert make_event(kind=AuditKind.SECURITY_ALERT).effective_alert_type is SecurityAlertType.NODE_AUTHENTICATION
    assert make_event(kind=AuditKind.EXPORT).effective_alert_type is None


@pytest.mark.parametrize(("kind", "outcome"), list(itertools.product(AuditKind, EventOutcomeIndicator)))
def test_json_round_trip(make_event: MakeEvent, kind: AuditKind, outcome: EventOutcomeIndicator) -> None:
    extra = {"alert_type": SecurityAlertType.AUTHORIZATION_DECISION} if kind is AuditKind.SECURITY_ALERT else {}
    event = make_event(kind=kind, outcome=outcome, description="line 1\nline 2 \u00e9", unauthenticated=True, **extra)
    data = event_to_json(event)
    assert event_from_json(json.loads(json.dumps(data))) == event


def test_json_shape(make_event: MakeEvent) -> None:
    data = event_to_json(make_event(saml_user=None))
    assert data["v"] == JSON_VERSION
    assert data["kind"] == "subscribe-accepted"
    assert data["outcome"] == 0
    assert data["occurred_at"] == "2025-03-14T15:09:26.535897Z"
    assert data["source"]["role"] == "110153"
    assert data["saml_user"] is None
    assert event_from_json(data).saml_user is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(v=2), "version"),
        (lambda d: d.update(extra=1), "unknown keys"),
        (lambda d: d.pop("kind"), "lacks the key"),
        (lambda d: d.update(kind="nope"), "nope"),
        (lambda d: d.update(outcome=3), "3"),
        (lambda d: d.update(outcome="0"), "integer"),
        (lambda d: d.update(unauthenticated=None), "true or false"),
        (lambda d: d["source"].update(role="1"), "RoleIDCode|1"),
        (lambda d: d["source"].update(colour="red"), "unknown keys"),
        (lambda d: d["destination"].update(is_requestor="false"), "is_requestor"),
        (lambda d: d.update(occurred_at="yesterday"), "yesterday"),
        (lambda d: d.update(occurred_at="2025-01-01T00:00:00"), "timezone-aware"),
    ],
)
def test_bad_json_is_a_value_error(make_event: MakeEvent, change: Callable[[dict], object], message: str) -> None:
    data = event_to_json(make_event())
    change(data)
    with pytest.raises(ValueError, match=message):
        event_from_json(data)
