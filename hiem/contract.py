"""The official contract: the WSDL and XSD files hiem serves and validates against.

HIEM v2.0 section 2.4 makes WS-BaseNotification 1.3 (and WS-Topics 1.3) the transaction standard, so
the contract is OASIS's own: ``hiem/data/wsdl/`` holds the OASIS/W3C schemas and WSDLs byte for byte, except
that their import locations name sibling files (``SOURCES.md`` there lists every changed attribute),
plus hiem's four service WSDLs, which import ``bw-2.wsdl``/``brw-2.wsdl`` and add only bindings and
a service. Any WS-N client generated from the OASIS portTypes therefore works against hiem.

Features:

* :func:`schema` compiles one XSD from ``wsdl/`` offline. Imports resolve only to files in
  ``wsdl/``; any other location (a URL, a path outside the folder) makes compilation fail instead of
  being silently skipped, which is what libxml2 does with an import it cannot load.
* :func:`validate_wsn` validates a message element from any WS-N, WS-Topics, WSRF, WS-Addressing or
  NHIN namespace against one combined schema and returns readable error strings.
* :func:`served_document` returns the bytes to answer ``GET /wsdl/<name>`` with; imports stay
  relative, so a client that fetched ``<base>/wsdl/bw-2.wsdl`` finds ``<base>/wsdl/b-2.xsd`` itself.
* :func:`service_wsdl` returns the WSDL to answer ``GET /wsn/<endpoint>?wsdl`` with: addresses set to
  the public endpoint URL and imports made absolute (``<base>/wsdl/<file>``), because ``?wsdl`` URLs
  do not end in a folder a relative location could resolve against.

Thread safety: compiled schemas are cached per thread. An ``etree.XMLSchema`` keeps the error log
of its last validation on the object, so two threads sharing one would read each other's errors;
a compilation costs a few milliseconds, so one copy per thread is cheaper than a lock.

``WSDL_DIR`` is package data (``hiem/data/wsdl``): a wheel carries it, and a source checkout or an
editable install finds it in place.
"""

from __future__ import annotations

import copy
import functools
import re
import threading
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Final
from urllib.parse import unquote, urlsplit

from lxml import etree

from hiem import ns, xmlsafe

__all__ = [
    "SERVICE_WSDLS",
    "WSDL_DIR",
    "WSN_SCHEMAS",
    "schema",
    "served_document",
    "service_wsdl",
    "validate_wsn",
]

WSDL_DIR: Final[Path] = Path(__file__).resolve().parent / "data" / "wsdl"

#: Endpoint name (the last segment of ``/wsn/<endpoint>``) -> its service WSDL in ``wsdl/``.
SERVICE_WSDLS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "NotificationProducer": "NotificationProducer.wsdl",
        "SubscriptionManager": "SubscriptionManager.wsdl",
        "NotificationBroker": "NotificationBroker.wsdl",
        "PullPoint": "PullPoint.wsdl",
    }
)

#: Namespace -> the schema file that defines it: the namespaces :func:`validate_wsn` accepts.
WSN_SCHEMAS: Final[Mapping[str, str]] = MappingProxyType(
    {
        ns.WSNT: "b-2.xsd",
        ns.WSNT_BR: "br-2.xsd",
        ns.WSTOP: "t-1.xsd",
        ns.WSRF_BF: "bf-2.xsd",
        ns.WSRF_R: "r-2.xsd",
        ns.WSRF_RP: "rp-2.xsd",
        ns.WSA: "ws-addr.xsd",
        ns.NHIN: "nhin-hiem.xsd",
        ns.HIEM: "hiem.xsd",
    }
)

_XSD = "http://www.w3.org/2001/XMLSchema"
_WSDL = "http://schemas.xmlsoap.org/wsdl/"
_WSDL_SOAP11 = "http://schemas.xmlsoap.org/wsdl/soap/"
_WSDL_SOAP12 = "http://schemas.xmlsoap.org/wsdl/soap12/"
_IS_REFERENCE_PARAMETER = f"{{{ns.WSA}}}IsReferenceParameter"

# A served name is one plain file name: no separators, no "..", no leading dot, nothing but the two
# contract extensions. Existence in WSDL_DIR is checked separately against a listing, never by
# joining the name onto a path first.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.(?:wsdl|xsd)")

# The in-memory schema that imports every WSN_SCHEMAS file. Its base URL sits inside WSDL_DIR so the
# sibling schemaLocations resolve exactly as the OASIS files' own imports do (libxml2 then sees each
# namespace at one location and loads it once).
_COMBINED_BASE = "hiem-combined.xsd"


