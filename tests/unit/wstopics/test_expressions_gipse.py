"""Compiling subscriptions against the GIPSE trees: ``expand`` is exact for every dialect."""

from __future__ import annotations

import pytest

from hiem.ns import NHIN
from hiem.wstopics import TopicDialect, TopicNamespace, TopicPath, parse_expression

NSMAP: dict[str | None, str] = {"nhin": NHIN}
SYNDROMES = ("InfluenzaLikeIllness", "Influenza", "Pneumonia", "Gastrointestinal", "Respiratory", "Fever",
             "Rash", "Neurological", "Botulinic", "Hemorrhagic", "LocalizedLesion")
GIPSE_BIO = TopicPath(NHIN, ("GIPSE", "Biosurveillance"))
DPHD_BIO = TopicPath(NHIN, ("DeidentifiedPopulationHealthData", "Biosurveillance"))


def _expand(gipse: TopicNamespace, text: str, dialect: TopicDialect) -> set[TopicPath]:
    return parse_expression(text, dialect, NSMAP).expand(gipse.paths)


def test_hiem_sample_subscription_covers_one_topic(gipse: TopicNamespace) -> None:
    text = "\n       nhin:GIPSE/Biosurveillance/InfluenzaLikeIllness\n     "
    assert _expand(gipse, text, TopicDialect.CONCRETE) == {GIPSE_BIO.child("InfluenzaLikeIllness")}


@pytest.mark.parametrize("dialect", [TopicDialect.CONCRETE, TopicDialect.FULL])
def test_a_plain_path_never_covers_descendants(gipse: TopicNamespace, dialect: TopicDialect) -> None:
    assert _expand(gipse, "nhin:GIPSE/Biosurveillance", dialect) == {GIPSE_BIO}
    assert _expand(gipse, "nhin:GIPSE", dialect) == {GIPSE_BIO.root}


def test_simple_root_covers_only_the_root(gipse: TopicNamespace) -> None:
    assert _expand(gipse, "nhin:DeidentifiedPopulationHealthData", TopicDialect.SIMPLE) == {DPHD_BIO.root}


@pytest.mark.parametrize(("text", "expected"), [
    ("nhin:GIPSE/Biosurveillance/*", {GIPSE_BIO.child(s) for s in SYNDROMES}),
    ("nhin:GIPSE/Biosurveillance//.", {GIPSE_BIO, *(GIPSE_BIO.child(s) for s in SYNDROMES)}),
    ("nhin:GIPSE//*", {GIPSE_BIO, *(GIPSE_BIO.child(s) for s in SYNDROMES)}),
    ("nhin:GIPSE//.", {GIPSE_BIO.root, GIPSE_BIO, *(GIPSE_BIO.child(s) for s in SYNDROMES)}),
    ("nhin://InfluenzaLikeIllness", {GIPSE_BIO.child("InfluenzaLikeIllness"),
                                     DPHD_BIO.child("InfluenzaLikeIllness")}),
    ("nhin:*/Biosurveillance", {GIPSE_BIO, DPHD_BIO}),
    ("nhin:*", {GIPSE_BIO.root, DPHD_BIO.root}),
    ("nhin:*/*/Pneumonia", {GIPSE_BIO.child("Pneumonia"), DPHD_BIO.child("Pneumonia")}),
    ("nhin:DeidentifiedPopulationHealthData/Biosurveillance/Influenza|nhin:GIPSE/Biosurveillance/Influenza",
     {DPHD_BIO.child("Influenza"), GIPSE_BIO.child("Influenza")}),
    ("nhin:DeidentifiedPopulationHealthData//Rash", set()),
])
def test_full_expressions(gipse: TopicNamespace, text: str, expected: set[TopicPath]) -> None:
    assert _expand(gipse, text, TopicDialect.FULL) == expected


def test_every_topic_of_the_namespace(gipse: TopicNamespace) -> None:
    assert _expand(gipse, "nhin://*", TopicDialect.FULL) == set(gipse.paths)
    assert len(gipse.paths) == 18


def test_other_namespaces_are_never_covered(gipse: TopicNamespace) -> None:
    expr = parse_expression("o://*", TopicDialect.FULL, {"o": "urn:other"})
    assert expr.expand(gipse.paths) == set()


def test_expand_of_nothing_is_empty() -> None:
    assert parse_expression("nhin://*", TopicDialect.FULL, NSMAP).expand([]) == set()
