"""Simple dialect (WS-Topics 1.3 §7.1): one root topic, a QName; nothing else."""

from __future__ import annotations

import pytest

from hiem.ns import NHIN, WSNT, XML
from hiem.wstopics import TopicDialect, TopicExpressionError, TopicPath, parse_expression

SIMPLE = TopicDialect.SIMPLE
NSMAP: dict[str | None, str] = {"nhin": NHIN, "wsnt": WSNT}


def test_prefixed_root() -> None:
    expr = parse_expression("nhin:GIPSE", SIMPLE, NSMAP)
    assert expr.dialect is SIMPLE
    assert expr.text == "nhin:GIPSE"
    assert expr.namespaces == {"nhin": NHIN}
    assert expr.single_topic() == TopicPath(NHIN, ("GIPSE",))
    assert not expr.is_wildcard


def test_surrounding_whitespace_is_ignored() -> None:
    expr = parse_expression("\n       nhin:GIPSE\n     ", SIMPLE, NSMAP)
    assert expr.text == "nhin:GIPSE"
    assert expr.single_topic() == TopicPath(NHIN, ("GIPSE",))


@pytest.mark.parametrize("default_key", [None, ""])
def test_unprefixed_name_takes_the_default_namespace(default_key: str | None) -> None:
    expr = parse_expression("GIPSE", SIMPLE, {default_key: "urn:default", "nhin": NHIN})
    assert expr.single_topic() == TopicPath("urn:default", ("GIPSE",))
    assert expr.namespaces == {"": "urn:default"}


def test_unprefixed_name_without_default_namespace_is_in_no_namespace() -> None:
    # CONNECT's test topic: <wsnt:Topic xmlns:nhin="..." Dialect="...Simple">SomeOtherTopic1</wsnt:Topic>
    expr = parse_expression("SomeOtherTopic1", SIMPLE, NSMAP)
    assert expr.single_topic() == TopicPath("", ("SomeOtherTopic1",))
    assert expr.namespaces == {}


def test_prefix_is_resolved_from_the_nsmap_not_from_its_spelling() -> None:
    expr = parse_expression("h:GIPSE", SIMPLE, {"h": NHIN})
    assert expr.single_topic() == TopicPath(NHIN, ("GIPSE",))
    assert expr.namespaces == {"h": NHIN}


def test_xml_prefix_is_always_bound() -> None:
    assert parse_expression("xml:lang", SIMPLE, {}).single_topic() == TopicPath(XML, ("lang",))


@pytest.mark.parametrize("name", ["Influenza.Like-Illness_2", "_x", "Grippe\u00e9", "a\u00b7b"])
def test_any_ncname_is_a_topic_name(name: str) -> None:
    # '.', '-', digits and combining characters are NCName characters (not at the start).
    assert parse_expression(f"nhin:{name}", SIMPLE, NSMAP).single_topic() == TopicPath(NHIN, (name,))


@pytest.mark.parametrize(("text", "reason"), [
    ("nhin:GIPSE/Biosurveillance", "use the Concrete dialect"),
    ("nhin:GIPSE/", "not allowed in the Simple dialect"),
    ("nhin:*", "wildcard '*'"),
    ("*", "wildcard '*'"),
    ("nhin:a|nhin:b", "union '|'"),
    ("//nhin:a", "'//'"),
    ("nhin://a", "'//'"),
    (".", "self step"),
    ("nhin:.", "self step"),
    ("nhin:", "root topic name is missing after 'nhin:'"),
    (":a", "expected a root topic name at the start of a path, found ':'"),
    ("a:b:c", "unexpected ':'"),
    ("x:a", "prefix 'x' is not bound"),
    ("xmlns:a", "prefix 'xmlns' is not bound"),
    ("", "empty topic expression"),
    ("   \n ", "empty topic expression"),
    ("nhin:a b", "whitespace at position 7"),
    ("nhin:a\tb", "whitespace"),
    ("1a", "cannot start a topic name"),
    ("nhin:-a", "cannot start a topic name"),
    ("nhin:a*", "a Simple expression is a single QName"),
    ("nhin:a#", "character '#'"),
    ("nhin:a\u00a0", "U+00A0"),  # NBSP is not XML whitespace and not a name character
])
def test_rejected(text: str, reason: str) -> None:
    with pytest.raises(TopicExpressionError) as info:
        parse_expression(text, SIMPLE, NSMAP)
    assert reason in info.value.reason


def test_matches_only_that_root() -> None:
    expr = parse_expression("nhin:GIPSE", SIMPLE, NSMAP)
    assert expr.matches(TopicPath(NHIN, ("GIPSE",)))
    assert not expr.matches(TopicPath(NHIN, ("GIPSE", "Biosurveillance")))
    assert not expr.matches(TopicPath("urn:other", ("GIPSE",)))
    assert not expr.matches(TopicPath(NHIN, ("GIPSEX",)))
