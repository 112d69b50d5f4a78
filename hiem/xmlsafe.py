"""The one hardened XML parser every module uses: nothing in hiem calls ``etree.fromstring`` directly.

What it refuses, and why:

* any DTD (internal or external): the door to entity expansion (billion laughs, quadratic blowup) and
  to XXE file/URL reads. Entities are never resolved and the network is never touched even before the
  DTD check runs, so a hostile DTD costs a parse, never an expansion.
* documents over ``max_bytes`` (checked on the raw bytes before parsing), deeper than ``max_depth``
  or with more than ``max_elements`` elements (checked in one pass after parsing).
* anything that is not well-formed.

Every refusal raises :class:`hiem.errors.XmlRejected` with a reason fit to show a client.
"""

from __future__ import annotations

from dataclasses import dataclass

from lxml import etree

from hiem.errors import XmlRejected

DEFAULT_MAX_BYTES = 1_048_576
DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_ELEMENTS = 20_000


@dataclass(frozen=True)
class XmlLimits:
    """Limits applied to every parsed document."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH
    max_elements: int = DEFAULT_MAX_ELEMENTS


DEFAULT_LIMITS = XmlLimits()


class _RefuseEverything(etree.Resolver):
    """libxml2 still *opens* an external DTD or parameter entity even with load_dtd/resolve_entities off
    (a ``file:///dev/zero`` parameter entity spins forever): every URL is refused before it is opened."""

    def resolve(self, url: str | None, pubid: str | None, context: object) -> None:
        raise XmlRejected(f"external resources (DTD subsets, entities) are not allowed: {url!r}")


def _new_parser() -> etree.XMLParser:
    # A fresh parser per call: lxml parsers are not safe to share between threads.
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
        collect_ids=False,
    )
    parser.resolvers.add(_RefuseEverything())
    return parser


def parse(data: bytes, limits: XmlLimits = DEFAULT_LIMITS) -> etree._Element:
    """Parse ``data`` and return its root element, or raise XmlRejected."""
    if not isinstance(data, bytes | bytearray):
        raise TypeError("parse() takes bytes; decoding is the parser's job (it honours the XML declaration)")
    if len(data) > limits.max_bytes:
        raise XmlRejected(f"document of {len(data)} bytes exceeds the limit of {limits.max_bytes} bytes")
    if not data.strip():
        raise XmlRejected("empty document")
    try:
        root = etree.fromstring(bytes(data), parser=_new_parser())
    except XmlRejected:
        raise
    except etree.XMLSyntaxError as exc:
        raise XmlRejected(f"not well-formed XML: {exc.msg or exc}") from exc
    except (ValueError, OSError, LookupError) as exc:  # unsupported encodings, refused resources
        raise XmlRejected(f"unreadable XML: {exc}") from exc
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise XmlRejected("DTDs are not allowed")
    _check_shape(root, limits)
    return root


def _check_shape(root: etree._Element, limits: XmlLimits) -> None:
    count = 0
    # iterwalk gives start/end events without recursion, so depth is tracked cheaply.
    depth = 0
    for event, element in etree.iterwalk(root, events=("start", "end")):
        if event == "end":
            depth -= 1
            continue
        if not isinstance(element.tag, str):
            if isinstance(element, etree._Entity):
                raise XmlRejected("entity references are not allowed")
            continue
        depth += 1
        count += 1
        if depth > limits.max_depth:
            raise XmlRejected(f"document nesting exceeds the limit of {limits.max_depth} levels")
        if count > limits.max_elements:
            raise XmlRejected(f"document has more than {limits.max_elements} elements")


def parse_file(path: str, limits: XmlLimits = DEFAULT_LIMITS) -> etree._Element:
    """Parse a local file (topic namespaces, schemas) with the same protections."""
    with open(path, "rb") as handle:
        return parse(handle.read(), limits)
