"""Shared builders for the hiem.audit unit tests."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from hiem.audit.codes import EventOutcomeIndicator, RoleIDCode
from hiem.audit.events import AuditEvent, AuditKind, Participant

OCCURRED = datetime(2025, 3, 14, 15, 9, 26, 535897, tzinfo=UTC)

HIEM = Participant(
    "https://hiem.example.org/hiem/NotificationProducer",
    "hiem.example.org",
    False,
    RoleIDCode.DESTINATION,
    alt_user_id="4242",
)
CLIENT = Participant("https://gateway.example.net/subscriber", "192.0.2.10", True, RoleIDCode.SOURCE)


def build_event(**overrides: Any) -> AuditEvent:
    values: dict[str, Any] = {
        "kind": AuditKind.SUBSCRIBE_ACCEPTED,
        "outcome": EventOutcomeIndicator.SUCCESS,
        "occurred_at": OCCURRED,
        "source": CLIENT,
        "destination": HIEM,
        "audit_source_id": "hiem-test",
        "enterprise_site_id": "2.16.840.1.113883.3.42",
        "subscription_id": "urn:uuid:6d8b1a9e-4c3f-4f7a-9f0e-1c2d3e4f5a6b",
        "topic": "nhin:PatientCentricDocumentNotification",
        "message_id": "urn:uuid:0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
        "saml_user": "UID=dr.who,O=Example Hospital",
        "saml_org": "Example Hospital",
        "description": None,
        "unauthenticated": False,
    }
    values.update(overrides)
    return AuditEvent(**values)


@pytest.fixture
def make_event() -> Callable[..., AuditEvent]:
    return build_event
