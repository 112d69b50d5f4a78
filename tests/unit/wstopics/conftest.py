"""Fixtures shared by the WS-Topics engine tests: the GIPSE tree and the WS-Topics 1.3 schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from hiem import xmlsafe
from hiem.app.bootstrap import BUNDLED_TOPICS
from hiem.contract import WSDL_DIR
from hiem.wstopics import TopicNamespace, parse_topic_namespace

GIPSE_XML = BUNDLED_TOPICS / "gipse.xml"


@pytest.fixture(scope="session")
def t1_schema_file() -> Path:
    """t-1.xsd as hiem ships it (imports rewritten to sibling files, so it compiles offline)."""
    return WSDL_DIR / "t-1.xsd"


@pytest.fixture(scope="session")
def t1_schema(t1_schema_file: Path) -> etree.XMLSchema:
    """WS-Topics 1.3 t-1.xsd, loaded through the hardened parser."""
    return etree.XMLSchema(xmlsafe.parse_file(str(t1_schema_file)))


@pytest.fixture(scope="session")
def gipse_xml() -> bytes:
    """The bytes of the bundled gipse.xml."""
    return GIPSE_XML.read_bytes()


@pytest.fixture(scope="session")
def gipse(gipse_xml: bytes) -> TopicNamespace:
    """The bundled gipse.xml, parsed."""
    return parse_topic_namespace(gipse_xml)
