"""Differential test: the parser accepts exactly the strings t-1.xsd's own grammar types accept.

t-1.xsd defines the three dialects as simple types (FullTopicExpression and ConcreteTopicExpression are
patterns over xsd:token, SimpleTopicExpression is xsd:QName). libxml2 validates candidate strings against
those types; the parser must agree on every string over a small alphabet, up to a length that covers
every pair and triple of constructs. Every prefix a string uses, and the default namespace, are bound
to one namespace, so only syntax is compared (the parser's one semantic refusal, a child QName in
another namespace than its root, cannot arise).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from lxml import etree

from hiem.wstopics import TopicDialect, TopicExpressionError, parse_expression

TEST_NS = "urn:hiem:test:grammar"
TOPIC_NS = "urn:t"
ELEMENTS = {TopicDialect.FULL: "full", TopicDialect.CONCRETE: "concrete", TopicDialect.SIMPLE: "simple"}
ALPHABET = ("t", "a", ":", "/", "*", ".", "|")
MAX_LENGTH = 5
_PREFIX = re.compile(r"([ta][ta.]*):")

CURATED = [
    "t:a/b", "t:a//b", "t://a", "t:*/b//.", "a//.", "t:a/t:b", "t:a.b/c", "t:a/.", "t:a|t:b//*",
    "t:a.", "t:a..", "t:a/..", "t:a/.a", "t:a/t:*", "t:a/*:b", "*:a", "t:*", "//t:a", "t:a///b",
    " t:a/b ", "\nt:a\n", "t:a /b", "t:a| t:b", "ta:at/a.t//*|a:*", "t:_a-1/b.2",
]


@pytest.fixture(scope="module")
def validator(t1_schema_file: Path) -> etree.XMLSchema:
    wrapper = f"""<xsd:schema xmlns:xsd="http://www.w3.org/2001/XMLSchema"
        xmlns:wstop="http://docs.oasis-open.org/wsn/t-1" targetNamespace="{TEST_NS}"
        elementFormDefault="qualified">
      <xsd:import namespace="http://docs.oasis-open.org/wsn/t-1" schemaLocation="{t1_schema_file.as_uri()}"/>
      <xsd:element name="full" type="wstop:FullTopicExpression"/>
      <xsd:element name="concrete" type="wstop:ConcreteTopicExpression"/>
      <xsd:element name="simple" type="wstop:SimpleTopicExpression"/>
    </xsd:schema>"""
    # Our own trusted wrapper: parsed with a plain offline parser, because the hardened one (rightly)
    # refuses to let libxml2 load the imported schema file.
    return etree.XMLSchema(etree.fromstring(wrapper.encode(), etree.XMLParser(no_network=True)))


def _schema_accepts(validator: etree.XMLSchema, text: str, dialect: TopicDialect, prefixes: set[str]) -> bool:
    nsmap = {"x": TEST_NS, None: TOPIC_NS, **{prefix: TOPIC_NS for prefix in prefixes}}
    element = etree.Element(f"{{{TEST_NS}}}{ELEMENTS[dialect]}", nsmap=nsmap)
    element.text = text
    return bool(validator.validate(element))


def _parser_accepts(text: str, dialect: TopicDialect, prefixes: set[str]) -> bool:
    try:
        parse_expression(text, dialect, {None: TOPIC_NS, **{prefix: TOPIC_NS for prefix in prefixes}})
    except TopicExpressionError:
        return False
    return True


def _candidates() -> list[str]:
    lengths = range(1, MAX_LENGTH + 1)
    generated = ("".join(chars) for n in lengths for chars in itertools.product(ALPHABET, repeat=n))
    return [*generated, *CURATED]


@pytest.mark.parametrize("dialect", list(TopicDialect))
def test_parser_agrees_with_t1_xsd(validator: etree.XMLSchema, dialect: TopicDialect) -> None:
    disagreements = []
    accepted = 0
    for text in _candidates():
        prefixes = set(_PREFIX.findall(text))
        expected = _schema_accepts(validator, text, dialect, prefixes)
        accepted += expected
        if _parser_accepts(text, dialect, prefixes) != expected:
            disagreements.append((text, expected))
    assert disagreements == []
    assert accepted > 20  # the oracle really accepts things (the wrapper schema is wired up)


def test_oracle_rejects_what_it_should(validator: etree.XMLSchema) -> None:
    assert _schema_accepts(validator, "t:a/b", TopicDialect.CONCRETE, {"t"})
    assert not _schema_accepts(validator, "t:a/*", TopicDialect.CONCRETE, {"t"})
    assert not _schema_accepts(validator, "t:a/b", TopicDialect.SIMPLE, {"t"})
    assert _schema_accepts(validator, "t:a//.", TopicDialect.FULL, {"t"})
