"""signxml's XMLVerifier with an XML Signature schema that knows Exclusive C14N's parameter.

signxml checks every ds:Signature against the XML-DSig schema before verifying it; that structural
check stays. Its bundled schemas lack the exc-c14n schema, and the XML-DSig schema's
CanonicalizationMethod content is a *strict* wildcard, so ``<ec:InclusiveNamespaces PrefixList="..."/>``
under SignedInfo's CanonicalizationMethod (Exclusive XML Canonicalization §3; WS-I BSP 1.1 R5410
permits it; Apache WSS4J, hence CXF, writes it by default) was refused as undeclared. Under a
Transform the wildcard is lax, which is why the same element was accepted there.

The fix compiles signxml's own schemas together with the exc-c14n schema (``schemas/exc-c14n.xsd``),
so InclusiveNamespaces is validated like any declared element wherever XML-DSig admits it, and anything
else the strict wildcard refused is still refused.
"""

from __future__ import annotations

import threading
from importlib import resources
from pathlib import Path

from lxml import etree
from signxml import XMLVerifier

from hiem.ns import DS

_XSD = "http://www.w3.org/2001/XMLSchema"
_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
_per_thread = threading.local()


def _schema_file(package: str, name: str) -> str:
    return Path(str(resources.files(package).joinpath(name))).as_uri()


def _compile() -> etree.XMLSchema:
    # A driver document importing both namespaces; each import resolves to a file inside an installed
    # package (signxml's or hiem's), never to the network.
    driver = etree.Element(f"{{{_XSD}}}schema", nsmap={"xsd": _XSD})
    for namespace, location in ((DS, _schema_file("signxml.schemas", "xmldsig1-schema.xsd")),
                                (_EXC_C14N, _schema_file("hiem.security.schemas", "exc-c14n.xsd"))):
        etree.SubElement(driver, f"{{{_XSD}}}import", namespace=namespace, schemaLocation=location)
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    return etree.XMLSchema(etree.fromstring(etree.tostring(driver), parser))


def signature_schema() -> etree.XMLSchema:
    """The compiled schema, one per thread (an lxml schema must not validate in two threads at once)."""
    schema: etree.XMLSchema | None = getattr(_per_thread, "schema", None)
    if schema is None:
        schema = _per_thread.schema = _compile()
    return schema


class SignatureVerifier(XMLVerifier):
    """XMLVerifier whose schema check accepts every parameter Exclusive C14N defines."""

    @classmethod
    def schemas(cls) -> list[etree.XMLSchema]:
        return [signature_schema()]
