"""The engine's errors carry data a caller can put in a fault, and all derive from HiemError."""

from __future__ import annotations

import pytest

from hiem.errors import HiemError
from hiem.wstopics import TopicExpressionError, TopicNamespaceError, UnknownDialectError


@pytest.mark.parametrize("cls", [TopicExpressionError, TopicNamespaceError])
def test_reason_is_kept(cls: type[TopicExpressionError] | type[TopicNamespaceError]) -> None:
    error = cls("something precise")
    assert isinstance(error, HiemError)
    assert error.reason == "something precise"
    assert str(error) == "something precise"


def test_unknown_dialect_keeps_uri() -> None:
    error = UnknownDialectError("urn:x")
    assert isinstance(error, HiemError)
    assert error.uri == "urn:x"
    assert "urn:x" in str(error)
