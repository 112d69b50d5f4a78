"""TopicNamespace documents in, TopicSet elements out (WS-Topics 1.3 Topic Namespaces and Topic Sets).

:func:`parse_topic_namespace` reads a ``wstop:TopicNamespace`` (t-1.xsd TopicNamespaceType): the
``targetNamespace`` every topic of the document belongs to, optional ``name`` and ``final``, and nested
``wstop:Topic`` elements (``name`` NCName, ``messageTypes`` QName list, ``final``). A top-level Topic
may instead hang under a topic declared elsewhere in the document through ``parent``, a Concrete topic
expression. It checks what the schema cannot: sibling names are unique (t-1.xsd's own
``childTopicUniqueness`` selects ``wstop:topic`` and so never fires) and every ``parent`` exists.

:func:`topic_set_element` builds the ``wstop:TopicSet`` a NotificationProducer exposes as a resource
property (b-2.xsd NotificationProducerRP): one element per topic, named by the topic's QName, nested
like the tree, each marked ``wstop:topic="true"``.
"""

from __future__ import annotations

from collections.abc import Iterable

from lxml import etree

from hiem import ns, xmlsafe
from hiem.errors import XmlRejected
from hiem.wstopics._names import XML_WHITESPACE, is_ncname, xml_strip
from hiem.wstopics.dialects import TopicDialect
from hiem.wstopics.errors import TopicExpressionError, TopicNamespaceError
from hiem.wstopics.expressions import parse_expression
from hiem.wstopics.model import TopicNamespace, TopicNode, TopicPath

_TOPIC_NAMESPACE = ns.qname(ns.WSTOP, "TopicNamespace")
_TOPIC = ns.qname(ns.WSTOP, "Topic")
_DOCUMENTATION = ns.qname(ns.WSTOP, "documentation")
_MESSAGE_PATTERN = ns.qname(ns.WSTOP, "MessagePattern")
_TOPIC_SET = ns.qname(ns.WSTOP, "TopicSet")
_TOPIC_ATTR = ns.qname(ns.WSTOP, "topic")
_BOOLEANS = {"true": True, "1": True, "false": False, "0": False}


def parse_topic_namespace(data: bytes) -> TopicNamespace:
    """Read a TopicNamespace document; raise TopicNamespaceError saying what is wrong and where."""
    try:
        root = xmlsafe.parse(data)
    except XmlRejected as exc:
        raise TopicNamespaceError(f"unreadable TopicNamespace document: {exc.reason}") from exc
    if root.tag != _TOPIC_NAMESPACE:
        raise TopicNamespaceError(
            f"root element is {root.tag!r}; a TopicNamespace document has {{{ns.WSTOP}}}TopicNamespace")
    target = root.get("targetNamespace")
    if target is None:
        raise TopicNamespaceError("wstop:TopicNamespace has no targetNamespace (required by t-1.xsd)")
    name = root.get("name")
    if name is not None:
        name = xml_strip(name)
        if not is_ncname(name):
            raise TopicNamespaceError(f"TopicNamespace name {name!r} is not an NCName")
    reader = _Reader(xml_strip(target))
    reader.read(root)
    return TopicNamespace(xml_strip(target), name, _boolean(root, "final"), tuple(reader.nodes))


class _Reader:
    """Collects the topics of one document, parents always before their children."""

    def __init__(self, target_namespace: str) -> None:
        self.namespace = target_namespace
        self.nodes: list[TopicNode] = []
        self.known: set[TopicPath] = set()

    def read(self, root: etree._Element) -> None:
        pending: list[tuple[etree._Element, TopicPath | None]] = []
        for child in _elements(root):
            if child.tag == _TOPIC:
                pending.append((child, self._parent_of(child)))
            elif child.tag != _DOCUMENTATION and _in_wstop(child):
                raise TopicNamespaceError(f"unexpected {child.tag!r} in wstop:TopicNamespace{_line(child)}")
        # A Topic with @parent waits until its parent has been read, wherever that is in the document.
        while pending:
            waiting = []
            for element, parent in pending:
                if parent is None or parent in self.known:
                    self._add(element, parent)
                else:
                    waiting.append((element, parent))
            if len(waiting) == len(pending):
                element = waiting[0][0]
                raise TopicNamespaceError(
                    f"wstop:Topic {element.get('name')!r}{_line(element)} has parent "
                    f"{element.get('parent')!r}, which this document does not declare")
            pending = waiting

    def _parent_of(self, element: etree._Element) -> TopicPath | None:
        value = element.get("parent")
        if value is None:
            return None
        try:
            expression = parse_expression(value, TopicDialect.CONCRETE, element.nsmap)
        except TopicExpressionError as exc:
            raise TopicNamespaceError(f"parent {value!r}{_line(element)} is not a Concrete topic expression: "
                                      f"{exc.reason}") from exc
        parent = expression.single_topic()
        if parent is None or parent.namespace != self.namespace:
            where = parent.namespace if parent is not None else "?"
            raise TopicNamespaceError(
                f"parent {value!r}{_line(element)} names a topic in namespace {where!r}, not in this "
                f"document's targetNamespace {self.namespace!r}")
        return parent

    def _add(self, element: etree._Element, parent: TopicPath | None) -> None:
        raw = element.get("name")
        if raw is None:
            raise TopicNamespaceError(f"wstop:Topic{_line(element)} has no name (required by t-1.xsd)")
        name = xml_strip(raw)
        if not is_ncname(name):
            raise TopicNamespaceError(f"topic name {raw!r}{_line(element)} is not an NCName")
        path = TopicPath(self.namespace, (name,)) if parent is None else parent.child(name)
        if path in self.known:
            under = f"under {parent}" if parent is not None else "among the root topics"
            raise TopicNamespaceError(f"duplicate topic name {name!r}{_line(element)} {under}")
        self.known.add(path)
        self.nodes.append(TopicNode(path, _boolean(element, "final"), _message_types(element)))
        for child in _elements(element):
            if child.tag == _TOPIC:
                if child.get("parent") is not None:
                    raise TopicNamespaceError(
                        f"nested wstop:Topic {child.get('name')!r}{_line(child)} cannot have a parent "
                        "attribute; only top-level topics can")
                self._add(child, path)
            elif child.tag not in (_DOCUMENTATION, _MESSAGE_PATTERN) and _in_wstop(child):
                raise TopicNamespaceError(f"unexpected {child.tag!r} in wstop:Topic{_line(child)}")


