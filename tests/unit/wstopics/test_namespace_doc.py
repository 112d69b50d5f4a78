"""Reading TopicNamespace documents and building the wstop:TopicSet (t-1.xsd)."""

from __future__ import annotations

import pytest
from lxml import etree

from hiem import xmlsafe
from hiem.ns import NHIN, WSTOP
from hiem.wstopics import TopicNamespace, TopicNamespaceError, TopicNode, TopicPath, parse_topic_namespace
from hiem.wstopics import topic_set_element as build_topic_set

W = f'xmlns:wstop="{WSTOP}"'


def _doc(body: str, attrs: str = 'targetNamespace="urn:x"', extra: str = "") -> bytes:
    return f"<wstop:TopicNamespace {W} {extra} {attrs}>{body}</wstop:TopicNamespace>".encode()


def _x(path: str) -> TopicPath:
    return TopicPath("urn:x", tuple(path.split("/")))


def test_reads_nested_topics_in_document_order() -> None:
    doc = parse_topic_namespace(_doc(
        '<wstop:documentation>d</wstop:documentation>'
        '<wstop:Topic name="a"><wstop:Topic name="b" final="true"><wstop:Topic name="c"/></wstop:Topic>'
        '<wstop:Topic name="d"/></wstop:Topic><!-- comment --><wstop:Topic name="e"/>',
        attrs='targetNamespace=" urn:x " name="X" final="1"'))
    assert doc == TopicNamespace("urn:x", "X", True, (
        TopicNode(_x("a")), TopicNode(_x("a/b"), final=True), TopicNode(_x("a/b/c")), TopicNode(_x("a/d")),
        TopicNode(_x("e")),
    ))


def test_defaults() -> None:
    doc = parse_topic_namespace(_doc(""))
    assert (doc.name, doc.final, doc.nodes) == (None, False, ())


def test_message_types_are_resolved_qnames() -> None:
    doc = parse_topic_namespace(_doc(
        '<wstop:Topic name="a" messageTypes=" m:One&#10;Two  m:Three" xmlns:m="urn:m" xmlns="urn:d"/>'
        '<wstop:Topic name="b" messageTypes="Plain"/>'))
    assert doc.nodes[0].message_types == ("{urn:m}One", "{urn:d}Two", "{urn:m}Three")
    assert doc.nodes[1].message_types == ("Plain",)


def test_extensions_and_message_pattern_are_ignored() -> None:
    doc = parse_topic_namespace(_doc(
        '<e:ext xmlns:e="urn:e"/><wstop:Topic name="a" e:attr="1" xmlns:e="urn:e">'
        '<wstop:MessagePattern Dialect="http://www.w3.org/TR/1999/REC-xpath-19991116">//x</wstop:MessagePattern>'
        '<e:more/></wstop:Topic>'))
    assert doc.paths == (_x("a"),)


def test_parent_attribute_attaches_a_top_level_topic() -> None:
    doc = parse_topic_namespace(_doc(
        '<wstop:Topic name="late" parent="x:a/b"/>'
        '<wstop:Topic name="a"><wstop:Topic name="b"/></wstop:Topic>'
        '<wstop:Topic name="deeper" parent="x:a/b/late"/>', extra='xmlns:x="urn:x"'))
    assert doc.paths == (_x("a"), _x("a/b"), _x("a/b/late"), _x("a/b/late/deeper"))
    for index, path in enumerate(doc.paths):  # parents always come first
        assert path.parent is None or path.parent in doc.paths[:index]


@pytest.mark.parametrize(("document", "reason"), [
    (f'<wstop:TopicSet {W}/>'.encode(), "root element"),
    (b'<TopicNamespace targetNamespace="urn:x"/>', "root element"),
    (_doc("", attrs=""), "no targetNamespace"),
    (_doc("", attrs='targetNamespace="urn:x" name="not a name"'), "not an NCName"),
    (_doc("", attrs='targetNamespace="urn:x" final="yes"'), "xsd:boolean"),
    (_doc('<wstop:Topic name="1abc"/>'), "not an NCName"),
    (_doc('<wstop:Topic name="a b"/>'), "not an NCName"),
    (_doc('<wstop:Topic name="p:a"/>'), "not an NCName"),
    (_doc('<wstop:Topic name=""/>'), "not an NCName"),
    (_doc('<wstop:Topic/>'), "has no name"),
    (_doc('<wstop:Topic name="a"/><wstop:Topic name="a"/>'), "duplicate topic name 'a'"),
    (_doc('<wstop:Topic name="a"><wstop:Topic name="b"/><wstop:Topic name=" b "/></wstop:Topic>'),
     "duplicate topic name 'b'"),
    (_doc('<wstop:Topic name="a"><wstop:Topic name="b"/></wstop:Topic><wstop:Topic name="b" parent="x:a"/>',
          extra='xmlns:x="urn:x"'), "duplicate topic name 'b'"),
    (_doc('<wstop:Topic name="a" final="maybe"/>'), "xsd:boolean"),
    (_doc('<wstop:Topic name="b" parent="x:nowhere"/>', extra='xmlns:x="urn:x"'), "does not declare"),
    (_doc('<wstop:Topic name="a"/><wstop:Topic name="b" parent="y:a"/>', extra='xmlns:y="urn:y"'),
     "not in this document's targetNamespace"),
    (_doc('<wstop:Topic name="a"/><wstop:Topic name="b" parent="x:a/*"/>', extra='xmlns:x="urn:x"'),
     "not a Concrete topic expression"),
    (_doc('<wstop:Topic name="a"/><wstop:Topic name="b" parent="z:a"/>'), "prefix 'z' is not bound"),
    (_doc('<wstop:Topic name="a"><wstop:Topic name="b" parent="x:a"/></wstop:Topic>',
          extra='xmlns:x="urn:x"'), "only top-level"),
    (_doc('<wstop:topic name="a"/>'), "unexpected"),
    (_doc('<wstop:Topic name="a"><wstop:Topics name="b"/></wstop:Topic>'), "unexpected"),
    (_doc('<wstop:Topic name="a" messageTypes="q:M"/>'), "messageTypes"),
    (_doc('<wstop:Topic name="a" messageTypes="1M"/>'), "messageTypes"),
    (b"<wstop:TopicNamespace", "unreadable"),
    (b'<!DOCTYPE x [<!ENTITY e "e">]><x/>', "unreadable"),
    (b"", "unreadable"),
])
def test_rejected(document: bytes, reason: str) -> None:
    with pytest.raises(TopicNamespaceError) as info:
        parse_topic_namespace(document)
    assert reason in info.value.reason


