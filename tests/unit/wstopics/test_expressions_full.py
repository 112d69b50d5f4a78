"""Full dialect (WS-Topics 1.3 §7.3): '/', '//', '*', '.', '|' over topic trees, exactly.

The tree used here (namespace ``urn:t``, prefix ``t``)::

    a            x
    +-- b        +-- b
    |   +-- c
    |       +-- e
    +-- d

plus ``a`` and ``a/b`` in ``urn:o`` and ``n`` in no namespace, to show nothing leaks across namespaces.
"""

from __future__ import annotations

import pytest

from hiem.wstopics import TopicDialect, TopicExpressionError, TopicPath, parse_expression

FULL = TopicDialect.FULL
T, OTHER = "urn:t", "urn:o"
NSMAP: dict[str | None, str] = {"t": T, "o": OTHER, "t2": T}


def _t(path: str, namespace: str = T) -> TopicPath:
    return TopicPath(namespace, tuple(path.split("/")))


TREE = {_t(p) for p in ("a", "a/b", "a/b/c", "a/b/c/e", "a/d", "x", "x/b")}
KNOWN = TREE | {_t("a", OTHER), _t("a/b", OTHER), _t("n", "")}


@pytest.mark.parametrize(("text", "expected"), [
    ("t:a", {"a"}),
    ("t:a/b", {"a/b"}),
    ("t:a/b/c/e", {"a/b/c/e"}),
    ("t:a/*", {"a/b", "a/d"}),
    ("t:a/*/*", {"a/b/c"}),
    ("t:a//*", {"a/b", "a/b/c", "a/b/c/e", "a/d"}),
    ("t:a//.", {"a", "a/b", "a/b/c", "a/b/c/e", "a/d"}),
    ("t:a/b//.", {"a/b", "a/b/c", "a/b/c/e"}),
    ("t:a/b//*", {"a/b/c", "a/b/c/e"}),
    ("t:a/.", {"a"}),
    ("t:a/./b", {"a/b"}),
    ("t:a//./c", {"a/b/c"}),
    ("t:a//c", {"a/b/c"}),
    ("t:a//e", {"a/b/c/e"}),
    ("t:a/*/c", {"a/b/c"}),
    ("t:a//b", {"a/b"}),
    ("t:*", {"a", "x"}),
    ("t:*/b", {"a/b", "x/b"}),
    ("t:*//.", {"a", "a/b", "a/b/c", "a/b/c/e", "a/d", "x", "x/b"}),
    ("t://*", {"a", "a/b", "a/b/c", "a/b/c/e", "a/d", "x", "x/b"}),
    ("t://b", {"a/b", "x/b"}),
    ("t://b/c", {"a/b/c"}),
    ("t://c//.", {"a/b/c", "a/b/c/e"}),
    ("t:a|t:x", {"a", "x"}),
    ("t:a/b|t:a/d|t:a/b", {"a/b", "a/d"}),
    ("t:a/t:b", {"a/b"}),
    ("t:a/t2:b/c", {"a/b/c"}),
    ("t2:a/b", {"a/b"}),
    ("t:zzz", set()),
    ("t:a/zzz//*", set()),
])
def test_selects_exactly(text: str, expected: set[str]) -> None:
    expr = parse_expression(text, FULL, NSMAP)
    assert expr.expand(KNOWN) == {_t(p) for p in expected}
    for topic in KNOWN:
        assert expr.matches(topic) == (topic in expr.expand(KNOWN))


def test_union_across_namespaces() -> None:
    expr = parse_expression("t:a/b|o:a/b", FULL, NSMAP)
    assert expr.expand(KNOWN) == {_t("a/b"), _t("a/b", OTHER)}
    assert expr.namespaces == {"t": T, "o": OTHER}
    assert expr.single_topic() is None
    assert not expr.is_wildcard


def test_unprefixed_root_and_wildcard_use_the_default_namespace() -> None:
    assert parse_expression("*", FULL, {None: T}).expand(KNOWN) == {_t("a"), _t("x")}
    assert parse_expression("//b", FULL, {None: T}).expand(KNOWN) == {_t("a/b"), _t("x/b")}
    assert parse_expression("a/*", FULL, {None: OTHER}).expand(KNOWN) == {_t("a/b", OTHER)}


def test_unprefixed_without_default_namespace_selects_no_namespace_topics() -> None:
    assert parse_expression("//*", FULL, NSMAP).expand(KNOWN) == {_t("n", "")}
    assert parse_expression("*", FULL, {}).expand(KNOWN) == {_t("n", "")}


def test_no_implicit_descendants() -> None:
    expr = parse_expression("t:a/b", FULL, NSMAP)
    assert expr.matches(_t("a/b"))
    assert not expr.matches(_t("a/b/c"))
    assert not expr.matches(_t("a"))
    assert not parse_expression("t:a/*", FULL, NSMAP).matches(_t("a/b/c"))
    assert not parse_expression("t:a//*", FULL, NSMAP).matches(_t("a"))


@pytest.mark.parametrize(("text", "topic"), [
    ("t:a/b", _t("a/b")),
    ("t:a/b/.", _t("a/b")),
    ("t:a/./b/.", _t("a/b")),
    ("t:a", _t("a")),
    ("a/b", _t("a/b", "")),
])
def test_single_topic_for_plain_paths(text: str, topic: TopicPath) -> None:
    expr = parse_expression(text, FULL, NSMAP)
    assert expr.single_topic() == topic
    assert not expr.is_wildcard


