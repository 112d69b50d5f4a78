"""render_topic writes a matched topic in the subscription's dialect; parsing it back gives the topic."""

from __future__ import annotations

import pytest

from hiem.ns import NHIN
from hiem.wstopics import TopicDialect, TopicNamespace, TopicPath, parse_expression, render_topic

ILI = TopicPath(NHIN, ("GIPSE", "Biosurveillance", "InfluenzaLikeIllness"))


def test_simple_root() -> None:
    assert render_topic(ILI.root, TopicDialect.SIMPLE) == ("tns:GIPSE", {"tns": NHIN})
    assert render_topic(ILI.root, TopicDialect.SIMPLE, prefix="nhin") == ("nhin:GIPSE", {"nhin": NHIN})


def test_simple_refuses_a_non_root_topic() -> None:
    with pytest.raises(ValueError, match="root topics only"):
        render_topic(ILI, TopicDialect.SIMPLE)


@pytest.mark.parametrize("dialect", [TopicDialect.CONCRETE, TopicDialect.FULL])
def test_paths(dialect: TopicDialect) -> None:
    text, nsmap = render_topic(ILI, dialect, "nhin")
    assert (text, nsmap) == ("nhin:GIPSE/Biosurveillance/InfluenzaLikeIllness", {"nhin": NHIN})
    assert render_topic(ILI.root, dialect) == ("tns:GIPSE", {"tns": NHIN})


def test_no_namespace_is_unprefixed_without_declaration() -> None:
    topic = TopicPath("", ("parent", "child"))
    assert render_topic(topic, TopicDialect.CONCRETE) == ("parent/child", {})
    assert parse_expression("parent/child", TopicDialect.CONCRETE, {}).single_topic() == topic


@pytest.mark.parametrize("prefix", ["", "1x", "a:b", "a b", "xmlns", "xml", "XMLfoo"])
def test_bad_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        render_topic(ILI, TopicDialect.CONCRETE, prefix)


def test_round_trip_over_the_gipse_trees(gipse: TopicNamespace) -> None:
    checked = 0
    for topic in gipse.paths:
        dialects = list(TopicDialect) if topic.is_root else [TopicDialect.CONCRETE, TopicDialect.FULL]
        for dialect in dialects:
            text, nsmap = render_topic(topic, dialect, "p")
            expr = parse_expression(text, dialect, nsmap)
            assert expr.single_topic() == topic
            assert expr.expand(gipse.paths) == {topic}
            checked += 1
    assert checked == 18 * 2 + 2
