"""Fixtures shared by the WS-Topics engine tests: the GIPSE tree and the WS-Topics 1.3 schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from hiem import xmlsafe
from hiem.wstopics import TopicNamespace, parse_topic_namespace

REPO = Path(__file__).resolve().parents[3]
GIPSE_XML = REPO / "topics" / "gipse.xml"
# The reference copy whose imports resolve offline; the project's own wsdl/ copy when it is absent (CI).
_SCHEMA_CANDIDATES = (REPO.parent / "shared" / "schemas" / "cxf" / "t-1.xsd", REPO / "wsdl" / "t-1.xsd")


@pytest.fixture(scope="session")
def t1_schema_file() -> Path:
    """Where t-1.xsd is on disk."""
    for candidate in _SCHEMA_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("t-1.xsd not found in ../shared/schemas/cxf/ nor wsdl/")


@pytest.fixture(scope="session")
def t1_schema(t1_schema_file: Path) -> etree.XMLSchema:
    """WS-Topics 1.3 t-1.xsd, loaded through the hardened parser."""
    return etree.XMLSchema(xmlsafe.parse_file(str(t1_schema_file)))


@pytest.fixture(scope="session")
def gipse_xml() -> bytes:
    """The bytes of topics/gipse.xml."""
    return GIPSE_XML.read_bytes()


@pytest.fixture(scope="session")
def gipse(gipse_xml: bytes) -> TopicNamespace:
    """topics/gipse.xml, parsed."""
    return parse_topic_namespace(gipse_xml)