@pytest.mark.parametrize("text", ["t:a/*", "t:*", "t:a//.", "t:a//b", "t://a", "t:a|t:x", "t:a/b|t:a/b"])
def test_no_single_topic_for_patterns_and_unions(text: str) -> None:
    assert parse_expression(text, FULL, NSMAP).single_topic() is None


@pytest.mark.parametrize(("text", "wildcard"), [
    ("t:a", False), ("t:a/b/.", False), ("t:a|t:x", False),
    ("t:a/*", True), ("t:*", True), ("t:a//.", True), ("t://b", True), ("t:a|t:x/*", True),
])
def test_is_wildcard(text: str, wildcard: bool) -> None:
    assert parse_expression(text, FULL, NSMAP).is_wildcard is wildcard


def test_wildcards_cover_topics_added_later() -> None:
    later = _t("a/b/new")
    assert parse_expression("t:a/b/*", FULL, NSMAP).matches(later)
    assert parse_expression("t:a//.", FULL, NSMAP).matches(later)
    assert not parse_expression("t:a/b", FULL, NSMAP).matches(later)


@pytest.mark.parametrize(("text", "normalized", "namespaces"), [
    ("\n  t:a//.\n ", "t:a//.", {"t": T}),
    ("t:a/t2:b", "t:a/b", {"t": T}),
    ("t:a|o:b/*", "t:a|o:b/*", {"t": T, "o": OTHER}),
    ("t2://*", "t2://*", {"t2": T}),
    ("a|t:b", "a|t:b", {"t": T}),
])
def test_normalized_text_and_namespaces(text: str, normalized: str, namespaces: dict[str, str]) -> None:
    expr = parse_expression(text, FULL, NSMAP)
    assert expr.text == normalized
    assert expr.namespaces == namespaces
    assert parse_expression(expr.text, expr.dialect, expr.namespaces) == expr


def test_default_namespace_is_stored_under_the_empty_prefix() -> None:
    expr = parse_expression("a//.|o:x", FULL, {None: T, "o": OTHER})
    assert expr.namespaces == {"": T, "o": OTHER}
    again = parse_expression(expr.text, FULL, expr.namespaces)
    subtree = {_t(p) for p in ("a", "a/b", "a/b/c", "a/b/c/e", "a/d")}
    assert again.expand(KNOWN) == expr.expand(KNOWN) == subtree


def test_namespaces_is_a_copy() -> None:
    expr = parse_expression("t:a", FULL, NSMAP)
    expr.namespaces["t"] = "urn:changed"
    assert expr.namespaces == {"t": T}


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty topic expression"),
    ("|", "root topic name is missing at the start of a path"),
    ("t:a|", "root topic name is missing after '|'"),
    ("|t:a", "root topic name is missing at the start of a path"),
    ("t:a||t:b", "root topic name is missing after '|'"),
    ("t:a/", "child topic name is missing after '/'"),
    ("t:a//", "child topic name is missing after '//'"),
    ("t:a/|t:b", "child topic name is missing after '/'"),
    ("t:a///b", "'///'"),
    ("t:a////b", "'////'"),
    ("/t:a", "found '/'"),
    ("t:/a", "after 't:'"),
    ("t:///a", "'///'"),
    ("t://", "root topic name is missing after 't://'"),
    ("//", "root topic name is missing after '//'"),
    ("t:a/t:*", "only the root topic may be a prefixed wildcard"),
    ("*:a", "unexpected ':'"),
    ("t:*:a", "unexpected ':'"),
    ("t:a:b", "unexpected ':'"),
    ("t:a/b:c:d", "unexpected ':'"),
    ("t:a/..", "no parent step"),
    ("t:a/.b", "unexpected 'b'"),
    ("t:a*", "unexpected '*'"),
    ("t:**", "unexpected '*'"),
    (".", "self step"),
    ("t:.", "self step"),
    ("t:a/b/", "missing"),
    ("t:a | t:b", "whitespace"),
    ("t:a/ b", "whitespace"),
    ("t:a\nb", "whitespace"),
    ("t:a/1b", "cannot start a topic name"),
    ("t:a/-b", "cannot start a topic name"),
    ("t:a[1]", "character '['"),
    ("t:a/@b", "character '@'"),
    ("t:a/b()", "character '('"),
    ("x:a", "prefix 'x' is not bound"),
    ("t:a|x:b", "prefix 'x' is not bound"),
    ("t:a/x:b", "prefix 'x' is not bound"),
    ("t:a/o:b", "is in namespace 'urn:o' but its root topic is in 'urn:t'"),
    ("t:" + "a" * 5000, "exceeds the limit"),
])
def test_rejected(text: str, reason: str) -> None:
    with pytest.raises(TopicExpressionError) as info:
        parse_expression(text, FULL, NSMAP)
    assert reason in info.value.reason


def test_a_dot_inside_a_name_is_part_of_the_name() -> None:
    # '.' is an NCName character: "t:a." is the topic "a.", not "a" followed by a self step.
    assert parse_expression("t:a.", FULL, NSMAP).single_topic() == _t("a.")
    assert parse_expression("t:a/b.c/.", FULL, NSMAP).single_topic() == _t("a/b.c")


def test_syntax_errors_win_over_unbound_prefixes() -> None:
    with pytest.raises(TopicExpressionError) as info:
        parse_expression("x:a/", FULL, NSMAP)
    assert "missing" in info.value.reason
