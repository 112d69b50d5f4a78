"""hiem/data/topics/gipse.xml: schema-valid, and it holds both the HIEM spec's and CONNECT's GIPSE trees."""

from __future__ import annotations

import pytest
from lxml import etree

from hiem import xmlsafe
from hiem.ns import NHIN, WSNT
from hiem.wstopics import TopicDialect, TopicNamespace, TopicPath, parse_expression

SYNDROMES = ["InfluenzaLikeIllness", "Influenza", "Pneumonia", "Gastrointestinal", "Respiratory", "Fever",
             "Rash", "Neurological", "Botulinic", "Hemorrhagic", "LocalizedLesion"]


def test_validates_against_t1_xsd(gipse_xml: bytes, t1_schema: etree.XMLSchema) -> None:
    t1_schema.assertValid(xmlsafe.parse(gipse_xml))


def test_schema_check_is_not_vacuous(gipse_xml: bytes, t1_schema: etree.XMLSchema) -> None:
    broken = gipse_xml.replace(b'targetNamespace="http://www.hhs.gov/healthit/nhin"', b"")
    assert broken != gipse_xml
    assert not t1_schema.validate(xmlsafe.parse(broken))


def test_names_the_source_of_its_topics(gipse_xml: bytes) -> None:
    comments = [c.text for c in xmlsafe.parse(gipse_xml).itersiblings(preceding=True)
                if isinstance(c, etree._Comment)]
    assert any("HIEM" in c and "CONNECT" in c and "BioSense" in c for c in comments)


def test_namespace_attributes(gipse: TopicNamespace) -> None:
    assert gipse.target_namespace == NHIN
    assert gipse.name == "GIPSE"
    assert gipse.final is False


def test_both_trees(gipse: TopicNamespace) -> None:
    assert [node.path.name for node in gipse.roots] == ["GIPSE", "DeidentifiedPopulationHealthData"]
    gipse_bio = TopicPath(NHIN, ("GIPSE", "Biosurveillance"))
    dphd_bio = TopicPath(NHIN, ("DeidentifiedPopulationHealthData", "Biosurveillance"))
    assert [p.name for p in gipse.paths if p.parent == gipse_bio] == SYNDROMES
    assert [p.name for p in gipse.paths if p.parent == dphd_bio] == ["Influenza", "InfluenzaLikeIllness",
                                                                      "Pneumonia"]
    assert len(gipse.nodes) == 2 + 2 + len(SYNDROMES) + 3
    assert all(not node.final and node.message_types == () for node in gipse.nodes)


def test_the_hiem_spec_sample_subscribe_names_a_gipse_topic(gipse: TopicNamespace) -> None:
    # HIEM v2.0 Appendix A, Sample Subscribe (stray '</pre>' typo removed); nhin is declared on an ancestor.
    subscribe = xmlsafe.parse(f"""<wsnt:Subscribe xmlns:wsnt="{WSNT}" xmlns:nhin="{NHIN}">
    <wsnt:Filter>
    <wsnt:TopicExpression Dialect="http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete">
       nhin:GIPSE/Biosurveillance/InfluenzaLikeIllness
     </wsnt:TopicExpression>
    </wsnt:Filter>
</wsnt:Subscribe>""".encode())
    element = subscribe.find(f"{{{WSNT}}}Filter/{{{WSNT}}}TopicExpression")
    assert element is not None
    expr = parse_expression(element.text or "", TopicDialect.from_uri(element.get("Dialect")), element.nsmap)
    assert expr.single_topic() in gipse.paths
    assert expr.expand(gipse.paths) == {TopicPath(NHIN, ("GIPSE", "Biosurveillance", "InfluenzaLikeIllness"))}


@pytest.mark.parametrize("path", [
    "DeidentifiedPopulationHealthData",
    "DeidentifiedPopulationHealthData/Biosurveillance",
    "DeidentifiedPopulationHealthData/Biosurveillance/InfluenzaLikeIllness",
    "DeidentifiedPopulationHealthData/Biosurveillance/Influenza",
    "DeidentifiedPopulationHealthData/Biosurveillance/Pneumonia",
])
def test_connect_gipse_topics_are_present(gipse: TopicNamespace, path: str) -> None:
    # The five GIPSE <topic> entries of CONNECT's hiemTopicConfiguration.xml, as CONNECT writes them.
    element = xmlsafe.parse(
        f'<wsnt:TopicExpression xmlns:wsnt="{WSNT}" xmlns:nhin="{NHIN}" '
        f'Dialect="http://docs.oasis-open.org/wsn/t-1/TopicExpression/Concrete">nhin:{path}'
        "</wsnt:TopicExpression>".encode())
    expr = parse_expression(element.text or "", TopicDialect.from_uri(element.get("Dialect")), element.nsmap)
    assert expr.single_topic() == TopicPath(NHIN, tuple(path.split("/")))
    assert expr.single_topic() in gipse.paths