def _elements(parent: etree._Element) -> list[etree._Element]:
    return [child for child in parent if isinstance(child.tag, str)]


def _in_wstop(element: etree._Element) -> bool:
    return element.tag.startswith("{" + ns.WSTOP + "}")


def _line(element: etree._Element) -> str:
    return f" (line {element.sourceline})" if element.sourceline else ""


def _boolean(element: etree._Element, attribute: str) -> bool:
    value = element.get(attribute)
    if value is None:
        return False
    try:
        return _BOOLEANS[xml_strip(value)]
    except KeyError:
        raise TopicNamespaceError(
            f"{attribute}={value!r}{_line(element)} is not an xsd:boolean (true, false, 1, 0)") from None


def _message_types(element: etree._Element) -> tuple[str, ...]:
    value = element.get("messageTypes")
    if value is None:
        return ()
    resolved = []
    for item in value.translate({ord(c): " " for c in XML_WHITESPACE}).split():
        prefix, colon, local = item.partition(":")
        if not colon:
            prefix, local = "", item
        uri = element.nsmap.get(prefix) if prefix else element.nsmap.get(None, "")
        if not is_ncname(local) or (colon and not is_ncname(prefix)) or (colon and not uri):
            raise TopicNamespaceError(
                f"messageTypes item {item!r}{_line(element)} is not a QName with a bound prefix")
        resolved.append(ns.qname(uri, local) if uri else local)
    return tuple(resolved)


def topic_set_element(namespaces: Iterable[TopicNamespace]) -> etree._Element:
    """A ``wstop:TopicSet`` holding every topic of ``namespaces`` (trees with one namespace merge).

    Raises ValueError for a tree in no namespace or in the WS-Topics namespace itself: TopicSetType only
    admits elements of another namespace (``xsd:any namespace="##other"``).
    """
    order: list[TopicPath] = []
    seen: set[TopicPath] = set()
    for namespace in namespaces:
        if not namespace.target_namespace or namespace.target_namespace == ns.WSTOP:
            raise ValueError(f"topics in namespace {namespace.target_namespace!r} cannot appear in a "
                             "wstop:TopicSet (t-1.xsd TopicSetType holds ##other elements only)")
        for node in namespace.nodes:
            if node.path not in seen:
                seen.add(node.path)
                order.append(node.path)
    nsmap = {"wstop": ns.WSTOP, **_prefixes(path.namespace for path in order)}
    topic_set = etree.Element(_TOPIC_SET, nsmap=nsmap)
    elements: dict[TopicPath, etree._Element] = {}
    # Sorting by depth (stable) puts each parent first without changing the order of siblings.
    for path in sorted(order, key=lambda p: len(p.path)):
        parent = path.parent
        if parent is not None and parent not in elements:
            raise ValueError(f"topic {path} has no parent topic {parent} in the given namespaces")
        container = topic_set if parent is None else elements[parent]
        element = etree.SubElement(container, ns.qname(path.namespace, path.name))
        element.set(_TOPIC_ATTR, "true")
        elements[path] = element
    return topic_set


def _prefixes(uris: Iterable[str]) -> dict[str, str]:
    """Readable prefixes: the ones hiem.ns.NSMAP gives well-known namespaces, else tns1, tns2, ..."""
    well_known = {uri: prefix for prefix, uri in ns.NSMAP.items()}
    chosen: dict[str, str] = {}
    for uri in dict.fromkeys(uris):
        prefix = well_known.get(uri)
        if prefix is None or prefix in chosen or prefix == "wstop":
            number = len(chosen) + 1
            while f"tns{number}" in chosen:
                number += 1
            prefix = f"tns{number}"
        chosen[prefix] = uri
    return chosen
