"""Check an assertion against the SAML 2.0 assertion schema (OASIS saml-schema-assertion-2.0.xsd).

The schema, with the xmldsig and xenc schemas it imports, comes from python3-saml's package, an
independent copy of the OASIS files; ``hl7-ce.xsd`` adds the HL7 V3 CE type, so an ``xsi:type`` that
does not resolve to ``hl7:CE`` fails validation (XML Schema cvc-elt.4.2). QName-valued attributes
(``xsi:type``) are resolved against the element's in-scope namespaces, as a schema-aware receiver does.
"""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

from lxml import etree

XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"


_XSD = "http://www.w3.org/2001/XMLSchema"


@functools.cache
def assertion_schema() -> etree.XMLSchema:
    """SAML 2.0 assertion schema plus the HL7 CE type the NHIN attribute values name by xsi:type."""
    saml = Path(str(resources.files("onelogin.saml2.schemas").joinpath("saml-schema-assertion-2.0.xsd")))
    hl7 = Path(__file__).with_name("hl7-ce.xsd")
    driver = etree.Element(f"{{{_XSD}}}schema")
    for namespace, path in (("urn:oasis:names:tc:SAML:2.0:assertion", saml), ("urn:hl7-org:v3", hl7)):
        etree.SubElement(driver, f"{{{_XSD}}}import", namespace=namespace, schemaLocation=path.as_uri())
    parser = etree.XMLParser(no_network=True, resolve_entities=False)
    return etree.XMLSchema(etree.fromstring(etree.tostring(driver), parser))


def schema_errors(assertion: etree._Element) -> list[str]:
    """Every error the SAML 2.0 assertion schema reports for ``assertion`` (empty when it is valid)."""
    schema = assertion_schema()
    if schema.validate(etree.fromstring(etree.tostring(assertion))):
        return []
    return [f"line {entry.line}: {entry.message}" for entry in schema.error_log]


def resolved_xsi_types(assertion: etree._Element) -> dict[str, str]:
    """Each element carrying xsi:type (Clark name) mapped to the type it resolves to (Clark name)."""
    found = {}
    for element in assertion.iter():
        value = element.get(XSI_TYPE) if isinstance(element.tag, str) else None
        if value is None:
            continue
        prefix, _, local = value.rpartition(":")
        namespace = element.nsmap.get(prefix or None)
        found[element.tag] = f"{{{namespace}}}{local}" if namespace else local
    return found
