"""TopicDialect: the three WS-Topics 1.3 §7 dialect URIs, and nothing else."""

from __future__ import annotations

import pytest

from hiem.errors import HiemError
from hiem.wstopics import TopicDialect, UnknownDialectError

SIMPLE = "http://docs.oasis-open.org/wsn/t-1/TopicExpression/Simple"
CONCRETE = "http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete"
FULL = "http://docs.oasis-open.org/wsn/t-1/TopicExpression/Full"


def test_values_are_the_spec_uris() -> None:
    assert TopicDialect.SIMPLE.value == SIMPLE
    assert TopicDialect.CONCRETE.value == CONCRETE
    assert TopicDialect.FULL.value == FULL
    assert len(TopicDialect) == 3


def test_members_are_strings_that_print_as_their_uri() -> None:
    assert isinstance(TopicDialect.FULL, str)
    assert str(TopicDialect.FULL) == FULL
    assert TopicDialect.CONCRETE == CONCRETE


@pytest.mark.parametrize(("uri", "dialect"), [
    (SIMPLE, TopicDialect.SIMPLE),
    (CONCRETE, TopicDialect.CONCRETE),
    (FULL, TopicDialect.FULL),
    (f"\n   {CONCRETE}\n  ", TopicDialect.CONCRETE),
    (f"\t{FULL} ", TopicDialect.FULL),
])
def test_from_uri(uri: str, dialect: TopicDialect) -> None:
    assert TopicDialect.from_uri(uri) is dialect


@pytest.mark.parametrize("uri", [
    "http://www.w3.org/TR/1999/REC-xpath-19991116",  # the XPath dialect WS-BaseNotification mentions
    "http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet",
    CONCRETE.upper(),
    CONCRETE + "/",
    "http://docs.oasis-open.org/wsn/t-1/TopicExpression/simple",
    "Concrete",
])
def test_from_uri_refuses_other_uris(uri: str) -> None:
    with pytest.raises(UnknownDialectError) as info:
        TopicDialect.from_uri(uri)
    assert info.value.uri == uri
    assert uri in str(info.value)


@pytest.mark.parametrize("uri", [None, "", "   ", "\n\t"])
def test_from_uri_refuses_missing_dialect(uri: str | None) -> None:
    with pytest.raises(UnknownDialectError) as info:
        TopicDialect.from_uri(uri)
    assert info.value.uri == uri
    assert "no topic expression Dialect" in str(info.value)


def test_enum_lookup_itself_raises_unknown_dialect() -> None:
    with pytest.raises(UnknownDialectError) as info:
        TopicDialect("urn:not-a-dialect")
    assert info.value.uri == "urn:not-a-dialect"


def test_unknown_dialect_error_is_a_hiem_error() -> None:
    assert issubclass(UnknownDialectError, HiemError)
