"""The package exports a short, exact public surface (checked the way httpx checks its own)."""

from __future__ import annotations

import inspect

import hiem.wstopics

EXPECTED = {
    "TopicDialect",
    "TopicExpression",
    "TopicExpressionError",
    "TopicNamespace",
    "TopicNamespaceError",
    "TopicNode",
    "TopicPath",
    "UnknownDialectError",
    "parse_expression",
    "parse_topic_namespace",
    "render_topic",
    "topic_set_element",
}


def test_all_is_the_public_api() -> None:
    assert set(hiem.wstopics.__all__) == EXPECTED
    assert len(hiem.wstopics.__all__) == len(EXPECTED)


def test_every_public_attribute_is_exported() -> None:
    public = {
        name for name, value in vars(hiem.wstopics).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert public == set(hiem.wstopics.__all__)