@functools.cache
def _listing() -> frozenset[str]:
    """The contract file names in WSDL_DIR (read once: the folder does not change at run time)."""
    if not WSDL_DIR.is_dir():
        raise FileNotFoundError(
            f"hiem's data/wsdl/ folder is missing at {WSDL_DIR}: the installation is incomplete"
        )
    return frozenset(
        path.name for path in WSDL_DIR.iterdir() if path.is_file() and _PLAIN_NAME.fullmatch(path.name)
    )


def _checked_name(name: str) -> str | None:
    """``name`` if it is a plain contract file name present in WSDL_DIR, else None."""
    if not isinstance(name, str) or ".." in name or not _PLAIN_NAME.fullmatch(name):
        return None
    return name if name in _listing() else None


@functools.cache
def _file_bytes(name: str) -> bytes:
    return (WSDL_DIR / name).read_bytes()


class _WsdlDirResolver(etree.Resolver):
    """Resolves schema imports to files in WSDL_DIR and refuses every other location.

    Raising (rather than returning None) matters: libxml2 treats an import it cannot load as a
    warning and compiles a schema with the namespace missing, which would accept anything there.
    """

    def resolve(self, system_url: str, public_id: str, context: object) -> object:
        path = _local_file(system_url)
        if path is None:
            raise OSError(f"schema import outside hiem's wsdl/ folder refused: {system_url!r}")
        return self.resolve_filename(str(path), context)


def _local_file(url: str) -> Path | None:
    parts = urlsplit(url)
    if parts.scheme == "file":
        candidate = Path(unquote(parts.path))
    elif parts.scheme == "" and not parts.netloc:
        candidate = Path(url)
    else:  # http(s), ftp, and Windows drive letters parsed as schemes alike
        return None
    if not candidate.is_absolute():
        candidate = WSDL_DIR / candidate
    candidate = candidate.resolve()
    if candidate.parent != WSDL_DIR.resolve() or _checked_name(candidate.name) is None:
        return None
    return candidate


def _schema_parser() -> etree.XMLParser:
    # For hiem's own files only (untrusted input goes through hiem.xmlsafe). No network, no entities,
    # and the resolver above pins every import to wsdl/.
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False, huge_tree=False)
    parser.resolvers.add(_WsdlDirResolver())
    return parser


def _compile_file(name: str) -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(WSDL_DIR / name), _schema_parser()))


def _compile_combined() -> etree.XMLSchema:
    root = etree.Element(f"{{{_XSD}}}schema", nsmap={"xsd": _XSD})
    for namespace, file_name in WSN_SCHEMAS.items():
        etree.SubElement(root, f"{{{_XSD}}}import", namespace=namespace, schemaLocation=file_name)
    document = etree.fromstring(
        etree.tostring(root), _schema_parser(), base_url=str(WSDL_DIR / _COMBINED_BASE)
    )
    return etree.XMLSchema(document)


_per_thread = threading.local()


def _thread_cache() -> dict[str, etree.XMLSchema]:
    cache: dict[str, etree.XMLSchema] | None = getattr(_per_thread, "schemas", None)
    if cache is None:
        cache = _per_thread.schemas = {}
    return cache


def schema(name: str = "b-2.xsd") -> etree.XMLSchema:
    """The compiled XSD ``name`` from ``wsdl/`` (``b-2.xsd``, ``br-2.xsd``, ``t-1.xsd``, ``bf-2.xsd``,
    ``r-2.xsd``, ``rp-2.xsd``, ``ws-addr.xsd``, ``xml.xsd``, ``nhin-hiem.xsd``).

    Cached per thread (see the module docstring), so read ``error_log`` on the thread that validated.
    Raises ValueError for a name that is not an XSD in ``wsdl/``, and ``etree.XMLSchemaParseError``
    if the file or one of its imports cannot be compiled offline.
    """
    checked = _checked_name(name)
    if checked is None or not checked.endswith(".xsd"):
        raise ValueError(f"no schema {name!r} in {WSDL_DIR}")
    cache = _thread_cache()
    compiled = cache.get(checked)
    if compiled is None:
        compiled = cache[checked] = _compile_file(checked)
    return compiled


def _combined_schema() -> etree.XMLSchema:
    cache = _thread_cache()
    compiled = cache.get(_COMBINED_BASE)
    if compiled is None:
        compiled = cache[_COMBINED_BASE] = _compile_combined()
    return compiled


def validate_wsn(element: etree._Element) -> list[str]:
    """Validate ``element`` (a SOAP body child, header block, fault detail, EPR...) and return the
    errors, one string each, or an empty list when it is valid.

    Accepts elements from the namespaces in :data:`WSN_SCHEMAS`; one combined schema covers all of
    them because their types cross (a wsnt:Subscribe holds wsa and wstop content, every fault
    extends wsrf-bf:BaseFaultType). An element from any other namespace is reported as an error,
    not raised: a client can send anything, and the caller turns errors into a fault. A header block
    marked ``wsa:IsReferenceParameter`` is validated without that marker (see below).
    """
    tag = element.tag
    if not isinstance(tag, str):
        return ["not an element (comment or processing instruction)"]
    qname = etree.QName(tag)
    if qname.namespace not in WSN_SCHEMAS:
        return [f"element {qname.text} is not in a namespace hiem validates"]
    if element.get(_IS_REFERENCE_PARAMETER) is not None:
        element = _without_reference_parameter_marker(element)
    validator = _combined_schema()
    if validator.validate(element):
        return []
    return [f"line {error.line}: {error.message}" for error in validator.error_log]


