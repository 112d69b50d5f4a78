"""Property: whatever text arrives, parsing ends in a TopicExpression or a TopicExpressionError."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hiem.ns import NHIN
from hiem.wstopics import TopicDialect, TopicExpression, TopicExpressionError, parse_expression

NSMAP: dict[str | None, str] = {"nhin": NHIN, "t": "urn:t", None: "urn:default"}

# Fragments that make up real expressions, so that generated text often gets deep into the grammar.
FRAGMENTS = st.sampled_from([
    "nhin", "t", "x", "GIPSE", "a", "b.c", "_", ":", "/", "//", "*", ".", "..", "|", " ", "\n", "\t",
    "-", "1", "\u00e9", "\u0300", "\u00a0", "#", "[", "\x00", "\ud7ff", "\U00010000",
])
TEXT = st.one_of(st.lists(FRAGMENTS, max_size=16).map("".join), st.text(max_size=40))


@settings(max_examples=300, deadline=None)
@given(text=TEXT, dialect=st.sampled_from(list(TopicDialect)))
def test_parse_returns_expression_or_raises_topic_expression_error(text: str, dialect: TopicDialect) -> None:
    try:
        expr = parse_expression(text, dialect, NSMAP)
    except TopicExpressionError as exc:
        assert exc.reason
        return
    assert isinstance(expr, TopicExpression)
    # What was accepted is self-consistent: the normalized text means the same thing again ...
    assert parse_expression(expr.text, expr.dialect, expr.namespaces) == expr
    # ... and a topic it names on its own is one it matches.
    topic = expr.single_topic()
    if dialect is not TopicDialect.FULL:
        assert topic is not None
    if topic is not None:
        assert expr.matches(topic)
