"""TopicPath, TopicNode, TopicNamespace: frozen values with the tree navigation the store needs."""

from __future__ import annotations

import dataclasses

import pytest

from hiem.ns import NHIN
from hiem.wstopics import TopicNamespace, TopicNode, TopicPath

ILI = TopicPath(NHIN, ("GIPSE", "Biosurveillance", "InfluenzaLikeIllness"))


def test_root_parent_and_name() -> None:
    assert ILI.root == TopicPath(NHIN, ("GIPSE",))
    assert ILI.parent == TopicPath(NHIN, ("GIPSE", "Biosurveillance"))
    assert ILI.parent.parent == ILI.root
    assert ILI.root.parent is None
    assert ILI.root.root == ILI.root
    assert ILI.name == "InfluenzaLikeIllness"
    assert not ILI.is_root
    assert ILI.root.is_root


def test_child_and_ancestry() -> None:
    bio = ILI.parent
    assert bio is not None
    assert bio.child("InfluenzaLikeIllness") == ILI
    assert bio.is_ancestor_of(ILI)
    assert ILI.root.is_ancestor_of(ILI)
    assert not ILI.is_ancestor_of(ILI)
    assert not ILI.is_ancestor_of(bio)
    assert not TopicPath("urn:other", ("GIPSE",)).is_ancestor_of(ILI)
    assert not TopicPath(NHIN, ("GIPS",)).is_ancestor_of(ILI)


def test_str_is_clark_like() -> None:
    assert str(ILI) == "{http://www.hhs.gov/healthit/nhin}GIPSE/Biosurveillance/InfluenzaLikeIllness"
    assert str(TopicPath("", ("parent", "child"))) == "parent/child"


def test_frozen_hashable_and_ordered() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ILI.namespace = "urn:x"  # type: ignore[misc]
    same = TopicPath(NHIN, ("GIPSE", "Biosurveillance", "InfluenzaLikeIllness"))
    assert same == ILI and hash(same) == hash(ILI)
    assert len({ILI, same, ILI.root}) == 2
    assert sorted([ILI, ILI.root]) == [ILI.root, ILI]


@pytest.mark.parametrize("path", [(), ("a/b",), ("1a",), ("",), ("a b",), ("p:a",), ("a", "-b")])
def test_names_must_be_ncnames(path: tuple[str, ...]) -> None:
    with pytest.raises(ValueError):
        TopicPath(NHIN, path)


def test_path_must_be_a_tuple() -> None:
    with pytest.raises(ValueError):
        TopicPath(NHIN, ["GIPSE"])  # type: ignore[arg-type]


def test_names_may_use_every_ncname_character() -> None:
    assert TopicPath(NHIN, ("_a.b-c9", "Grippe\u00e9", "\u0394x\u0300")).name == "\u0394x\u0300"


def test_topic_namespace_helpers() -> None:
    a = TopicNode(TopicPath("urn:x", ("a",)))
    ab = TopicNode(TopicPath("urn:x", ("a", "b")), final=True, message_types=("{urn:m}M",))
    c = TopicNode(TopicPath("urn:x", ("c",)))
    doc = TopicNamespace("urn:x", "X", False, (a, ab, c))
    assert doc.paths == (a.path, ab.path, c.path)
    assert doc.roots == (a, c)
    assert doc.get(ab.path) is ab
    assert doc.get(TopicPath("urn:x", ("zzz",))) is None