def _without_reference_parameter_marker(element: etree._Element) -> etree._Element:
    # WS-Addressing 1.0 SOAP Binding 2.3 (which HIEM 3.1.3 cites) has the sender add
    # wsa:IsReferenceParameter="true" to every reference parameter it copies into the header, whatever
    # the element's own schema says; nhin:SubscriptionId (xsd:string) allows no attributes. Validate the
    # reference parameter as it was in the EPR. The copy declares every in-scope namespace, because
    # content may use prefixes (QName values, topic expressions) that a plain deepcopy would drop.
    stripped = etree.Element(element.tag, nsmap=element.nsmap)
    for name, value in element.attrib.items():
        if name != _IS_REFERENCE_PARAMETER:
            stripped.set(name, value)
    stripped.text = element.text
    for child in element:
        stripped.append(copy.deepcopy(child))
    return stripped


def _service_template(name: str) -> etree._Element:
    # hiem's own file, but parsed by the one hardened parser like everything else that is not a
    # schema compilation (which needs the import resolver above).
    return xmlsafe.parse(_file_bytes(name))


def _check_http_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError(f"{what} must be an absolute http(s) URL without query or fragment: {value!r}")
    return value.rstrip("/")


def _render_service(file_name: str, service_url: str, import_base: str | None) -> bytes:
    root = _service_template(file_name)
    for port in root.iterfind(f"{{{_WSDL}}}service/{{{_WSDL}}}port"):
        for address in port.iterfind(f"{{{_WSDL_SOAP11}}}address"):
            address.set("location", service_url)
        for address in port.iterfind(f"{{{_WSDL_SOAP12}}}address"):
            address.set("location", service_url)
    if import_base is not None:
        for wsdl_import in root.iterfind(f"{{{_WSDL}}}import"):
            wsdl_import.set("location", _absolute(import_base, wsdl_import.get("location", "")))
        for xsd_import in root.iterfind(f"{{{_WSDL}}}types/{{{_XSD}}}schema/{{{_XSD}}}import"):
            location = xsd_import.get("schemaLocation")
            if location is not None:
                xsd_import.set("schemaLocation", _absolute(import_base, location))
    return etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")


def _absolute(import_base: str, location: str) -> str:
    if _checked_name(location) is None:  # a broken service WSDL is a packaging bug, not a client error
        raise RuntimeError(f"service WSDL imports {location!r}, which is not a file in {WSDL_DIR}")
    return f"{import_base}/wsdl/{location}"


def served_document(name: str, base_url: str) -> bytes | None:
    """The bytes to serve for ``GET <base_url>/wsdl/<name>``, or None if there is no such file.

    Only plain ``.wsdl``/``.xsd`` file names present in ``wsdl/`` are served (no ``/``, no ``..``),
    so a request can never read anything else. OASIS/W3C files go out as stored, their sibling import
    locations relative. A service WSDL gets its soap:address set to ``<base_url>/wsn/<endpoint>``
    (the placeholder would be useless to a client) and keeps relative imports.

    Raises ValueError if ``base_url`` (hiem's public root URL) is not an absolute http(s) URL.
    """
    base = _check_http_url(base_url, "base_url")
    checked = _checked_name(name)
    if checked is None:
        return None
    for endpoint, file_name in SERVICE_WSDLS.items():
        if file_name == checked:
            return _render_service(checked, f"{base}/wsn/{endpoint}", import_base=None)
    return _file_bytes(checked)


def service_wsdl(endpoint: str, service_url: str, base_url: str) -> bytes:
    """The WSDL to serve for ``GET /wsn/<endpoint>?wsdl``.

    ``endpoint`` is a key of :data:`SERVICE_WSDLS`. Every soap:address and soap12:address is set to
    ``service_url``, and the WSDL's imports point at ``<base_url>/wsdl/<file>``, where
    :func:`served_document` answers. Pass the configured public URLs here, not ones built from a
    request's Host header: the WSDL tells clients where to send their messages.
    """
    file_name = SERVICE_WSDLS.get(endpoint)
    if file_name is None:
        raise ValueError(f"unknown endpoint {endpoint!r}; expected one of {', '.join(SERVICE_WSDLS)}")
    return _render_service(
        file_name,
        _check_http_url(service_url, "service_url"),
        import_base=_check_http_url(base_url, "base_url"),
    )