def test_error_names_the_line() -> None:
    with pytest.raises(TopicNamespaceError, match=r"line 3"):
        parse_topic_namespace(_doc('\n<wstop:Topic name="a"/>\n<wstop:Topic name="a"/>'))


def test_accepted_documents_are_schema_valid(t1_schema: etree.XMLSchema) -> None:
    document = _doc('<wstop:Topic name="a" messageTypes="m:M" xmlns:m="urn:m">'
                    '<wstop:Topic name="b"/></wstop:Topic>'
                    '<wstop:Topic name="c" parent="x:a/b"/>', extra='xmlns:x="urn:x"')
    parse_topic_namespace(document)
    t1_schema.assertValid(xmlsafe.parse(document))


# -- TopicSet -------------------------------------------------------------------------------------------

def _paths_of(topic_set: etree._Element) -> list[TopicPath]:
    """Read the topic paths back out of a TopicSet element, in document order."""
    found = []
    for element in topic_set.iterdescendants():
        assert element.get(f"{{{WSTOP}}}topic") == "true"
        chain = [*list(element.iterancestors())[::-1][1:], element]  # without the TopicSet itself
        names = [etree.QName(e).localname for e in chain]
        found.append(TopicPath(etree.QName(element).namespace or "", tuple(names)))
    return found


def test_topic_set_of_gipse_is_valid_and_complete(gipse: TopicNamespace, t1_schema: etree.XMLSchema) -> None:
    topic_set = build_topic_set([gipse])
    t1_schema.assertValid(topic_set)
    assert topic_set.tag == f"{{{WSTOP}}}TopicSet"
    assert [etree.QName(e).localname for e in topic_set] == ["GIPSE", "DeidentifiedPopulationHealthData"]
    assert _paths_of(topic_set) == list(gipse.paths)
    assert topic_set.nsmap == {"wstop": WSTOP, "nhin": NHIN}


def test_topic_set_merges_trees_of_one_namespace(t1_schema: etree.XMLSchema) -> None:
    first = parse_topic_namespace(_doc('<wstop:Topic name="a"><wstop:Topic name="b"/></wstop:Topic>'))
    second = parse_topic_namespace(_doc('<wstop:Topic name="a"><wstop:Topic name="c"/></wstop:Topic>'
                                        '<wstop:Topic name="d"/>'))
    other = parse_topic_namespace(_doc('<wstop:Topic name="a"/>', attrs='targetNamespace="urn:y"'))
    topic_set = build_topic_set([first, second, other])
    t1_schema.assertValid(topic_set)
    assert _paths_of(topic_set) == [_x("a"), _x("a/b"), _x("a/c"), _x("d"), TopicPath("urn:y", ("a",))]
    assert set(topic_set.nsmap.values()) == {WSTOP, "urn:x", "urn:y"}


def test_empty_topic_set_is_valid(t1_schema: etree.XMLSchema) -> None:
    topic_set = build_topic_set([])
    t1_schema.assertValid(topic_set)
    assert len(topic_set) == 0


@pytest.mark.parametrize("namespace", ["", WSTOP])
def test_topic_set_refuses_namespaces_the_schema_cannot_hold(namespace: str) -> None:
    doc = TopicNamespace(namespace, None, False, (TopicNode(TopicPath(namespace, ("a",))),))
    with pytest.raises(ValueError, match="##other"):
        build_topic_set([doc])


def test_topic_set_refuses_an_orphan_topic() -> None:
    doc = TopicNamespace("urn:x", None, False, (TopicNode(_x("a/b")),))
    with pytest.raises(ValueError, match="no parent topic"):
        build_topic_set([doc])


def test_schema_check_is_not_vacuous(t1_schema: etree.XMLSchema) -> None:
    # The same shape with a wrong wstop:topic value must fail, or the validity tests above prove nothing.
    bad = xmlsafe.parse(
        f'<wstop:TopicSet {W} xmlns:n="urn:n"><n:a wstop:topic="yes"/></wstop:TopicSet>'.encode())
    assert not t1_schema.validate(bad)
