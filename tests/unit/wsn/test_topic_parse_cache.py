"""Received topic expressions are parsed once per (text, dialect, prefix bindings): a subscriber's repeated
Subscribe reuses the compiled expression, and a binding or dialect that differs gets its own."""

from __future__ import annotations

import pytest

from hiem.wsn import faults
from hiem.wsn.messages import TopicExpressionData
from hiem.wsn.topics import parse

CONCRETE = "http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete"
FULL = "http://docs.oasis-open.org/wsn/t-1/TopicExpression/Full"
NHIN = "http://www.hhs.gov/healthit/nhin"


def data(text: str, nsmap: dict[str | None, str], dialect: str = CONCRETE) -> TopicExpressionData:
    return TopicExpressionData(text=text, dialect=dialect, nsmap=nsmap)


def test_the_same_expression_is_compiled_once() -> None:
    first = parse(data("nhin:GIPSE/Biosurveillance/Rash", {"nhin": NHIN}))
    again = parse(data("nhin:GIPSE/Biosurveillance/Rash", {"nhin": NHIN, "other": "urn:x"}))
    assert again == first
    assert parse(data("nhin:GIPSE/Biosurveillance/Rash", {"nhin": NHIN})) is first


def test_bindings_and_dialect_are_part_of_the_key() -> None:
    nhin = parse(data("t:GIPSE", {"t": NHIN}))
    other = parse(data("t:GIPSE", {"t": "urn:other"}))
    assert nhin.single_topic().namespace == NHIN  # type: ignore[union-attr]
    assert other.single_topic().namespace == "urn:other"  # type: ignore[union-attr]
    assert parse(data("t:GIPSE//*", {"t": NHIN}, FULL)).single_topic() is None


def test_a_refused_expression_is_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(faults.InvalidTopicExpressionFault):
            parse(data("t:GIPSE//*", {"t": NHIN}))  # not Concrete
