"""Concrete dialect (WS-Topics 1.3 §7.2): ``QName ('/' (QName | NCName))*`` naming exactly one topic."""

from __future__ import annotations

import pytest

from hiem.ns import NHIN, WSNT
from hiem.wstopics import TopicDialect, TopicExpressionError, TopicPath, parse_expression

CONCRETE = TopicDialect.CONCRETE
NSMAP: dict[str | None, str] = {"nhin": NHIN, "wsnt": WSNT}
ILI = TopicPath(NHIN, ("GIPSE", "Biosurveillance", "InfluenzaLikeIllness"))


def test_hiem_sample_expression_with_its_newlines() -> None:
    # HIEM v2.0 Appendix A, Sample Subscribe: the expression sits on its own line inside the element.
    text = "\n       nhin:GIPSE/Biosurveillance/InfluenzaLikeIllness\n     "
    expr = parse_expression(text, CONCRETE, NSMAP)
    assert expr.text == "nhin:GIPSE/Biosurveillance/InfluenzaLikeIllness"
    assert expr.namespaces == {"nhin": NHIN}
    assert expr.single_topic() == ILI
    assert not expr.is_wildcard


@pytest.mark.parametrize("text", [
    "nhin:DeidentifiedPopulationHealthData",
    "nhin:DeidentifiedPopulationHealthData/Biosurveillance",
    "nhin:DeidentifiedPopulationHealthData/Biosurveillance/Pneumonia",
])
def test_connect_gipse_expressions(text: str) -> None:
    expr = parse_expression(text, CONCRETE, NSMAP)
    assert expr.single_topic() == TopicPath(NHIN, tuple(text.removeprefix("nhin:").split("/")))


def test_unprefixed_path_without_default_namespace() -> None:
    # CONNECT's test topic "parent/child": no default namespace in scope, so no namespace.
    expr = parse_expression("parent/child", CONCRETE, NSMAP)
    assert expr.single_topic() == TopicPath("", ("parent", "child"))


def test_unprefixed_path_with_default_namespace() -> None:
    expr = parse_expression("GIPSE/Biosurveillance", CONCRETE, {None: NHIN})
    assert expr.single_topic() == TopicPath(NHIN, ("GIPSE", "Biosurveillance"))
    assert expr.namespaces == {"": NHIN}


def test_child_qname_in_the_roots_namespace_is_the_same_topic() -> None:
    # t-1.xsd ConcreteTopicExpression: ChildTopic ::= '/' (QName | NCName).
    plain = parse_expression("nhin:GIPSE/Biosurveillance/InfluenzaLikeIllness", CONCRETE, NSMAP)
    qualified = parse_expression("nhin:GIPSE/nhin:Biosurveillance/h:InfluenzaLikeIllness", CONCRETE,
                                 {**NSMAP, "h": NHIN})
    assert qualified.single_topic() == ILI
    assert qualified == plain  # normalized to NCName children, so only 'nhin' is needed
    assert qualified.namespaces == {"nhin": NHIN}


@pytest.mark.parametrize(("text", "reason"), [
    ("nhin:GIPSE/wsnt:Biosurveillance", "is in namespace 'http://docs.oasis-open.org/wsn/b-2'"),
    ("nhin:GIPSE/x:Biosurveillance", "prefix 'x' is not bound"),
    ("x:GIPSE/Biosurveillance", "prefix 'x' is not bound"),
    ("nhin:GIPSE/*", "not allowed in the Concrete dialect"),
    ("nhin:GIPSE/*", "only the Full dialect"),
    ("nhin:*", "wildcard '*'"),
    ("nhin:*/Biosurveillance", "wildcard '*'"),
    ("nhin:GIPSE//InfluenzaLikeIllness", "descendant step '//'"),
    ("//nhin:GIPSE", "descendant step '//'"),
    ("nhin://GIPSE", "descendant step '//'"),
    ("nhin:GIPSE//.", "descendant step '//'"),
    ("nhin:GIPSE/.", "self step '.'"),
    ("nhin:GIPSE|nhin:DeidentifiedPopulationHealthData", "union '|'"),
    ("nhin:GIPSE/", "child topic name is missing after '/'"),
    ("nhin:GIPSE/Biosurveillance/", "child topic name is missing after '/'"),
    ("/nhin:GIPSE", "expected a root topic name at the start of a path, found '/'"),
    ("nhin:/GIPSE", "expected a root topic name after 'nhin:'"),
    ("nhin:GIPSE///Biosurveillance", "'///'"),
    ("nhin:GIPSE/Bio:", "child topic name is missing after 'Bio:'"),
    ("nhin:GIPSE/:Bio", "expected a child topic name after '/', found ':'"),
    ("nhin:GIPSE/1Bio", "cannot start a topic name"),
    ("nhin:GIPSE/Bio surveillance", "whitespace"),
    ("nhin:GIPSE /Biosurveillance", "whitespace"),
    ("nhin:GIPSE/a:b:c", "unexpected ':'"),
    ("nhin:GIPSE/..", "no parent step"),
    ("", "empty topic expression"),
])
def test_rejected(text: str, reason: str) -> None:
    with pytest.raises(TopicExpressionError) as info:
        parse_expression(text, CONCRETE, NSMAP)
    assert reason in info.value.reason


def test_a_concrete_topic_never_covers_its_descendants() -> None:
    bio = parse_expression("nhin:GIPSE/Biosurveillance", CONCRETE, NSMAP)
    assert bio.matches(TopicPath(NHIN, ("GIPSE", "Biosurveillance")))
    assert not bio.matches(ILI)
    assert not bio.matches(TopicPath(NHIN, ("GIPSE",)))
    assert not bio.matches(TopicPath(NHIN, ("DeidentifiedPopulationHealthData", "Biosurveillance")))
    assert not bio.is_wildcard
