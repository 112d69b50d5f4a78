"""Validate an audit message against both DICOM PS3.15 A.5.1 schemas hiem ships (see schemas/SOURCES.md).

* ``dicom2017c.xsd``: IPF's default, what IHE ATNA practice validates with (ParticipantObjectName/Query
  optional).
* ``dicom2024d.xsd``: DICOM 2024d with CP-2399, where every ParticipantObjectIdentification needs a
  ParticipantObjectName or ParticipantObjectQuery.

hiem's own messages must pass both; :func:`validate_audit_message` reports the errors of each.
The schemas are no-namespace XSDs in which any global element may be the root, so the root is checked to
be ``AuditMessage`` first. Parsing goes through :func:`hiem.xmlsafe.parse` (no DTD, no entities, size and
depth limits), for the messages and for the XSD files alike.

The compiled schemas are cached per process. An lxml validator keeps its error log on the object, so each
schema is used under a lock; validation is not on a hot path.
"""

from __future__ import annotations

import threading
from functools import cache
from importlib import resources

from lxml import etree

from hiem import xmlsafe
from hiem.errors import XmlRejected

__all__ = ["SCHEMA_FILES", "validate_audit_message"]

SCHEMA_FILES = ("dicom2017c.xsd", "dicom2024d.xsd")
_MAX_ERRORS_PER_SCHEMA = 20


class _Schema:
    def __init__(self, name: str) -> None:
        data = resources.files("hiem.audit.schemas").joinpath(name).read_bytes()
        self.name = name
        self._schema = etree.XMLSchema(xmlsafe.parse(data))
        self._lock = threading.Lock()

    def errors(self, root: etree._Element) -> list[str]:
        with self._lock:
            if self._schema.validate(root):
                return []
            return [
                f"{self.name}: line {entry.line}: {entry.message}"
                for entry in list(self._schema.error_log)[:_MAX_ERRORS_PER_SCHEMA]
            ]


@cache
def _schemas() -> tuple[_Schema, ...]:
    return tuple(_Schema(name) for name in SCHEMA_FILES)


def validate_audit_message(xml: bytes) -> None:
    """Raise ValueError listing every error (prefixed by schema file) unless ``xml`` passes both schemas."""
    try:
        root = xmlsafe.parse(xml)
    except XmlRejected as exc:
        raise ValueError(f"audit message rejected by the XML parser: {exc.reason}") from exc
    if root.tag != "AuditMessage":
        raise ValueError(f"audit message root must be AuditMessage (no namespace), not {root.tag!r}")
    errors = [error for schema in _schemas() for error in schema.errors(root)]
    if errors:
        raise ValueError("audit message is not valid:\n" + "\n".join(errors))
